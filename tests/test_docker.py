"""Both Docker images, built and run for real by scripts/docker_smoke.sh where an engine answers.

The script builds the images on a local Debian + python3 base (no registry needed), serves
models/model.onnx from the inference image with no network, checks /health and /predict with a
real clip from inside the container, waits for the image's HEALTHCHECK, and trains one epoch in
the training image. It needs a Docker engine at DOCKER_HOST (default
unix:///tmp/docker/docker.sock; docs/docker.md says how to start one) and a trained model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "docker_smoke.sh"
DEFAULT_HOST = "unix:///tmp/docker/docker.sock"


def docker_env() -> dict[str, str]:
    return {**os.environ, "DOCKER_HOST": os.environ.get("DOCKER_HOST", DEFAULT_HOST)}


def engine_problem() -> str | None:
    """Why no engine can be used here, or None."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    env = docker_env()
    try:
        info = subprocess.run(
            ["docker", "info"], env=env, capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return f"`docker info` timed out at DOCKER_HOST={env['DOCKER_HOST']}"
    if info.returncode:
        return (
            f"no Docker engine answers at DOCKER_HOST={env['DOCKER_HOST']} "
            "(start one as docs/docker.md says)"
        )
    return None


@pytest.mark.slow
def test_images_build_and_serve():
    if reason := engine_problem():
        pytest.skip(reason)
    if not any((ROOT / "models" / name).is_file() for name in ("model.onnx", "model.pt")):
        pytest.skip("no models/model.onnx or models/model.pt: run the pipeline first")
    run = subprocess.run(
        ["bash", str(SCRIPT)], cwd=ROOT, env=docker_env(), capture_output=True, text=True
    )
    assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    out = run.stdout
    assert "GET /health ->" in out and "POST /predict ->" in out
    assert "HEALTHCHECK status: healthy" in out
    assert "torch installed: False" in out  # the inference image is torch-free
    assert "docker_smoke: OK" in out
