"""Emotion over time in a long recording: find the speech, score it piece by piece, summarise.

Speech is found by the WebRTC voice-activity detector (the `webrtcvad-wheels` package: compiled
C, no weights, no torch), on 30 ms frames; gaps shorter than `MIN_GAP` seconds are bridged (a
breath does not end a turn) and speech shorter than `MIN_SPEECH` is dropped. Silence is not
classified. A speech segment longer than the model's window (`features.duration`) is cut into the
fewest equal pieces no longer than it; each piece is scored by `Predictor.clip_outputs`, so a
piece shorter than the window is centre-padded, as in training. The summary gives each emotion's
share of the speech time.

`knd predict --timeline` and `POST /timeline` both call `timeline`, and `WS /stream` asks
`has_speech` whether the latest audio holds speech before scoring it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import webrtcvad

from knd.audio import resample
from knd.serving.predict import read_files
from knd.serving.predictor import Predictor, top_label

FRAME_SECONDS = 0.03  # WebRTC VAD frame: 10, 20 or 30 ms
AGGRESSIVENESS = 2  # 0 (keeps most) to 3 (drops most non-speech); 2 suits speech over noise
MIN_GAP = 0.3  # seconds: shorter pauses inside speech are bridged
MIN_SPEECH = 0.25  # seconds: shorter bursts (clicks, coughs) are dropped
VAD_RATES = (8000, 16000, 32000, 48000)  # the rates WebRTC VAD accepts
VAD_LEVEL = 0.5  # RMS (-6 dBFS) the loudest frames are brought to before the detector hears them
MAX_VAD_GAIN = 1000.0  # 60 dB up or down at most
MIN_CONTRAST = 10.0  # loudest frames this many times (20 dB) the quietest: a level worth scaling


def speech_frames(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """One bool per `FRAME_SECONDS` frame of `wave` (float in [-1, 1]): does it hold speech?

    The detector's thresholds are absolute: speech recorded 30 dB below full scale (RAVDESS is)
    would be half missed, and the same recording played louder would be cut differently. So the
    recording is first scaled, for the detector only, to put its loudest frames (the 95th
    percentile of frame RMS) at `VAD_LEVEL`; the model itself hears the level it was given. Only
    a recording whose loudest frames stand `MIN_CONTRAST` above its quietest (the 10th
    percentile) is scaled: steady room noise is not turned up into something that sounds like
    speech.
    """
    rate = sample_rate if sample_rate in VAD_RATES else 16000
    wave = resample(wave, sample_rate, rate)
    step = round(FRAME_SECONDS * rate)
    usable = len(wave) // step * step
    if usable:
        rms = np.sqrt(np.square(wave[:usable].reshape(-1, step), dtype=np.float64).mean(axis=1))
        quiet, loud = np.percentile(rms, [10, 95])
        if loud > MIN_CONTRAST * quiet:
            wave = wave * float(np.clip(VAD_LEVEL / loud, 1 / MAX_VAD_GAIN, MAX_VAD_GAIN))
    pcm = np.clip(wave * 32767, -32768, 32767).astype("<i2")
    vad = webrtcvad.Vad(AGGRESSIVENESS)
    frames = range(0, len(pcm) - step + 1, step)
    return np.array([vad.is_speech(pcm[s : s + step].tobytes(), rate) for s in frames], bool)


def has_speech(wave: np.ndarray, sample_rate: int) -> bool:
    """Whether `wave` holds at least `MIN_SPEECH` seconds of speech frames."""
    return speech_frames(wave, sample_rate).sum() * FRAME_SECONDS >= MIN_SPEECH


def speech_segments(wave: np.ndarray, sample_rate: int) -> list[tuple[int, int]]:
    """`(start, end)` sample ranges of speech, gaps under `MIN_GAP` bridged, bursts under
    `MIN_SPEECH` dropped."""
    flags = np.concatenate([[False], speech_frames(wave, sample_rate), [False]])
    edges = np.flatnonzero(np.diff(flags.astype(np.int8)))
    runs = edges.reshape(-1, 2) * FRAME_SECONDS  # [start, end) in seconds
    merged: list[list[float]] = []
    for start, end in runs.tolist():
        if merged and start - merged[-1][1] < MIN_GAP:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return [
        (round(start * sample_rate), min(round(end * sample_rate), len(wave)))
        for start, end in merged
        if end - start >= MIN_SPEECH
    ]


def split(start: int, end: int, size: int) -> list[tuple[int, int]]:
    """`[start, end)` cut into the fewest equal pieces of at most `size` samples."""
    count = math.ceil((end - start) / size)
    bounds = np.linspace(start, end, count + 1).round().astype(int).tolist()
    return list(itertools.pairwise(bounds))


def timeline(
    predictor: Predictor, wave: np.ndarray, path: str, embeddings: bool = False
) -> dict[str, Any]:
    """`{path, duration, segments: [{start, end, label, probabilities[, embedding]}], summary}`.

    Times are in seconds; `summary` maps every label to its share of the speech time (all 0
    when the recording holds no speech).
    """
    rate = predictor.sample_rate
    pieces = [
        piece
        for start, end in speech_segments(wave, rate)
        for piece in split(start, end, predictor.num_samples)
    ]
    probabilities, vectors = predictor.clip_outputs([wave[s:e] for s, e in pieces], embeddings)
    segments, time = [], dict.fromkeys(predictor.labels, 0.0)
    for k, (start, end) in enumerate(pieces):
        scores = dict(zip(predictor.labels, probabilities[k].tolist(), strict=True))
        label = top_label(scores)
        time[label] += (end - start) / rate
        segment = {"start": start / rate, "end": end / rate, "label": label}
        segment["probabilities"] = scores
        if embeddings:
            segment["embedding"] = vectors[k].tolist()
        segments.append(segment)
    speech = sum(time.values())
    summary = {label: seconds / speech if speech else 0.0 for label, seconds in time.items()}
    return {"path": path, "duration": len(wave) / rate, "segments": segments, "summary": summary}


def timeline_files(
    predictor: Predictor, files: Sequence[Path], embeddings: bool = False
) -> Iterator[dict[str, Any]]:
    """One `timeline` record (or `{"path", "error"}`) per file, in order."""
    for record, wave in read_files(predictor, files):
        yield record if wave is None else timeline(predictor, wave, record["path"], embeddings)
