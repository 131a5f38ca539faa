"""make_dataset on a folder that is not as clean as it looks."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.project import TINY, compose_config

from knd.audio import read_audio
from knd.data.make_dataset import make_dataset
from knd.data.processed import load_processed
from knd.errors import KndError
from knd.models.features import FrontEnd, fix_length

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


def test_bad_files_are_reported_and_skipped(tmp_path, caplog):
    raw, out = tmp_path / "raw", tmp_path / "processed"
    _write_corpus(raw)
    expected = _bad_files(raw)
    cfg = compose_config(*TINY, "data.max_skipped_fraction=0.1")
    with caplog.at_level("INFO", logger="knd"):
        summary = make_dataset(cfg, raw, out)

    assert summary["kept"] == 8 * 16 and summary["skipped"] == len(expected)
    reasons = {Path(s["path"]).name: s["reason"] for s in summary["skipped_files"]}
    assert reasons == expected
    assert f"{summary['files']} files: 128 kept, 6 skipped" in caplog.messages
    warned = [r.message for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 6 and any(
        "recording-from-my-phone.wav: bad file name" in w for w in warned
    )
    assert json.loads((out / "summary.json").read_text()) == summary

    data = load_processed(out)
    assert data.audio.dtype == torch.int16 and len(data.offsets) == 129
    assert {len(data.clip(i)) for i in range(128)} == {round(1.5 * SR)}  # whole, at 16 kHz
    assert data.features.shape == (128, cfg.features.num_bins, cfg.features.num_frames)
    assert set(data.meta["split"]) == {"train", "val", "test"}
    assert {"path", "emotion", "label", "speaker", "gender", "corpus"} <= set(data.meta.columns)
    assert set(data.meta["speaker"]) == set(range(1, 9)) and set(data.meta["corpus"]) == {"ravdess"}


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


def test_clips_are_kept_whole_and_training_sees_their_centre(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "processed"
    _write_corpus(raw, actors=range(1, 7))
    long = raw / "Actor_01" / f"{_clip_name(1, 2, 2, 1)}.wav"
    sf.write(long, _speech_like(5.3, seed=7), SR, "PCM_16")  # longer than features.duration
    cfg = compose_config(*TINY)
    make_dataset(cfg, raw, out)
    data = load_processed(out)

    i = data.meta.index[data.meta["path"] == str(long.relative_to(raw))][0]
    np.testing.assert_array_equal(data.clip(i), read_audio(long, SR))  # what `knd predict` reads
    index = torch.tensor([0, 1, i])
    crops = data.waves(index)
    assert crops.shape == (3, cfg.features.num_samples)
    assert torch.equal(crops[2], fix_length(torch.from_numpy(read_audio(long, SR)), len(crops[2])))
    features = FrontEnd(cfg.features)(crops)
    torch.testing.assert_close(data.features[index], features, rtol=0, atol=1e-4)


def test_data_from_another_version_is_refused(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "processed"
    _write_corpus(raw, actors=range(1, 7))
    make_dataset(compose_config(*TINY), raw, out)
    data = torch.load(out / "features.pt", weights_only=True)
    del data["offsets"]
    torch.save(data, out / "features.pt")
    with pytest.raises(KndError, match=r"features\.pt: written by another version of knd"):
        load_processed(out)
