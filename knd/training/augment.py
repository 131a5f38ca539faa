"""Training-split augmentation on batches: waveform, spectrogram and mixup.

Besides the usual perturbations it simulates the recording conditions `knd robustness`
measures (rooms, babble, telephone bands, microphones), cheaply and batch-wise in torch: synthetic
exponential-decay room responses rather than the image-source rooms of `knd.data.conditions`,
so the model is not scored on the very generator it trained on.

Every draw comes from an explicit generator that training seeds per epoch, so a run is
repeatable and a resumed run replays exactly the augmentations an uninterrupted one would.
Only `knd.training.train` calls this, and only on training batches.
"""

from __future__ import annotations

import math

import torch
import torchaudio

from knd.config import AugmentConfig
from knd.data.conditions import TILT_FLOOR_HZ
from knd.models.features import fix_length


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def _chance(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) < p


def _rms(wave: torch.Tensor) -> torch.Tensor:
    return wave.square().mean(dim=-1).sqrt().clamp_min(1e-8)


def mixup_loss(criterion, logits: torch.Tensor, a: torch.Tensor, b: torch.Tensor, lam: float):
    """A mixed batch's loss: the loss against each set of targets, blended as the inputs were."""
    return lam * criterion(logits, a) + (1 - lam) * criterion(logits, b)


class Augmenter:
    def __init__(self, cfg: AugmentConfig, sample_rate: int):
        self.cfg, self.sample_rate = cfg, sample_rate

    def waveform(self, wave: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """`(batch, samples)` -> same shape, perturbed clip by clip."""
        cfg, n = self.cfg, wave.shape[0]
        if cfg.speed != [1.0, 1.0]:
            wave = self._speed(wave, float(_uniform(1, *cfg.speed, gen)))
        if cfg.pitch_p and cfg.pitch_semitones and bool(_chance(1, cfg.pitch_p, gen)):
            steps = round(float(_uniform(1, -cfg.pitch_semitones, cfg.pitch_semitones, gen)))
            if steps:
                wave = torchaudio.functional.pitch_shift(wave, self.sample_rate, steps)
        if cfg.time_shift:
            wave = self._time_shift(wave, gen)
        if cfg.reverb_p:
            wave = self._some(wave, cfg.reverb_p, self._reverb, gen)
        if cfg.babble_p:
            wave = self._some(wave, cfg.babble_p, self._babble, gen)
        if cfg.band_p:
            wave = self._some(wave, cfg.band_p, self._band_limit, gen)
        if cfg.tilt_p and cfg.tilt_db:
            wave = self._some(wave, cfg.tilt_p, self._tilt, gen)
        if cfg.gain_db:
            gain_db = _uniform(n, -cfg.gain_db, cfg.gain_db, gen)
            wave = wave * (10 ** (gain_db / 20)).unsqueeze(1)
        if cfg.noise_p:
            wave = self._some(wave, cfg.noise_p, self._noise, gen)
        if cfg.polarity_p:
            wave = torch.where(_chance(n, cfg.polarity_p, gen).unsqueeze(1), -wave, wave)
        return wave

    def _speed(self, wave: torch.Tensor, factor: float) -> torch.Tensor:
        """Play `factor` times faster (pitch and tempo together), keeping the clip length."""
        orig = round(100 * factor)
        if orig == 100:
            return wave
        return fix_length(torchaudio.functional.resample(wave, orig, 100), wave.shape[-1])

    def _time_shift(self, wave: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Move each clip by up to `time_shift` of its length, zero-filling what is uncovered.

        Row by row slice copies: a gather over the whole batch cost 5 times as much."""
        n, length = wave.shape
        limit = int(self.cfg.time_shift * length)
        shifts = torch.randint(-limit, limit + 1, (n,), generator=gen).tolist()
        out = torch.zeros_like(wave)
        for row, shift in enumerate(shifts):
            if shift >= 0:
                out[row, shift:] = wave[row, : length - shift]
            else:
                out[row, :shift] = wave[row, -shift:]
        return out

    def _some(self, wave: torch.Tensor, p: float, fn, gen: torch.Generator) -> torch.Tensor:
        """`fn` applied to a random share `p` of the clips only (the costly transforms)."""
        hit = _chance(wave.shape[0], p, gen).nonzero().squeeze(1)
        if len(hit) == 0:
            return wave
        out = wave.clone()
        out[hit] = fn(wave, hit, gen)
        return out

    def _reverb(self, wave: torch.Tensor, hit: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """A room per clip: a direct path plus noise decaying by 60 dB over a random RT60.

        The direct-to-reverberant ratio is drawn from `drr_db`; the wet clip keeps the dry one's
        level, so this changes the room, not the loudness.
        """
        dry, (n, length) = wave[hit], (len(hit), wave.shape[1])
        rt60 = _uniform(n, *self.cfg.rt60, gen).unsqueeze(1)
        t = torch.arange(round(max(self.cfg.rt60) * self.sample_rate)) / self.sample_rate
        tail = torch.randn(n, len(t), generator=gen) * torch.exp(-6.908 * t / rt60)
        tail = tail / tail.square().sum(dim=1, keepdim=True).sqrt()
        tail[:, 0] += 10 ** (_uniform(n, *self.cfg.drr_db, gen) / 20)
        size = length + len(t)
        wet = torch.fft.irfft(torch.fft.rfft(dry, size) * torch.fft.rfft(tail, size), size)
        wet = wet[:, :length]
        return wet * (_rms(dry) / _rms(wet)).unsqueeze(1)

    def _babble(self, wave: torch.Tensor, hit: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Other talkers behind a clip: 2-4 other clips of the batch summed, at a random SNR."""
        talkers = int(torch.randint(2, 5, (1,), generator=gen))
        shifts = range(1, min(talkers, wave.shape[0] - 1) + 1)
        noise = sum(wave[(hit - k) % wave.shape[0]] for k in shifts)
        if isinstance(noise, int):  # a batch of one clip has no one else to talk
            return wave[hit]
        snr_db = _uniform(len(hit), *self.cfg.babble_snr_db, gen)
        scale = _rms(wave[hit]) / _rms(noise) / 10 ** (snr_db / 20)
        return wave[hit] + scale.unsqueeze(1) * noise

    def _band_limit(self, wave: torch.Tensor, hit: torch.Tensor, gen) -> torch.Tensor:
        """A narrow channel: only a random band from 100-500 Hz up to 3-4 kHz gets through."""
        n, length = len(hit), wave.shape[1]
        freqs = torch.fft.rfftfreq(length, 1 / self.sample_rate).unsqueeze(0)
        low = _uniform(n, 100.0, 500.0, gen).unsqueeze(1)
        high = _uniform(n, 3000.0, 4000.0, gen).unsqueeze(1)
        passed = (freqs >= low) & (freqs <= high)
        return torch.fft.irfft(torch.fft.rfft(wave[hit]) * passed, length)

    def _tilt(self, wave: torch.Tensor, hit: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Another microphone: `knd.data.conditions.tilt` with a slope drawn per clip.

        Padded by half a second, not a whole clip: the smooth filter's response is far shorter,
        so nothing wraps around, for half the FFT work."""
        n, length = len(hit), wave.shape[1]
        size = length + self.sample_rate // 2
        slope = _uniform(n, -self.cfg.tilt_db, self.cfg.tilt_db, gen).unsqueeze(1)
        freqs = torch.fft.rfftfreq(size, 1 / self.sample_rate).clamp_min(TILT_FLOOR_HZ)
        gain = torch.exp(slope * torch.log2(freqs / 1_000) * (math.log(10) / 20))  # 10^(dB/20)
        return torch.fft.irfft(torch.fft.rfft(wave[hit], size) * gain, size)[:, :length]

    def _noise(self, wave: torch.Tensor, hit: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """White noise at a random SNR, drawn for the clips it hits only (drawing is the cost)."""
        clean = wave[hit]
        snr_db = _uniform(len(hit), *self.cfg.noise_snr_db, gen)
        scale = _rms(clean) / 10 ** (snr_db / 20)
        return clean + scale.unsqueeze(1) * torch.randn(clean.shape, generator=gen)

    def spectrogram(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """SpecAugment on the normalised `(batch, 1, bins, frames)` input: masks set to 0 (mean)."""
        cfg = self.cfg
        for axis, count, width in (
            (2, cfg.freq_masks, cfg.freq_mask_width),
            (3, cfg.time_masks, cfg.time_mask_width),
        ):
            for _ in range(count if width else 0):
                x = x * ~self._mask(x.shape[0], x.shape[axis], width, gen).reshape(
                    (-1, 1, x.shape[2], 1) if axis == 2 else (-1, 1, 1, x.shape[3])
                )
        return x

    @staticmethod
    def _mask(n: int, size: int, width: int, gen: torch.Generator) -> torch.Tensor:
        widths = torch.randint(0, min(width, size) + 1, (n, 1), generator=gen)
        starts = (torch.rand(n, 1, generator=gen) * (size - widths + 1)).long()
        pos = torch.arange(size).unsqueeze(0)
        return (pos >= starts) & (pos < starts + widths)

    def mixup(
        self, x: torch.Tensor, target: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """Blend each clip with another; returns inputs, both targets and the blend weight."""
        if not self.cfg.mixup_alpha:
            return x, target, target, 1.0
        alpha = torch.tensor(self.cfg.mixup_alpha)
        lam = float(torch.distributions.Beta(alpha, alpha).sample())  # global RNG, seeded per epoch
        perm = torch.randperm(x.shape[0], generator=gen)
        return lam * x + (1 - lam) * x[perm], target, target[perm], lam
