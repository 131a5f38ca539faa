"""Prediction on audio of any length, shared by `knd predict`, `knd serve` and both backends.

Long-clip policy: the model was trained on clips of one fixed duration (`features.duration`). A
clip no longer than that is centre-padded with silence, exactly as in training (`fix_length`). A
longer clip is cut into the fewest windows of that duration, evenly spaced from its first to its
last sample, that overlap by at least 50%; the clip's probabilities are the mean of its windows'.
Windows from many clips are batched together, so short clips share one forward pass.

A backend (`TorchPredictor` here, `knd.onnx_runtime.OnnxPredictor`) only maps a batch of
fixed-length windows to probabilities; decoding (`knd.audio.read_audio`) and the windowing above
are written once, in numpy. This module imports neither torch nor onnxruntime, so the ONNX path
never loads torch.
"""

from __future__ import annotations

import csv
import io
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from knd.audio import read_audio
from knd.errors import KndError
from knd.ravdess import AUDIO_EXTENSIONS


def centre_pad(wave: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad a short clip symmetrically to `size` samples (numpy twin of `fix_length`)."""
    missing = size - len(wave)
    if missing <= 0:
        return wave
    return np.pad(wave, (missing // 2, missing - missing // 2))


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

    def read(
        self,
        source: str | Path | bytes | BinaryIO,
        name: str | None = None,
        max_seconds: float | None = None,
    ) -> np.ndarray:
        """Decode a file or bytes to mono float32 at `sample_rate`; raise `KndError` if unusable."""
        return read_audio(source, self.sample_rate, name, max_seconds)

    @abstractmethod
    def _forward(self, windows: np.ndarray) -> np.ndarray:
        """`(batch, num_samples)` float32 windows -> `(batch, classes)` probabilities."""

    def predict(self, waves: Sequence[Any]) -> list[dict[str, float]]:
        """Probabilities per label for each 1-D waveform (numpy or torch) at `sample_rate`."""
        if not waves:
            return []
        clips = [centre_pad(np.asarray(w, dtype=np.float32), self.num_samples) for w in waves]
        spans = [
            (i, s)
            for i, clip in enumerate(clips)
            for s in window_starts(len(clip), self.num_samples)
        ]
        sums = np.zeros((len(clips), len(self.labels)))
        for k in range(0, len(spans), self.batch_size):
            chunk = spans[k : k + self.batch_size]
            batch = np.stack([clips[i][s : s + self.num_samples] for i, s in chunk])
            np.add.at(sums, [i for i, _ in chunk], self._forward(batch))
        means = sums / np.bincount([i for i, _ in spans], minlength=len(clips))[:, None]
        return [dict(zip(self.labels, p.tolist(), strict=True)) for p in means]


class TorchPredictor(Predictor):
    """The checkpoint's own `Classifier` (front end, normalisation, network) plus a softmax."""

    backend = "torch"

    def __init__(self, path: str | Path, batch_size: int = 32):
        from knd.classifier import Classifier

        self.model = Classifier.load(path)
        cfg = self.model.feature_cfg
        super().__init__(self.model.labels, cfg.sample_rate, cfg.num_samples, batch_size)

    def _forward(self, windows: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return torch.softmax(self.model(torch.from_numpy(windows)), dim=-1).numpy()


def load_predictor(path: str | Path, batch_size: int = 32) -> Predictor:
    """The backend for a model file: `.pt` -> PyTorch, `.onnx` -> onnxruntime (no torch)."""
    path = Path(path)
    if not path.is_file():
        raise KndError(f"{path}: model not found; train one with `knd train` (or `knd export`)")
    if path.suffix == ".onnx":
        from knd.onnx_runtime import OnnxPredictor

        return OnnxPredictor(path, batch_size)
    if path.suffix == ".pt":
        return TorchPredictor(path, batch_size)
    raise KndError(f"{path}: unknown model type; expected a .pt checkpoint or an .onnx export")


def find_audio(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and folders searched recursively for audio files.

    A folder without any is kept, so it is reported as an error rather than silently skipped.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
            )
            found += files or [path]
        else:
            found.append(path)
    return found


def result(path: str, probabilities: dict[str, float]) -> dict[str, Any]:
    """The JSON object both `knd predict --format json` and `POST /predict` return."""
    label = max(probabilities, key=probabilities.__getitem__)
    return {"path": path, "label": label, "probabilities": probabilities}


def predict_files(predictor: Predictor, files: Sequence[Path]) -> Iterator[dict[str, Any]]:
    """One result (or `{"path", "error"}`) per file, in order; decodes `batch_size` at a time."""
    for k in range(0, len(files), predictor.batch_size):
        waves, records = [], []
        for path in files[k : k + predictor.batch_size]:
            try:
                if path.is_dir():
                    raise KndError(f"{path}: no audio files ({' '.join(AUDIO_EXTENSIONS)})")
                waves.append(predictor.read(path))
                records.append({"path": str(path)})
            except KndError as err:
                records.append({"path": str(path), "error": str(err).removeprefix(f"{path}: ")})
        probabilities = iter(predictor.predict(waves))
        for record in records:
            yield record if "error" in record else result(record["path"], next(probabilities))


def format_results(records: list[dict[str, Any]], fmt: str, labels: list[str], top_k: int) -> str:
    """Render results as an aligned table (top-k probabilities), a JSON array or CSV."""
    if fmt == "json":
        return json.dumps(records, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, ["path", "label", *labels, "error"], lineterminator="\n")
        writer.writeheader()
        for r in records:
            writer.writerow(
                {"path": r["path"], "label": r.get("label", ""), "error": r.get("error", "")}
                | r.get("probabilities", {})
            )
        return out.getvalue().rstrip("\n")
    rows = [("path", "label", f"top-{top_k} probabilities")]
    for r in records:
        if "error" in r:
            rows.append((r["path"], "-", f"error: {r['error']}"))
        else:
            top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:top_k]
            rows.append((r["path"], r["label"], "  ".join(f"{k} {p:.3f}" for k, p in top)))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}".rstrip() for a, b, c in rows)
