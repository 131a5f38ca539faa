"""make_dataset on a folder that is not as clean as it looks."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.project import TINY, compose_config

from knd.data.make_dataset import make_dataset
from knd.data.processed import load_processed
from knd.errors import KndError

SR = 16000


def _speech_like(seconds=1.0, sr=SR, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + rng.standard_normal(t.size) * 0.1)).astype(
        np.float32
    )


def _clip_name(actor: int, emotion: int, intensity: int = 1, rep: int = 1) -> str:
    return f"03-01-{emotion:02d}-{intensity:02d}-01-{rep:02d}-{actor:02d}"


def _write_corpus(raw: Path, actors=range(1, 9)) -> None:
    """Two clips per emotion per actor in assorted formats, rates and channel counts."""
    formats = [("wav", "PCM_16", SR, 1), ("flac", "PCM_24", 48000, 2), ("aiff", "PCM_16", 22050, 1)]
    for actor in actors:
        folder = raw / f"Actor_{actor:02d}"
        folder.mkdir(parents=True)
        for emotion in range(1, 9):
            for rep in (1, 2):
                ext, subtype, rate, channels = formats[(actor + emotion + rep) % len(formats)]
                audio = _speech_like(1.5, rate, seed=actor * 100 + emotion)
                if channels == 2:
                    audio = np.stack([audio, audio * 0.5], axis=1)
                sf.write(
                    folder / f"{_clip_name(actor, emotion, 1, rep)}.{ext}", audio, rate, subtype
                )


def _bad_files(raw: Path) -> dict[str, str]:
    """One file per kind of damage; returns name -> expected reason."""
    folder = raw / "Actor_01"
    (folder / f"{_clip_name(1, 3, 2, 1)}.wav").write_bytes(b"")
    (folder / f"{_clip_name(1, 3, 2, 2)}.wav").write_text("not audio at all")
    sf.write(folder / f"{_clip_name(1, 4, 2, 1)}.wav", np.zeros(SR, np.float32), SR)
    nan = _speech_like()
    nan[100:200] = np.nan
    sf.write(folder / f"{_clip_name(1, 4, 2, 2)}.wav", nan, SR, "FLOAT")
    whole = folder / f"{_clip_name(1, 5, 2, 1)}.wav"
    sf.write(whole, _speech_like(), SR)
    whole.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    sf.write(folder / "recording-from-my-phone.wav", _speech_like(), SR)
    return {
        f"{_clip_name(1, 3, 2, 1)}.wav": "empty file",
        f"{_clip_name(1, 3, 2, 2)}.wav": "not audio",
        f"{_clip_name(1, 4, 2, 1)}.wav": "silent",
        f"{_clip_name(1, 4, 2, 2)}.wav": "non-finite samples",
        f"{_clip_name(1, 5, 2, 1)}.wav": "truncated",
        "recording-from-my-phone.wav": "bad file name",
    }


def test_bad_files_are_reported_and_skipped(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "processed"
    _write_corpus(raw)
    expected = _bad_files(raw)
    cfg = compose_config(*TINY, "data.max_skipped_fraction=0.1")
    summary = make_dataset(cfg, raw, out)

    assert summary["kept"] == 8 * 16 and summary["skipped"] == len(expected)
    reasons = {Path(s["path"]).name: s["reason"] for s in summary["skipped_files"]}
    assert reasons == expected
    printed = capsys.readouterr().out
    assert f"{summary['files']} files: 128 kept, 6 skipped" in printed
    assert "recording-from-my-phone.wav: bad file name" in printed
    assert json.loads((out / "summary.json").read_text()) == summary

    data = load_processed(out)
    assert data.audio.shape == (128, cfg.features.num_samples) and data.audio.dtype == torch.int16
    assert data.features.shape == (128, 64, cfg.features.num_frames)
    assert set(data.meta["split"]) == {"train", "val", "test"}
    assert {"path", "emotion", "intensity", "statement", "repetition", "actor", "gender"} <= set(
        data.meta.columns
    )


def test_too_many_bad_files_fails_and_writes_nothing(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "processed"
    _write_corpus(raw)
    _bad_files(raw)
    with pytest.raises(KndError, match=r"above data\.max_skipped_fraction=1\.0%"):
        make_dataset(compose_config(*TINY, "data.max_skipped_fraction=0.01"), raw, out)
    assert not out.exists() and not out.with_name("processed.tmp").exists()


def test_nothing_usable_fails_clearly(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "03-01-01-01-01-01-01.wav").write_bytes(b"")
    with pytest.raises(KndError, match="no usable audio left"):
        make_dataset(compose_config(*TINY), raw, tmp_path / "processed")
    with pytest.raises(KndError, match="no audio files found"):
        make_dataset(compose_config(*TINY), tmp_path / "empty", tmp_path / "processed")


@pytest.mark.parametrize("labels", ["emotion7", "emotion_gender14"])
def test_label_sets(tmp_path, labels):
    raw = tmp_path / "raw"
    _write_corpus(raw)
    make_dataset(compose_config(*TINY, f"data.labels={labels}"), raw, tmp_path / "p")
    data = load_processed(tmp_path / "p")
    assert len(data.labels) == {"emotion7": 7, "emotion_gender14": 14}[labels]
    assert "calm" not in " ".join(data.meta["label"])
