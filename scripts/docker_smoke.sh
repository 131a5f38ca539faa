#!/usr/bin/env bash
# Build both knd images on a local Docker engine and smoke-test them.
#
# Safe to run again: it starts a Docker engine only if none answers at $DOCKER_HOST, builds the
# local base image only if it is missing, and always removes its containers.
#
#   1. engine: dockerd with the flags that leave the machine's network alone
#      (docs/docker.md), data under /tmp/docker
#   2. base image local/debian-py:bookworm (debootstrap + docker import; no registry needed),
#      with the host's CA bundle so pip can reach PyPI from inside the build
#   3. models/model.onnx from models/model.pt with `knd export`, if missing or older
#   4. docker build of the predict image (and the train image unless SKIP_TRAIN=1)
#   5. the predict image runs with no network; /health and /predict (a real RAVDESS clip) are
#      called from inside the container, then its HEALTHCHECK status is awaited
#   6. the train image: torch version, and one epoch of `knd train` on data/processed if present
#   7. image sizes
#
# Environment (all optional):
#   DOCKER_HOST   engine socket (default unix:///tmp/docker/docker.sock)
#   BASE_IMAGE    base of both images (default local/debian-py:bookworm, built here)
#   IMAGE         image name prefix (default knd): IMAGE-predict:smoke, IMAGE-train:smoke
#   MODEL         ONNX model baked into the predict image (default models/model.onnx)
#   AUDIO         audio file sent to /predict (default: a clip from data/raw or the mirror zip)
#   SKIP_TRAIN=1  skip the training image (its build downloads torch, about 4 GB)
set -euo pipefail

cd "$(dirname "$0")/.."
export DOCKER_HOST="${DOCKER_HOST:-unix:///tmp/docker/docker.sock}"
BASE_IMAGE="${BASE_IMAGE:-local/debian-py:bookworm}"
IMAGE="${IMAGE:-knd}"
MODEL="${MODEL:-models/model.onnx}"
MIRROR_ZIP="${MIRROR_ZIP:-../shared/data/ravdess/Audio_Speech_Actors_16k_dev.zip}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DOCKER_ROOT=/tmp/docker
PREDICT="$IMAGE-predict:smoke"
TRAIN="$IMAGE-train:smoke"
CONTAINER="$IMAGE-smoke-$$"
WORK="$(mktemp -d)"

log() { printf '\n== %s\n' "$*"; }
die() { printf 'docker_smoke: %s\n' "$*" >&2; exit 1; }
cleanup() {
  docker rm --force "$CONTAINER" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

need_package() {  # need_package COMMAND DEBIAN-PACKAGE
  command -v "$1" >/dev/null && return
  [ "$(id -u)" -eq 0 ] || die "$1 is missing (apt-get install $2)"
  apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
}

start_engine() {
  [ "$DOCKER_HOST" = "unix://$DOCKER_ROOT/docker.sock" ] \
    || die "no Docker engine answers at DOCKER_HOST=$DOCKER_HOST"
  [ "$(id -u)" -eq 0 ] || die "starting dockerd needs root"
  need_package dockerd docker.io
  log "starting dockerd ($DOCKER_HOST, log $DOCKER_ROOT/dockerd.log)"
  mkdir -p "$DOCKER_ROOT"
  # No bridge, no iptables: dockerd must not rewrite the machine's network; builds and
  # containers use --network host or --network none.
  setsid nohup dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
    --data-root "$DOCKER_ROOT/root" --exec-root "$DOCKER_ROOT/exec" \
    --pidfile "$DOCKER_ROOT/dockerd.pid" -H "$DOCKER_HOST" \
    >"$DOCKER_ROOT/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return
    sleep 1
  done
  die "dockerd did not answer within 60 s; see $DOCKER_ROOT/dockerd.log"
}

build_base() {
  [ "$(id -u)" -eq 0 ] || die "building $BASE_IMAGE needs root (debootstrap)"
  need_package debootstrap debootstrap
  log "building $BASE_IMAGE with debootstrap"
  local rootfs="$WORK/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed"; }
  # This machine reaches PyPI through a TLS proxy whose CA only the host bundle has.
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

find_audio() {
  if [ -n "${AUDIO:-}" ]; then
    [ -f "$AUDIO" ] || die "AUDIO=$AUDIO: no such file"
    echo "$AUDIO"
    return
  fi
  local clip
  clip="$(find data/raw -name '*.wav' 2>/dev/null | sort | head -n 1)"
  if [ -n "$clip" ]; then
    echo "$clip"
  elif [ -f "$MIRROR_ZIP" ]; then
    python3 - "$MIRROR_ZIP" "$WORK/clip.wav" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = sorted(n for n in z.namelist() if n.endswith(".wav"))[0]
    open(sys.argv[2], "wb").write(z.read(name))
EOF
    echo "$WORK/clip.wav"
  else
    die "no audio for /predict: set AUDIO=file.wav"
  fi
}

# Python run inside the predict container: /health, the pages, then /predict with the clip on
# stdin. The web page and the API docs must load nothing from other hosts.
CLIENT='
import json, re, sys, urllib.request
base = "http://127.0.0.1:8000"
print("GET /health ->", urllib.request.urlopen(base + "/health", timeout=10).read().decode())
for page in ("/", "/docs", "/redoc"):
    html = urllib.request.urlopen(base + page, timeout=10).read().decode()
    tags = r"<(?:script|link|img|iframe)\b[^>]*?(?:src|href)=[\x27\x22]?((?:https?:)?//[^\x27\x22 >]+)"
    external = re.findall(tags, html)
    print(f"GET {page} -> {len(html)} bytes, external scripts/styles: {external or None}")
    assert not external, f"{page} loads {external}"
audio = sys.stdin.buffer.read()
boundary = "kndsmokeboundary"
body = (
    f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{sys.argv[1]}\"\r\n"
    "Content-Type: audio/wav\r\n\r\n"
).encode() + audio + f"\r\n--{boundary}--\r\n".encode()
request = urllib.request.Request(
    base + "/predict", data=body,
    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
)
answer = json.load(urllib.request.urlopen(request, timeout=60))
print("POST /predict ->", json.dumps(answer))
total = sum(answer["probabilities"].values())
assert answer["label"] in answer["probabilities"], "label not among the probabilities"
assert abs(total - 1) < 1e-3, f"probabilities sum to {total}"
'

# --- 1. engine -----------------------------------------------------------------------------
docker info >/dev/null 2>&1 || start_engine
echo "engine: $(docker version --format '{{.Server.Version}}') at $DOCKER_HOST"

# --- 2. base image -------------------------------------------------------------------------
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  [ "$BASE_IMAGE" = local/debian-py:bookworm ] || die "base image $BASE_IMAGE not found"
  build_base
fi
echo "base: $BASE_IMAGE"

# --- 3. model ------------------------------------------------------------------------------
if [ "$MODEL" = models/model.onnx ] && [ -f models/model.pt ] \
  && { [ ! -f "$MODEL" ] || [ models/model.pt -nt "$MODEL" ]; }; then
  log "knd export (models/model.pt -> $MODEL)"
  PATH="$PWD/.venv/bin:$PATH" knd export
fi
[ -f "$MODEL" ] || die "MODEL=$MODEL: no such file (train a model: make pipeline)"
echo "model: $MODEL"
AUDIO_FILE="$(find_audio)"
echo "audio: $AUDIO_FILE"

# --- 4. builds -----------------------------------------------------------------------------
build() {  # build TAG DOCKERFILE [ARGS...]: rebuild, then drop the image TAG named before
  local tag="$1" file="$2" old
  shift 2
  old="$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
  log "docker build $tag"
  # --network host: the build reaches PyPI without the bridge network dockerd lacks.
  docker build --network host --build-arg BASE_IMAGE="$BASE_IMAGE" "$@" -f "$file" -t "$tag" .
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect --format '{{.Id}}' "$tag")" ]; then
    docker image rm "$old" >/dev/null 2>&1 || true  # its layers, unless still in use
  fi
}
build "$PREDICT" dockerfiles/predict_model.dockerfile --build-arg MODEL="$MODEL"
[ "${SKIP_TRAIN:-0}" = 1 ] || build "$TRAIN" dockerfiles/train_model.dockerfile

# --- 5. predict image ----------------------------------------------------------------------
log "docker run $PREDICT (--network none)"
docker run --detach --name "$CONTAINER" --network none "$PREDICT" >/dev/null
echo "user in container: $(docker exec "$CONTAINER" id -u)"
docker exec "$CONTAINER" python -c \
  'import importlib.util as u; print("torch installed:", u.find_spec("torch") is not None)'
for _ in $(seq 60); do
  docker exec "$CONTAINER" python -c \
    'import urllib.request as r; r.urlopen("http://127.0.0.1:8000/health", timeout=2)' \
    >/dev/null 2>&1 && break
  [ "$(docker inspect --format '{{.State.Running}}' "$CONTAINER")" = true ] \
    || { docker logs "$CONTAINER"; die "the predict container exited"; }
  sleep 1
done
CLIP_NAME="$(basename "$AUDIO_FILE")"
docker exec -i "$CONTAINER" python -c "$CLIENT" "$CLIP_NAME" <"$AUDIO_FILE" \
  || { docker logs "$CONTAINER"; die "/health or /predict failed"; }
status=starting
for _ in $(seq 90); do
  status="$(docker inspect --format '{{.State.Health.Status}}' "$CONTAINER")"
  [ "$status" = starting ] || break
  sleep 1
done
echo "HEALTHCHECK status: $status"
[ "$status" = healthy ] || die "the container's HEALTHCHECK says $status"
docker rm --force "$CONTAINER" >/dev/null

# --- 6. train image ------------------------------------------------------------------------
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  log "docker run $TRAIN"
  docker run --rm --network none "$TRAIN" \
    python -c 'import torch; print("torch", torch.__version__, "cuda available:", torch.cuda.is_available())'
  if [ -f data/processed/features.pt ]; then
    # One epoch on the real processed data, outputs into a scratch folder (never models/).
    mkdir -p "$WORK/out"
    docker run --rm --network none --user "$(id -u):$(id -g)" -e HOME=/tmp -e USER=knd \
      -v "$PWD/data:/app/data:ro" -v "$WORK/out:/app/out" -w /app/out "$TRAIN" sh -c '
        python -c "import yaml; p = yaml.safe_load(open(\"/app/params.yaml\"))
p[\"train\"][\"epochs\"] = 1; p[\"wandb\"][\"mode\"] = \"disabled\"
yaml.safe_dump(p, open(\"params.yaml\", \"w\"))" &&
        ln -s /app/data data && knd train'
    ls -l "$WORK/out/models/heldout.pt"
  fi
fi

# --- 7. sizes ------------------------------------------------------------------------------
log "image sizes"
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' \
  | grep -E "^($IMAGE-(predict|train):smoke|$BASE_IMAGE)" || true
echo "docker_smoke: OK"
