#!/usr/bin/env bash
# Make an S3 bucket (AWS, or any S3-compatible store: MinIO, SeaweedFS, Ceph) the default DVC
# remote. The URL and endpoint go to .dvc/config (committed, shared by the team); the keys go to
# .dvc/config.local (git-ignored), and only when AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are set:
# without them DVC uses the usual AWS chain (environment, ~/.aws, instance role).
#
#   scripts/s3_remote.sh s3://BUCKET/PATH [ENDPOINT_URL]
#   make remote URL=s3://BUCKET/PATH [ENDPOINT=http://host:port]
#
# DVC_REMOTE_NAME picks the remote's name (default: s3). Run from the project root.
set -euo pipefail

url=${1:?usage: $0 s3://BUCKET/PATH [ENDPOINT_URL]}
endpoint=${2:-}
name=${DVC_REMOTE_NAME:-s3}
case $url in s3://?*) ;; *) echo "error: $url is not an s3://BUCKET/PATH URL" >&2; exit 2 ;; esac

dvc remote add --default --force "$name" "$url"
if [ -n "$endpoint" ]; then
  dvc remote modify "$name" endpointurl "$endpoint"
fi
if [ -n "${AWS_ACCESS_KEY_ID:-}" ]; then
  dvc remote modify --local "$name" access_key_id "$AWS_ACCESS_KEY_ID"
  dvc remote modify --local "$name" secret_access_key "${AWS_SECRET_ACCESS_KEY:?is empty}"
  echo "credentials for '$name' written to .dvc/config.local (git-ignored)"
fi
echo "default remote '$name' -> $url${endpoint:+ via $endpoint}; next: dvc push"
