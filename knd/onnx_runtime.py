"""The ONNX backend: onnxruntime plus a numpy audio reader, so serving an export needs no torch.

`knd.audio.load_audio` imports torch (torchaudio resamples), so this module carries a torch-free
twin of it: the same soundfile decoding and the same checks and messages, and a numpy port of
torchaudio's default resampling kernel (`sinc_interp_hann`, 6 zero crossings, rolloff 0.99), so
both backends see the same samples (tests/test_onnx.py holds the two readers together). Once
`knd.audio` imports torch lazily and resamples with `resample` below, the twin can go.
"""

from __future__ import annotations

import io
import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from knd.config import FeatureConfig, from_dict
from knd.errors import KndError
from knd.predict import Predictor

# Metadata keys written by `knd export` (knd/onnx_export.py); values are JSON.
META_LABELS, META_FEATURES, META_MODEL = "knd.labels", "knd.feature_config", "knd.model_config"
INPUT, OUTPUT = "waveform", "probabilities"

SILENCE_PEAK = 1e-4  # as knd.audio
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_UNKNOWN_SIZE = 0xFFFFFFFF
_BLOCKS = 4096  # resampling works on this many output blocks at a time, so memory stays flat


class OnnxPredictor(Predictor):
    """An `knd export` model: waveform windows in, probabilities out (softmax is in the graph)."""

    backend = "onnx"

    def __init__(self, path: str | Path, batch_size: int = 32):
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            meta = self.session.get_modelmeta().custom_metadata_map
            labels = json.loads(meta[META_LABELS])
            cfg = from_dict(FeatureConfig, json.loads(meta[META_FEATURES]))
        except KeyError as err:
            raise KndError(
                f"{path}: ONNX model without knd metadata {err}; make it with `knd export`"
            ) from None
        except Exception as err:  # onnxruntime raises its own types for a bad file
            raise KndError(f"{path}: not a loadable ONNX model ({err})") from None
        super().__init__(labels, cfg.sample_rate, cfg.num_samples, batch_size)

    def read(self, source: str | Path | bytes | BinaryIO, name: str | None = None) -> np.ndarray:
        return read_audio(source, self.sample_rate, name)

    def _forward(self, windows: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT], {INPUT: windows})[0]


def read_audio(
    source: str | Path | bytes | BinaryIO, sample_rate: int, name: str | None = None
) -> np.ndarray:
    """`knd.audio.load_audio` without torch: mono float32 at `sample_rate`, or `KndError`."""
    label, data = _open(source, name)
    try:
        f = sf.SoundFile(data)
    except Exception as e:
        raise _error(label, "not audio", getattr(e, "error_string", None) or str(e)) from e
    with f:
        try:
            samples = f.read(dtype="float32", always_2d=True)
        except Exception as e:
            raise _error(label, "truncated", getattr(e, "error_string", None) or str(e)) from e
        for m in _SHORT_CHUNK.finditer(f.extra_info):
            if int(m[1]) != _UNKNOWN_SIZE:
                raise _error(
                    label, "truncated", f"header claims {m[1]} data bytes, file holds {m[2]}"
                )
        if len(samples) < f.frames:
            raise _error(
                label, "truncated", f"header claims {f.frames} frames, file holds {len(samples)}"
            )
        rate = f.samplerate
    if len(samples) == 0:
        raise _error(label, "no samples")
    mono = samples.mean(axis=1)
    if not np.isfinite(mono).all():
        raise _error(label, "non-finite samples")
    if np.abs(mono).max() < SILENCE_PEAK:
        raise _error(label, "silent", f"peak below {SILENCE_PEAK:g}")
    return resample(mono, rate, sample_rate)


def _open(source: str | Path | bytes | BinaryIO, name: str | None) -> tuple[str, str | BinaryIO]:
    if isinstance(source, str | Path):
        path = Path(source)
        label = name or str(path)
        if not path.is_file():
            raise _error(label, "not found")
        if path.stat().st_size == 0:
            raise _error(label, "empty file")
        return label, str(path)
    label = name or getattr(source, "name", None)
    label = label if isinstance(label, str) else "<upload>"
    content = source if isinstance(source, bytes | bytearray | memoryview) else source.read()
    if len(content) == 0:
        raise _error(label, "empty file")
    return label, io.BytesIO(content)


def _error(label: str, reason: str, detail: str = "") -> KndError:
    return KndError(f"{label}: {reason}" + (f" ({detail})" if detail else ""))


def resample(wave: np.ndarray, orig: int, new: int) -> np.ndarray:
    """Polyphase windowed-sinc resampling, numerically torchaudio's `Resample(orig, new)`."""
    if orig == new:
        return wave
    kernel, width, step = _sinc_kernel(orig, new)
    padded = np.pad(wave, (width, width + step))
    frames = np.lib.stride_tricks.sliding_window_view(padded, kernel.shape[1])[::step]
    out = np.concatenate(
        [b @ kernel.T for b in np.array_split(frames, max(1, len(frames) // _BLOCKS))]
    )
    return out.ravel()[: math.ceil(len(kernel) * len(wave) / step)]


@lru_cache(maxsize=16)
def _sinc_kernel(orig: int, new: int) -> tuple[np.ndarray, int, int]:
    """`(new', taps)` filter bank, its half width and input step, after dividing out the gcd."""
    gcd = math.gcd(orig, new)
    orig, new = orig // gcd, new // gcd
    cutoff = min(orig, new) * 0.99
    width = math.ceil(6 * orig / cutoff)
    phase = (np.arange(0, -new, -1) / new).astype(np.float32)  # float32 like torchaudio
    t = (phase[:, None] + np.arange(-width, width + orig) / orig) * cutoff
    t = t.clip(-6, 6)
    window = np.cos(t * np.pi / 12) ** 2
    t *= np.pi
    sinc = np.sin(t) / np.where(t == 0, 1.0, t)
    sinc[t == 0] = 1.0
    return (sinc * window * cutoff / orig).astype(np.float32), width, orig
