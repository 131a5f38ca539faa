"""Recording conditions a model meets outside RAVDESS, as seeded transforms of one waveform.

Each function takes a mono float waveform at `rate` Hz and returns the same clip as it would
have been recorded louder or softer, in noise, in a room, over a telephone line or another
microphone, with more
silence around it or cut short. They are plain numpy so that `knd robustness` measures with them
and training can reuse them as augmentation; every random draw comes from the `numpy.random.
Generator` passed in, so the same generator state gives the same output.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyroomacoustics as pra
from scipy.signal import butter, fftconvolve, sosfilt

from knd.audio import resample

TELEPHONE_RATE = 8_000
TELEPHONE_BAND = (300.0, 3_400.0)
MU = 255  # G.711 μ-law: 8-bit codes
TILT_FLOOR_HZ = 125.0


def _rms(wave: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))


def change_level(wave: np.ndarray, gain_db: float) -> np.ndarray:
    """Louder or softer by `gain_db`, clipped at ±1.0 as a converter or a 16-bit file would.

    RAVDESS is quiet (median peak about -23 dBFS), so +20 dB clips the loudest third of its
    clips: a recording made 20 dB louder with the same headroom would too.
    """
    return np.clip(wave * 10 ** (gain_db / 20), -1.0, 1.0).astype(np.float32)


def babble(talkers: Sequence[np.ndarray], length: int, rng: np.random.Generator) -> np.ndarray:
    """Several talkers at once: each at the same RMS, circularly shifted at random, summed."""
    mix = np.zeros(length)
    for talker in talkers:
        looped = np.resize(np.roll(talker, rng.integers(len(talker))), length)
        mix += looped / max(_rms(looped), 1e-12)
    return mix.astype(np.float32)


def add_noise(
    wave: np.ndarray, snr_db: float, rng: np.random.Generator, noise: np.ndarray | None = None
) -> np.ndarray:
    """Mix in `noise` (white Gaussian if None) scaled to `snr_db` below the clip's own power.

    The signal power is the whole clip's, silences included, as a meter on the file would see it.
    A noise shorter or longer than the clip is looped or cut from a random offset.
    """
    if noise is None:
        noise = rng.standard_normal(len(wave))
    else:
        noise = np.resize(np.roll(noise, rng.integers(len(noise))), len(wave))
    scale = _rms(wave) / max(_rms(noise), 1e-12) / 10 ** (snr_db / 20)
    return (wave + scale * noise).astype(np.float32)


def room_impulse_response(rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A shoebox room's impulse response with reverberation time `rt60` (pyroomacoustics).

    The room (5-8 m by 4-6 m, 2.7-3.3 m high) and the talker and microphone positions (at least
    0.5 m from the walls) are drawn from `rng`; `pra.inverse_sabine` gives the wall absorption
    and the image-source order for `rt60`. A 0.8 s room takes about a second to compute, so
    callers draw a few rooms and reuse them.
    """
    dims = rng.uniform([5.0, 4.0, 2.7], [8.0, 6.0, 3.3])
    absorption, max_order = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(dims, fs=rate, materials=pra.Material(absorption), max_order=max_order)
    room.add_source(rng.uniform(0.5, dims - 0.5))
    room.add_microphone(rng.uniform(0.5, dims - 0.5))
    room.compute_rir()
    return np.asarray(room.rir[0][0], dtype=np.float32)


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """The clip played in the room of `rir`, same length and same RMS as the dry clip.

    Keeping the level apart means this condition measures the room, not a level change.
    """
    wet = fftconvolve(wave, rir)[: len(wave)]
    return (wet * _rms(wave) / max(_rms(wet), 1e-12)).astype(np.float32)


def telephone(wave: np.ndarray, rate: int, mu_law: bool = False) -> np.ndarray:
    """A telephone line: 8 kHz, 300-3400 Hz band-pass, optionally 8-bit μ-law; back at `rate`.

    The band-pass is causal (a 4th-order Butterworth per edge), as a real channel is.
    """
    narrow = resample(np.asarray(wave, dtype=np.float32), rate, TELEPHONE_RATE)
    sos = butter(4, TELEPHONE_BAND, btype="bandpass", fs=TELEPHONE_RATE, output="sos")
    narrow = sosfilt(sos, narrow)
    if mu_law:
        narrow = _mu_law(np.clip(narrow, -1.0, 1.0))
    back = resample(narrow.astype(np.float32), TELEPHONE_RATE, rate)
    return np.pad(back, (0, max(0, len(wave) - len(back))))[: len(wave)]


def tilt(wave: np.ndarray, rate: int, db_per_octave: float) -> np.ndarray:
    """Another microphone: the spectrum tilted by `db_per_octave` around 1 kHz (brighter above it
    for a positive slope, darker for a negative one), held flat below 125 Hz. Zero-phase, with the
    clip padded so nothing wraps around."""
    size = 2 * len(wave)
    freqs = np.fft.rfftfreq(size, 1 / rate)
    gain = 10 ** (db_per_octave * np.log2(np.maximum(freqs, TILT_FLOOR_HZ) / 1_000) / 20)
    return np.fft.irfft(np.fft.rfft(wave, size) * gain, size)[: len(wave)].astype(np.float32)


def _mu_law(wave: np.ndarray) -> np.ndarray:
    """Encode to 8-bit μ-law codes and decode again: the codec's quantisation noise."""
    compressed = np.sign(wave) * np.log1p(MU * np.abs(wave)) / np.log1p(MU)
    codes = np.round((compressed + 1) / 2 * MU)
    decoded = codes / MU * 2 - 1
    return np.sign(decoded) * np.expm1(np.abs(decoded) * np.log1p(MU)) / MU


def pad_silence(
    wave: np.ndarray, rate: int, max_seconds: float, rng: np.random.Generator
) -> np.ndarray:
    """Digital silence before and after, each 0 to `max_seconds` long (drawn independently)."""
    lead, trail = rng.integers(0, round(max_seconds * rate) + 1, size=2)
    return np.pad(wave, (lead, trail)).astype(np.float32)


def crop(wave: np.ndarray, rate: int, seconds: float) -> np.ndarray:
    """The middle `seconds` of the clip (RAVDESS speech sits mid-clip, between silences)."""
    size = round(seconds * rate)
    start = max(0, (len(wave) - size) // 2)
    return wave[start : start + size]
