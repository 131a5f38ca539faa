"""Timelines of long recordings: speech found by the VAD, pieces of at most one window, summary."""

from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers.audio import RATE, mirror_clips, voice
from helpers.models import LABELS, make_checkpoint
from helpers.project import run_cli

from knd.audio import read_audio
from knd.serving.predict import load_predictor
from knd.serving.timeline import has_speech, speech_segments, split, timeline

WINDOW = 2 * RATE  # make_checkpoint's features.duration


def hiss(seconds: float, seed: int = 0) -> np.ndarray:
    """Room noise at about -50 dBFS: silence to a listener, not digital zeros."""
    return (0.003 * np.random.default_rng(seed).standard_normal(round(seconds * RATE))).astype(
        np.float32
    )


def recording() -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Voice 1-6 s, then voice 8-9.5 s and 9.7-10.7 s (a 0.2 s pause), in hiss; the true spans."""
    parts = [hiss(1), voice(5), hiss(2, 1), voice(1.5, f0=220, seed=1), hiss(0.2, 2)]
    parts += [voice(1, seed=2), hiss(1, 3)]
    return np.concatenate(parts), [(1.0, 6.0), (8.0, 10.7)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return load_predictor(checkpoint)


def test_speech_is_found_and_short_pauses_are_bridged():
    wave, truth = recording()
    found = [(s / RATE, e / RATE) for s, e in speech_segments(wave, RATE)]
    assert len(found) == len(truth)
    for (start, end), (want_start, want_end) in zip(found, truth, strict=True):
        assert start == pytest.approx(want_start, abs=0.1)
        assert end == pytest.approx(want_end, abs=0.15)


def test_silence_and_clicks_are_not_speech():
    assert speech_segments(hiss(5), RATE) == []
    click = hiss(3)
    click[RATE : RATE + 800] += voice(0.05)  # 50 ms: under MIN_SPEECH
    assert speech_segments(click, RATE) == []
    assert not has_speech(click, RATE) and has_speech(voice(1.0), RATE)


def test_real_speech_is_found_inside_the_clip():
    """A RAVDESS clip: one sentence, with about a second of room tone before and after it."""
    (name, data), *_ = mirror_clips(1).items()
    wave = read_audio(data, RATE, name)
    (start, end), *rest = speech_segments(wave, RATE)
    assert not rest and start / RATE > 0.3 and end / RATE < len(wave) / RATE - 0.3


@pytest.mark.parametrize(
    ("start", "end", "pieces"), [(0, 100, 1), (10, 110, 1), (0, 101, 2), (5, 305, 3)]
)
def test_long_segments_are_cut_into_the_fewest_equal_pieces_of_at_most_a_window(start, end, pieces):
    cut = split(start, end, 100)
    assert len(cut) == pieces and cut[0][0] == start and cut[-1][1] == end
    assert all(b - a <= 100 for a, b in cut)
    assert all(a == b for (_, a), (b, _) in itertools.pairwise(cut))  # contiguous
    lengths = [b - a for a, b in cut]
    assert max(lengths) - min(lengths) <= 1


def test_timeline_scores_each_piece_and_summarises_the_speech_time(predictor):
    wave, _ = recording()
    result = timeline(predictor, wave, "talk.wav")
    assert result["path"] == "talk.wav" and result["duration"] == pytest.approx(len(wave) / RATE)
    segments = result["segments"]
    # 1-6 s (5 s) is cut into 3 pieces of at most 2 s, 8-10.7 s into 2
    assert len(segments) == 5
    for segment in segments:
        assert 0 < segment["end"] - segment["start"] <= WINDOW / RATE
        start, end = round(segment["start"] * RATE), round(segment["end"] * RATE)
        (want,) = predictor.predict([wave[start:end]])
        assert segment["probabilities"] == pytest.approx(want, abs=1e-6)
        assert segment["label"] == max(want, key=want.get)
    assert list(result["summary"]) == LABELS and sum(result["summary"].values()) == pytest.approx(1)
    speech = sum(s["end"] - s["start"] for s in segments)
    for label, share in result["summary"].items():
        mine = sum(s["end"] - s["start"] for s in segments if s["label"] == label)
        assert share == pytest.approx(mine / speech)


def test_a_recording_without_speech_has_an_empty_timeline(predictor):
    result = timeline(predictor, hiss(4), "quiet.wav")
    assert result["segments"] == [] and set(result["summary"].values()) == {0.0}


def test_timeline_embeddings_are_each_pieces(predictor):
    wave, _ = recording()
    segments = timeline(predictor, wave, "talk.wav", embeddings=True)["segments"]
    first = segments[0]
    start, end = round(first["start"] * RATE), round(first["end"] * RATE)
    _, want = predictor.clip_outputs([wave[start:end]], embeddings=True)
    np.testing.assert_allclose(first["embedding"], want[0], rtol=1e-6)
    assert len({len(s["embedding"]) for s in segments}) == 1


# --- the command ------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path) -> list[str]:
    sf.write(tmp_path / "talk.wav", recording()[0], RATE)
    sf.write(tmp_path / "quiet.flac", hiss(3), RATE)
    (tmp_path / "broken.wav").write_bytes(b"RIFF nonsense")
    return [str(tmp_path / n) for n in ("talk.wav", "quiet.flac", "broken.wav")]


def test_predict_timeline_json(monkeypatch, capsys, files, checkpoint, predictor):
    args = ("predict", *files, "--model", str(checkpoint), "--timeline", "--format", "json")
    status, out, err = run_cli(monkeypatch, capsys, *args)
    talk, quiet, broken = json.loads(out)
    want = timeline(predictor, predictor.read(files[0]), files[0])
    assert talk == want and set(talk) == {"path", "duration", "segments", "summary"}
    assert quiet["segments"] == [] and broken == {
        "path": files[2],
        "error": "not audio (Format not recognised.)",
    }
    assert status == 1 and "error: 1 of 3 inputs could not be read" in err


def test_predict_timeline_csv_and_table(monkeypatch, capsys, files, checkpoint):
    args = ("predict", *files[:2], "--model", str(checkpoint), "--timeline")
    status, out, _ = run_cli(monkeypatch, capsys, *args, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0 and [r["label"] == "summary" for r in rows] == [False] * 5 + [True] * 2
    assert list(rows[0]) == ["path", "start", "end", "label", *LABELS, "error"]
    assert float(rows[0]["start"]) == pytest.approx(1.0, abs=0.1)
    assert sum(float(rows[5][label]) for label in LABELS) == pytest.approx(1)
    status, out, _ = run_cli(monkeypatch, capsys, *args, "--top-k", "2")
    lines = out.splitlines()
    assert status == 0 and lines[0].startswith(f"{files[0]}: 11.7 s, speech ")
    assert len(lines[1].split()) == 3 + 2 * 2  # start end label, two top probabilities
    assert lines[-1] == f"{files[1]}: 3.0 s, speech 0.0 s: no speech"


def test_predict_embeddings(monkeypatch, capsys, files, checkpoint, predictor):
    args = ("predict", files[0], "--model", str(checkpoint), "--embeddings")
    status, out, _ = run_cli(monkeypatch, capsys, *args, "--format", "json")
    (record,) = json.loads(out)
    _, want = predictor.clip_outputs([predictor.read(files[0])], embeddings=True)
    assert status == 0 and set(record) == {"path", "label", "probabilities", "embedding"}
    np.testing.assert_allclose(record["embedding"], want[0], rtol=1e-6)
    status, out, _ = run_cli(monkeypatch, capsys, *args, "--timeline", "--format", "json")
    assert status == 0 and all("embedding" in s for s in json.loads(out)[0]["segments"])
    status, _, err = run_cli(monkeypatch, capsys, *args)
    assert status == 1 and "--embeddings: embeddings are a JSON field; add --format json" in err


def test_the_same_speech_is_found_at_any_recording_level():
    """RAVDESS speaks 30 dB below full scale; the detector must not hear less of it for that."""
    (name, data), *_ = mirror_clips(1).items()
    wave = read_audio(data, RATE, name)
    found = speech_segments(wave, RATE)
    assert found and all(speech_segments(wave * g, RATE) == found for g in (0.1, 0.3, 3.0))
    speech = sum(end - start for start, end in found) / RATE
    assert speech > 1.0, f"only {speech:.2f} s of a spoken sentence found"
