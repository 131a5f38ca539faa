"""Pretrained speech encoders (`features=wavlm_base_plus` etc.): the frozen encoder's cached
layers, the head trained on them, and the checkpoint that runs both from a waveform.

The real weights cannot be downloaded here, so the whole path runs with a tiny, randomly
initialised encoder of the same torchaudio class, given as `features.encoder_weights`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
import torchaudio
from fastapi.testclient import TestClient
from helpers.project import TINY, compose_config, run_cli, write_params

from knd.config import ConfigError
from knd.data.processed import load_processed
from knd.models.classifier import Classifier
from knd.models.encoders import bundle_file, load_encoder, save_encoder
from knd.serving.serve import create_app

ENCODER = ("features=wavlm_base_plus", "model=layer_head")


def tiny_wavlm(path: Path) -> Path:
    """WavLM Base+'s architecture shrunk (3 layers of 32 dims, the same 20 ms frames), random."""
    params = dict(torchaudio.pipelines.WAVLM_BASE_PLUS._params)
    params.update(
        extractor_conv_layer_config=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
        encoder_embed_dim=32,
        encoder_pos_conv_kernel=16,
        encoder_pos_conv_groups=4,
        encoder_num_layers=3,
        encoder_num_heads=2,
        encoder_ff_interm_features=64,
    )
    torch.manual_seed(0)
    save_encoder(torchaudio.models.wavlm_model(**params), "wavlm_model", params, True, path)
    return path


def test_an_encoder_is_trained_with_the_layer_head_only():
    with pytest.raises(ConfigError, match=r"features\.kind=wavlm_base_plus .* not model=sernet"):
        compose_config("features=wavlm_base_plus")
    with pytest.raises(ConfigError, match="layer_head needs an encoder's layers"):
        compose_config("model=layer_head")
    assert compose_config(*ENCODER).features.is_encoder


def test_missing_weights_say_which_file_to_put_where(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", *ENCODER)
    status, _, err = run_cli(monkeypatch, capsys, "make-dataset")
    want = tmp_path / "torch" / "hub" / "checkpoints" / "wavlm_base_plus.pth"
    assert status == 1 and "Traceback" not in err
    assert "features=wavlm_base_plus needs wavlm_base_plus.pth" in err
    assert f"put it at {want}" in err
    assert "https://download.pytorch.org/torchaudio/models/wavlm_base_plus.pth" in err


def test_the_checkpoint_carries_the_frozen_encoder(tmp_path):
    cfg = compose_config(*ENCODER, f"features.encoder_weights={tiny_wavlm(tmp_path / 'enc.pt')}")
    encoder = load_encoder(cfg.features)
    torch.manual_seed(1)
    mean, std = torch.randn(3, 32), torch.rand(3, 32) + 0.5
    model = Classifier(cfg.model, cfg.features, list("abcd"), mean, std, encoder).train()
    assert not model.front_end.encoder.training  # no dropout in the frozen encoder
    assert not any(p.requires_grad for p in model.front_end.parameters())
    model.save(tmp_path / "model.pt", history=[])
    (tmp_path / "enc.pt").unlink()  # the checkpoint alone is enough
    loaded = Classifier.load(tmp_path / "model.pt")
    wave = torch.randn(2, cfg.features.num_samples) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(loaded(wave), model.eval()(wave), rtol=0, atol=1e-6)
    assert loaded.encoder["builder"] == "wavlm_model" and loaded.mean.shape == (1, 3, 1, 32)


@pytest.mark.slow
def test_the_bundle_file_in_the_hub_cache_is_read(tmp_path, monkeypatch):
    """A file where torchaudio's bundle keeps it (here: the real architecture, random weights)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = compose_config("features=wav2vec2_base", "model=layer_head").features
    b = torchaudio.pipelines.WAV2VEC2_BASE
    bundle_file(cfg.kind).parent.mkdir(parents=True)
    torch.save(torchaudio.models.wav2vec2_model(**b._params).state_dict(), bundle_file(cfg.kind))
    encoder = load_encoder(cfg)
    assert encoder["builder"] == "wav2vec2_model" and encoder["params"] == b._params
    assert encoder["normalize"] is False and len(encoder["state_dict"]) > 100


def cli(monkeypatch, capsys, *args: str) -> tuple[str, str]:
    status, out, err = run_cli(monkeypatch, capsys, *args)
    assert status == 0, err[-3000:]
    return out, err


@pytest.mark.slow
def test_the_whole_path_with_a_tiny_encoder(subset_zip, tmp_path, monkeypatch, capsys):
    """make_dataset -> train -> evaluate (robustness, plot) -> predict -> serve -> export."""
    weights = tiny_wavlm(tmp_path / "tiny_wavlm.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # empty: the local file is used
    write_params(
        tmp_path / "params.yaml",
        *TINY,
        *ENCODER,
        f"features.encoder_weights={weights}",
        "data=local",
        f"data.path={subset_zip}",
    )
    cli(monkeypatch, capsys, "download")
    cli(monkeypatch, capsys, "make-dataset")
    data = load_processed(Path("data/processed"))
    assert data.features.dtype == torch.float16
    assert data.features.shape[1:] == (3, 99, 32)  # layers, 2 s of 20 ms frames, dims
    assert data.encoder["builder"] == "wavlm_model" and data.mean.shape == (3, 32)

    _, err = cli(monkeypatch, capsys, "train")
    assert "waveform augmentation and spectrogram masks are not applied" in err
    cli(monkeypatch, capsys, "evaluate")
    assert 0 <= json.loads(Path("reports/metrics.json").read_text())["uar"] <= 1
    cli(monkeypatch, capsys, "robustness")  # the whole model on perturbed waveforms
    assert Path("reports/robustness.json").is_file()
    cli(monkeypatch, capsys, "plot")

    # predict on a clip's training crop = the head on that clip's cached states
    model = Classifier.load("models/heldout.pt")
    i = int(data.indices("test")[0])
    sf.write(tmp_path / "crop.wav", data.waves([i])[0].numpy(), 16000, "PCM_16")
    out, _ = cli(
        monkeypatch,
        capsys,
        "predict",
        "crop.wav",
        "--model",
        "models/heldout.pt",
        "--format",
        "json",
        "--embeddings",
    )
    (record,) = json.loads(out)
    with torch.no_grad():
        states = model.normalise(data.features[i : i + 1].float())
        logits, embedding = model.net.forward_with_embedding(states)
    want = torch.softmax(logits / model.temperature, dim=-1)[0]
    assert list(record["probabilities"].values()) == pytest.approx(want.tolist(), abs=1e-4)
    assert record["embedding"] == pytest.approx(embedding[0].tolist(), abs=1e-3, rel=1e-3)

    with TestClient(create_app(Path("models/heldout.pt"))) as client:
        files = {"file": ("crop.wav", (tmp_path / "crop.wav").read_bytes(), "audio/wav")}
        response = client.post("/predict", files=files)
    assert response.status_code == 200
    assert response.json()["probabilities"] == pytest.approx(record["probabilities"], abs=1e-6)

    cli(monkeypatch, capsys, "export", "--model", "models/heldout.pt", "--out", "heldout.onnx")
    out, _ = cli(
        monkeypatch, capsys, "predict", "crop.wav", "--model", "heldout.onnx", "--format", "json"
    )
    (exported,) = json.loads(out)
    assert exported["probabilities"] == pytest.approx(record["probabilities"], abs=1e-4)
