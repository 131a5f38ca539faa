"""`knd predict` and the shared prediction core: windowing, batching, backends, output formats."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from helpers.audio import RATE, mirror_clips, voice
from helpers.models import LABELS, make_checkpoint
from helpers.project import ROOT, run_cli

from knd.errors import KndError
from knd.models.classifier import Classifier
from knd.models.features import fix_length
from knd.serving.predict import load_predictor
from knd.serving.predictor import Predictor, centre_pad, window_starts


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="session")
def predictor(checkpoint):
    return load_predictor(checkpoint, batch_size=4)


# --- windowing -----------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 1000, 31_999, 32_000])
def test_a_clip_up_to_the_training_length_is_one_window(length):
    assert window_starts(length, 32_000) == [0]


@pytest.mark.parametrize("length", [32_001, 48_000, 64_000, 100_003, 320_000])
def test_long_clips_are_covered_end_to_end_with_at_least_half_overlap(length):
    starts = window_starts(length, 32_000)
    assert starts[0] == 0 and starts[-1] == length - 32_000
    gaps = np.diff(starts)
    assert gaps.max() <= 16_000 and gaps.max() - gaps.min() <= 1  # evenly spaced
    assert len(window_starts(length + 16_000, 32_000)) == len(starts) + 1  # never more than needed


@pytest.mark.parametrize("length", [1, 999, 1000, 31_999])
def test_short_clips_are_padded_like_training(length):
    wave = torch.randn(length)
    np.testing.assert_array_equal(centre_pad(wave.numpy(), 32_000), fix_length(wave, 32_000))


class MeanLevel(Predictor):
    """A stand-in backend whose 'probabilities' record each window's mean, to check the plumbing."""

    backend = "test"

    def __init__(self, batch_size: int):
        super().__init__(["level", "rest"], RATE, 100, batch_size)
        self.batches: list[int] = []

    def _forward(self, windows, embeddings):
        """'Embedding': the window's first and last sample."""
        self.batches.append(len(windows))
        level = windows.mean(axis=1)
        return np.stack([level, 1 - level], axis=1), windows[:, [0, -1]] if embeddings else None


def test_window_probabilities_are_averaged_and_batched_across_clips():
    long = np.repeat([0.0, 1.0], 150).astype(np.float32)  # windows at 0, 50, 100, 150, 200
    short = np.ones(50, np.float32)  # padded: mean 0.5
    backend = MeanLevel(batch_size=4)
    first, second = backend.predict([long, short])
    assert backend.batches == [4, 2]  # 6 windows from two clips, in batches of 4
    assert first["level"] == pytest.approx(np.mean([0, 0, 0.5, 1, 1]))
    assert second["level"] == pytest.approx(0.5)
    assert backend.predict([]) == []
    probabilities, embeddings = backend.clip_outputs([long, short], embeddings=True)
    assert probabilities[:, 0] == pytest.approx([first["level"], 0.5])
    # windows of `long` start at 0, 50, 100, 150, 200: first/last samples 0/0 0/0 0/1 1/1 1/1
    np.testing.assert_allclose(embeddings, [[0.4, 0.6], [0.0, 0.0]])


# --- the torch backend ------------------------------------------------------------------------


def test_torch_backend_is_the_checkpoints_classifier(checkpoint, predictor):
    model = Classifier.load(checkpoint)
    waves = torch.from_numpy(np.stack([voice(2.0), voice(2.0, f0=220, seed=1)]))
    with torch.no_grad():
        want = torch.softmax(model(waves), dim=-1).numpy()
    got = predictor.predict(list(waves))
    assert predictor.labels == LABELS and predictor.backend == "torch"
    np.testing.assert_allclose([list(p.values()) for p in got], want, atol=1e-6)
    # a long clip: the mean over its windows, whatever the batch size
    long = voice(7.3, seed=2)
    (p4,) = predictor.predict([long])
    (p64,) = load_predictor(checkpoint, batch_size=64).predict([long])
    assert p4 == pytest.approx(p64, abs=1e-6) and sum(p4.values()) == pytest.approx(1)


def test_unknown_or_missing_model_files_are_named(tmp_path):
    with pytest.raises(KndError) as missing:
        load_predictor(tmp_path / "model.pt")
    assert str(missing.value).startswith(f"{tmp_path / 'model.pt'}: model not found; train one")
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(KndError) as unknown:
        load_predictor(tmp_path / "model.h5")
    assert str(unknown.value) == (
        f"{tmp_path / 'model.h5'}: unknown model type; expected a .pt checkpoint or an .onnx export"
    )


# --- the command ------------------------------------------------------------------------------


@pytest.fixture
def inputs(tmp_path) -> Path:
    """A folder of good clips (generated, mono 16 kHz and stereo 44.1 kHz) and one bad file."""
    folder = tmp_path / "clips"
    (folder / "nested").mkdir(parents=True)
    sf.write(folder / "a.wav", voice(1.5), RATE)
    sf.write(folder / "nested" / "b.flac", np.stack([voice(5.0, 44_100)] * 2, 1), 44_100)
    (folder / "notes.txt").write_text("not audio, not an audio extension: ignored")
    return folder


def test_predict_json_reports_every_input_and_fails_if_any_did(
    monkeypatch, capsys, inputs, checkpoint
):
    (inputs / "broken.wav").write_bytes(b"RIFF nonsense")
    status, out, err = run_cli(
        monkeypatch, capsys, "predict", str(inputs), "--model", str(checkpoint), "--format", "json"
    )
    records = {Path(r["path"]).name: r for r in json.loads(out)}
    assert sorted(records) == ["a.wav", "b.flac", "broken.wav"]
    assert records["broken.wav"] == {
        "path": str(inputs / "broken.wav"),
        "error": "not audio (Format not recognised.)",
    }
    for name in ("a.wav", "b.flac"):
        assert set(records[name]) == {"path", "label", "probabilities"}
        probabilities = records[name]["probabilities"]
        assert list(probabilities) == LABELS and sum(probabilities.values()) == pytest.approx(1)
        assert records[name]["label"] == max(probabilities, key=probabilities.get)
    assert status == 1 and "error: 1 of 3 inputs could not be read" in err


def test_predict_table_and_csv(monkeypatch, capsys, inputs, checkpoint):
    args = ("predict", str(inputs / "a.wav"), str(inputs / "nested"), "--model", str(checkpoint))
    status, out, _ = run_cli(monkeypatch, capsys, *args, "--top-k", "2")
    header, *rows = out.strip().splitlines()
    assert status == 0 and header.split() == ["path", "label", "top-2", "probabilities"]
    assert len(rows) == 2 and all(len(row.split()) == 2 + 2 * 2 for row in rows)
    status, out, _ = run_cli(monkeypatch, capsys, *args, "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert status == 0 and [Path(r["path"]).name for r in table] == ["a.wav", "b.flac"]
    assert all(r["error"] == "" and float(r[r["label"]]) > 0 for r in table)


def test_a_stereo_44k_flac_predicts_like_the_same_clip_mono_at_16k(
    monkeypatch, capsys, tmp_path, checkpoint
):
    """Channels are averaged (not one taken) and the rate converted before the model hears it."""
    mono = voice(2.5)
    sf.write(tmp_path / "mono.wav", mono, RATE, subtype="PCM_16")
    up = soxr.resample(mono, RATE, 44_100)  # another resampler than the reader's
    sf.write(tmp_path / "stereo.flac", np.stack([1.6 * up, 0.4 * up], axis=1), 44_100)
    args = ("predict", str(tmp_path), "--model", str(checkpoint), "--format", "json")
    status, out, _ = run_cli(monkeypatch, capsys, *args)
    records = {Path(r["path"]).name: r["probabilities"] for r in json.loads(out)}
    assert status == 0 and sorted(records) == ["mono.wav", "stereo.flac"]
    # The 16 -> 44.1 -> 16 kHz round trip changes the samples by <1 % RMS, which moves this
    # model's probabilities by ~4e-4; the left channel alone, or another clip, moves them >5e-3.
    assert records["stereo.flac"] == pytest.approx(records["mono.wav"], abs=1e-3)


def test_predict_on_real_clips_matches_the_core(
    monkeypatch, capsys, tmp_path, predictor, checkpoint
):
    for name, data in mirror_clips(3).items():
        (tmp_path / name).write_bytes(data)
    status, out, _ = run_cli(
        monkeypatch,
        capsys,
        "predict",
        str(tmp_path),
        "--model",
        str(checkpoint),
        "--format",
        "json",
    )
    records = json.loads(out)
    want = predictor.predict([predictor.read(r["path"]) for r in records])
    assert status == 0 and len(records) == 3
    for record, probabilities in zip(records, want, strict=True):
        assert record["probabilities"] == pytest.approx(probabilities, abs=1e-6)


def test_cli_start_up_does_not_import_torch():
    code = "import sys, knd.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
