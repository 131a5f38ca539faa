"""Read any audio file, upload or byte string into one mono float32 waveform at a given rate.

Training data and user uploads go through the same function, so a bad file is reported the same
way everywhere: as an `AudioError` whose `.reason` is a short fixed key (for summary counts) and
whose message names the file. torchaudio.load needs FFmpeg, so reading goes through soundfile
(libsndfile), and resampling is a numpy port of torchaudio's: this module imports no torch, so the
ONNX backend serves without it. `load_audio` is the same reader returning a torch tensor.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import soundfile as sf

from knd.errors import KndError

if TYPE_CHECKING:
    import torch

SILENCE_PEAK = 1e-4
AUDIO_EXTENSIONS = (".aif", ".aiff", ".flac", ".ogg", ".wav")

# Sample rates outside this range are no real recording; a rate pair whose reduced ratio has a
# term above MAX_RATE_RATIO (16001 Hz -> 16000 Hz: 16001/16000) needs a sinc kernel of about
# ratio^2 taps (GBs, tens of seconds), so a tiny upload claiming such a rate is refused instead.
# Every common rate from 8 kHz to 192 kHz is at most 441 (44.1 kHz -> 16 kHz: 441/160).
MIN_RATE, MAX_RATE = 1_000, 384_000
MAX_RATE_RATIO = 1_000

# libsndfile quietly shortens a WAV/AIFF whose data chunk claims more bytes than the file holds,
# and only says so in its log ("data : 32000 (should be 15978)"). 0xFFFFFFFF marks a streamed
# file whose size was never known, which is not truncation.
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_UNKNOWN_SIZE = 0xFFFFFFFF
# Resampling: per-phase dot products from this many input steps on, else a gathered block of
# at most this many samples at a time (both measured on 4 s clips, see `resample`).
_LOOP_FRAMES, _GATHER_SIZE = 256, 1 << 20


class AudioError(KndError):
    """An input that cannot be turned into a usable waveform, with a stable `.reason` key."""

    def __init__(self, path: str | Path, reason: str, detail: str = ""):
        self.path, self.reason, self.detail = str(path), reason, detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))

    def __reduce__(self):  # keep it picklable for multiprocessing workers
        return type(self), (self.path, self.reason, self.detail)


def read_audio(
    source: str | Path | bytes | BinaryIO,
    sample_rate: int,
    name: str | None = None,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Decode `source` to a 1-D float32 mono array at `sample_rate`, or raise `AudioError`.

    `max_seconds` refuses long audio before decoding it: a few KB of FLAC can claim hours.
    """
    label, data = _open(source, name)
    try:
        f = sf.SoundFile(data)
    except Exception as e:  # libsndfile refused the header: not a format it knows
        raise AudioError(label, "not audio", _message(e)) from e
    with f:
        _check_rate(label, f.samplerate, sample_rate)  # before decoding anything
        if max_seconds is not None and f.frames > max_seconds * f.samplerate:
            seconds = f"{f.frames / f.samplerate:.0f} s, limit {max_seconds:g} s"
            raise AudioError(label, "too long", seconds)
        try:
            samples = f.read(dtype="float32", always_2d=True)
        except Exception as e:  # the header was fine, so the data behind it is cut off or corrupt
            raise AudioError(label, "truncated", _message(e)) from e
        if shortfall := _shortfall(f, len(samples)):
            raise AudioError(label, "truncated", shortfall)
        rate = f.samplerate
    if len(samples) == 0:
        raise AudioError(label, "no samples")
    mono = samples.mean(axis=1)  # judged after mixing: that is what the model hears
    if not np.isfinite(mono).all():
        raise AudioError(label, "non-finite samples")
    if np.abs(mono).max() < SILENCE_PEAK:
        raise AudioError(label, "silent", f"peak below {SILENCE_PEAK:g}")
    return resample(mono, rate, sample_rate)


def load_audio(
    source: str | Path | bytes | BinaryIO, sample_rate: int, name: str | None = None
) -> torch.Tensor:
    """`read_audio` as a 1-D float32 torch tensor (torch is imported here, not by the module)."""
    import torch

    return torch.from_numpy(read_audio(source, sample_rate, name))


def resample(wave: np.ndarray, orig: int, new: int) -> np.ndarray:
    """Polyphase windowed-sinc resampling, numerically torchaudio's `Resample(orig, new)`.

    torchaudio's defaults (`sinc_interp_hann`, 6 zero crossings, rolloff 0.99) and output length
    `ceil(new * len / orig)`; tests/test_audio.py holds it to torchaudio within 1e-6. Sums use
    einsum, not BLAS: OpenBLAS would spread these small products over threads, which is several
    times slower in make_dataset's worker processes or beside a training job.
    """
    if orig == new:
        return wave
    kernel, starts, width, step = _sinc_kernel(orig, new)
    phases, taps = kernel.shape
    padded = np.pad(wave, (width, width + step))
    frames = (len(wave) + step) // step  # input steps of `step` samples, `phases` outputs each
    windows = np.lib.stride_tricks.sliding_window_view(padded, taps)
    out = np.empty((frames, phases), np.float32)
    if frames >= _LOOP_FRAMES:  # long enough: one strided dot product per phase
        for k, start in enumerate(starts):
            out[:, k] = np.einsum("ij,j->i", windows[start::step][:frames], kernel[k])
    else:  # many phases of few frames each: gather them all, a block of frames at a time
        block = max(1, _GATHER_SIZE // kernel.size)
        for j in range(0, frames, block):
            at = np.arange(j, min(j + block, frames))[:, None] * step + starts
            out[j : j + len(at)] = np.einsum("jkl,kl->jk", windows[at], kernel)
    return out.ravel()[: math.ceil(phases * len(wave) / step)]


@lru_cache(maxsize=16)
def _sinc_kernel(orig: int, new: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """torchaudio's filter bank for a rate pair: `(kernel, starts, width, step)`.

    After dividing out the gcd there are `new` phases, each a row of `2 * width + orig` taps
    applied every `step = orig` input samples; only the taps inside the 6 zero crossings are
    non-zero, so each row keeps just those (`kernel[k]` starts at tap `starts[k]`). Building it
    dominates short clips, so each rate pair builds it once.
    """
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
    full = (sinc * window * cutoff / orig).astype(np.float32)
    nonzero = full != 0
    first, end = nonzero.argmax(axis=1), full.shape[1] - nonzero[:, ::-1].argmax(axis=1)
    taps = int((end - first).max())
    starts = np.minimum(first, full.shape[1] - taps)
    kernel = np.stack([row[s : s + taps] for row, s in zip(full, starts, strict=True)])
    return kernel, starts, width, orig


def _check_rate(label: str, rate: int, target: int) -> None:
    """Refuse a rate no recording has, or one whose resampling kernel would be huge."""
    if rate == target:
        return
    gcd = math.gcd(rate, target)
    if not MIN_RATE <= rate <= MAX_RATE or max(rate, target) // gcd > MAX_RATE_RATIO:
        raise AudioError(label, "unsupported sample rate", f"{rate} Hz")


def _open(source: str | Path | bytes | BinaryIO, name: str | None) -> tuple[str, str | BinaryIO]:
    """Name the source for messages and catch what libsndfile would report vaguely."""
    if isinstance(source, str | Path):
        path = Path(source)
        label = name or str(path)
        if not path.is_file():
            raise AudioError(label, "not found")
        if path.stat().st_size == 0:
            raise AudioError(label, "empty file")
        return label, str(path)
    label = name or getattr(source, "name", None)
    label = label if isinstance(label, str) else "<upload>"
    # Read streams whole: libsndfile needs to seek, and uploads may not allow it.
    content = source if isinstance(source, bytes | bytearray | memoryview) else source.read()
    if len(content) == 0:
        raise AudioError(label, "empty file")
    return label, io.BytesIO(content)


def _shortfall(f: sf.SoundFile, frames_read: int) -> str | None:
    """How the file falls short of what its header promises, if it does."""
    for m in _SHORT_CHUNK.finditer(f.extra_info):
        if int(m[1]) != _UNKNOWN_SIZE:
            return f"header claims {m[1]} data bytes, file holds {m[2]}"
    if frames_read < f.frames:
        return f"header claims {f.frames} frames, file holds {frames_read}"
    return None


def _message(error: Exception) -> str:
    """libsndfile's own words, without soundfile's 'Error opening <object>:' prefix."""
    return getattr(error, "error_string", None) or str(error)


def audio_files(folder: Path) -> list[Path]:
    """Every audio file below `folder` (by extension), in sorted order."""
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
    )


def find_audio(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and folders searched recursively for audio files.

    A folder without any is kept, so it is reported as an error rather than silently skipped.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        found += (audio_files(path) or [path]) if path.is_dir() else [path]
    return found
