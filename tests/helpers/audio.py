"""Test audio: a speech-like signal made on the spot, and real clips from the RAVDESS archive."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from helpers.project import archive

RATE = 16_000


def voice(seconds: float, rate: int = RATE, f0: float = 150.0, seed: int = 0) -> np.ndarray:
    """A speech stand-in: harmonics of a wandering pitch under a syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.2 * envelope * wave + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def mirror_clips(count: int) -> dict[str, bytes]:
    """`count` real RAVDESS wavs spread over the test archive (name -> bytes), or skip."""
    with zipfile.ZipFile(archive()) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".wav"))
        return {Path(n).name: z.read(n) for n in names[:: len(names) // count][:count]}
