"""`pip install '.[serve]'` alone (no torch): `knd predict`, `score` and `serve` for ONNX models.

The real install, into a fresh venv, from pyproject.toml: the list of what serving needs is
checked by installing it, not by reading it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
import venv

import numpy as np
import pytest
import soundfile as sf
from helpers.audio import voice
from helpers.models import make_checkpoint
from helpers.project import ROOT

from knd.models.onnx_export import export_onnx
from knd.serving.predict import load_predictor


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_extra_runs_an_onnx_model_without_torch(tmp_path):
    model = make_checkpoint(tmp_path / "model.pt", "model=sernet", "model.channels=[8,16]")
    onnx_model = tmp_path / "model.onnx"
    export_onnx(model, onnx_model)
    clip = tmp_path / "clip.wav"  # 48 kHz, as phones and browsers send it: resampled on read
    sf.write(clip, voice(3.0, 48_000), 48_000)
    want = load_predictor(onnx_model).predict([load_predictor(onnx_model).read(clip)])[0]

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python, knd = env_dir / "bin/python", env_dir / "bin/knd"
    install = [python, "-m", "pip", "install", "--quiet", f"{ROOT}[serve]"]
    subprocess.run(install, check=True, timeout=600)
    no_torch = subprocess.run([python, "-c", "import torch"], capture_output=True)
    assert no_torch.returncode != 0, "the [serve] extra pulled in torch"

    out = subprocess.run(
        [knd, "predict", clip, "--model", onnx_model, "--format", "json"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    got = json.loads(out.stdout)[0]["probabilities"]
    np.testing.assert_allclose(list(got.values()), list(want.values()), atol=1e-6)
    out = subprocess.run(  # the voice-activity detector is in the extra too
        [knd, "predict", clip, "--model", onnx_model, "--timeline", "--format", "json"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert json.loads(out.stdout)[0]["segments"]
    manifest = tmp_path / "set.csv"  # `knd score` needs no torch either
    manifest.write_text(f"path,label,speaker\n{clip.name},happy,someone\n")
    out = subprocess.run(
        [knd, "score", manifest, "--model", onnx_model, "--format", "json"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert json.loads(out.stdout)["n"] == 1

    port = _free_port()
    server = subprocess.Popen(
        [knd, "serve", "--model", onnx_model, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):  # bounded: at most ~20 s for the server to come up
            try:
                health = json.load(urllib.request.urlopen(f"{url}/health", timeout=2))
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("knd serve did not answer /health within 20 s")
        assert health["backend"] == "onnx"
        body, boundary = _multipart(clip.read_bytes(), clip.name)
        request = urllib.request.Request(
            f"{url}/predict",
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        answer = json.load(urllib.request.urlopen(request, timeout=30))
        np.testing.assert_allclose(
            list(answer["probabilities"].values()), list(want.values()), atol=1e-6
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def _multipart(data: bytes, name: str) -> tuple[bytes, str]:
    boundary = "kndtestboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), boundary
