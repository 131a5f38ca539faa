"""Waveforms of any length -> class probabilities: the one policy for every clip knd scores.

Long-clip policy: the model was trained on clips of one fixed duration (`features.duration`). A
clip no longer than that is centre-padded with silence, exactly as in training (`fix_length`). A
longer clip is cut into the fewest windows of that duration, evenly spaced from its first to its
last sample, that overlap by at least 50%; the clip's probabilities are the mean of its windows',
and so is its embedding (the pooled vector the model's last layer classifies), when asked for.
Windows from many clips are batched together, so short clips share one forward pass.

`knd predict`, `knd serve` and every number knd reports (validation during training, the
`evaluate` stage, the test folds of `knd cv`) score clips through `Predictor.probabilities`, so a
reported metric is what prediction on the same files gives.

A backend (`knd.serving.torch_backend`, `knd.serving.onnx_backend`) only maps a batch of
fixed-length windows to probabilities (and embeddings); decoding (`knd.audio.read_audio`) and the
windowing above are written once, in numpy. This module knows no backend and imports neither
torch nor onnxruntime.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from knd.audio import read_audio
from knd.errors import KndError


def centre_pad(wave: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad a short clip symmetrically to `size` samples (numpy twin of `fix_length`)."""
    missing = size - len(wave)
    if missing <= 0:
        return wave
    return np.pad(wave, (missing // 2, missing - missing // 2))


def top_label(probabilities: dict[str, float]) -> str:
    """The most probable label of a `{label: probability}` answer."""
    return max(probabilities, key=probabilities.__getitem__)


def window_starts(length: int, size: int) -> list[int]:
    """Start samples of the windows covering a clip of `length` samples (policy: see above)."""
    if length <= size:
        return [0]
    count = math.ceil((length - size) / (size // 2)) + 1
    return np.linspace(0, length - size, count).round().astype(int).tolist()


class Predictor(ABC):
    """Waveforms of any length -> class probabilities; a backend supplies `_forward`."""

    backend: str

    def __init__(self, labels: Sequence[str], sample_rate: int, num_samples: int, batch_size: int):
        if batch_size < 1:
            raise KndError(f"--batch-size: must be >= 1, got {batch_size}")
        self.labels, self.sample_rate = list(labels), sample_rate
        self.num_samples, self.batch_size = num_samples, batch_size
        # One forward pass at a time: it uses every core already, and threads of a server then
        # take turns batch by batch (a live window need not wait for a whole long recording).
        self.lock = threading.Lock()

    def read(
        self,
        source: str | Path | bytes | BinaryIO,
        name: str | None = None,
        max_seconds: float | None = None,
    ) -> np.ndarray:
        """Decode a file or bytes to mono float32 at `sample_rate`; raise `KndError` if unusable."""
        return read_audio(source, self.sample_rate, name, max_seconds)

    @abstractmethod
    def _forward(self, windows: np.ndarray, embeddings: bool) -> tuple[np.ndarray, Any]:
        """`(batch, num_samples)` float32 windows -> `(batch, classes)` probabilities, and their
        `(batch, dim)` pooled embeddings if asked (else None)."""

    def predict(self, waves: Sequence[Any]) -> list[dict[str, float]]:
        """Probabilities per label for each 1-D waveform (numpy or torch) at `sample_rate`."""
        return [dict(zip(self.labels, p.tolist(), strict=True)) for p in self.probabilities(waves)]

    def probabilities(self, waves: Sequence[Any]) -> np.ndarray:
        """`predict` as a `(clips, classes)` array, in the order of `labels`."""
        return self.clip_outputs(waves, embeddings=False)[0]

    def clip_outputs(self, waves: Sequence[Any], embeddings: bool) -> tuple[np.ndarray, Any]:
        """Each clip's probabilities and, if asked, its embedding: the means over its windows."""
        if not waves:
            return np.zeros((0, len(self.labels))), np.zeros((0, 0)) if embeddings else None
        windows, vectors, clip = self.window_outputs(waves, embeddings)
        counts = np.bincount(clip, minlength=len(waves))[:, None]
        probabilities = _sum_by(clip, windows, len(waves)) / counts
        return probabilities, _sum_by(clip, vectors, len(waves)) / counts if embeddings else None

    def window_probabilities(self, waves: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Each window's probabilities, `(windows, classes)`, and the clip each belongs to."""
        windows, _, clip = self.window_outputs(waves, embeddings=False)
        return windows, clip

    def window_outputs(
        self, waves: Sequence[Any], embeddings: bool
    ) -> tuple[np.ndarray, Any, np.ndarray]:
        """Each window's probabilities, its embedding (or None) and the clip it belongs to."""
        clips = [centre_pad(np.asarray(w, dtype=np.float32), self.num_samples) for w in waves]
        spans = [
            (i, s)
            for i, clip in enumerate(clips)
            for s in window_starts(len(clip), self.num_samples)
        ]
        probabilities, vectors = [], []
        for k in range(0, len(spans), self.batch_size):
            chunk = spans[k : k + self.batch_size]
            batch = np.stack([clips[i][s : s + self.num_samples] for i, s in chunk])
            with self.lock:
                p, v = self._forward(batch, embeddings)
            probabilities.append(p)
            vectors.append(v)
        return (
            np.concatenate(probabilities).astype(np.float64),
            np.concatenate(vectors).astype(np.float64) if embeddings else None,
            np.array([i for i, _ in spans], dtype=np.int64),
        )


def _sum_by(group: np.ndarray, rows: np.ndarray, groups: int) -> np.ndarray:
    """Sum of `rows` per `group` index, `(groups, columns)`."""
    sums = np.zeros((groups, rows.shape[1]))
    np.add.at(sums, group, rows)
    return sums
