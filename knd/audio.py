"""Read any audio file, upload or byte string into one mono float32 waveform at a given rate.

Training data and user uploads go through the same function, so a bad file is reported the same
way everywhere: as an `AudioError` whose `.reason` is a short fixed key (for summary counts) and
whose message names the file. torchaudio.load needs FFmpeg, so reading goes through soundfile
(libsndfile) and torchaudio only resamples.
"""

from __future__ import annotations

import io
import re
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch
import torchaudio

from knd.errors import KndError

SILENCE_PEAK = 1e-4

# libsndfile quietly shortens a WAV/AIFF whose data chunk claims more bytes than the file holds,
# and only says so in its log ("data : 32000 (should be 15978)"). 0xFFFFFFFF marks a streamed
# file whose size was never known, which is not truncation.
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_UNKNOWN_SIZE = 0xFFFFFFFF


class AudioError(KndError):
    """An input that cannot be turned into a usable waveform, with a stable `.reason` key."""

    def __init__(self, path: str | Path, reason: str, detail: str = ""):
        self.path, self.reason, self.detail = str(path), reason, detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))

    def __reduce__(self):  # keep it picklable for multiprocessing workers
        return type(self), (self.path, self.reason, self.detail)


def load_audio(
    source: str | Path | bytes | BinaryIO, sample_rate: int, name: str | None = None
) -> torch.Tensor:
    """Decode `source` to a 1-D float32 mono tensor at `sample_rate`, or raise `AudioError`."""
    label, data = _open(source, name)
    try:
        f = sf.SoundFile(data)
    except Exception as e:  # libsndfile refused the header: not a format it knows
        raise AudioError(label, "not audio", _message(e)) from e
    with f:
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

    wave = torch.from_numpy(mono)
    if rate != sample_rate:
        wave = _resampler(rate, sample_rate)(wave)
    return wave.contiguous()


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


@lru_cache(maxsize=16)
def _resampler(orig: int, target: int) -> torchaudio.transforms.Resample:
    """Building the sinc kernel dominates short clips, so each rate pair builds it once."""
    return torchaudio.transforms.Resample(orig, target)
