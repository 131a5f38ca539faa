"""The one feature front end: waveform batch -> log spectrogram image.

`make_dataset`, training-time augmentation, `predict`, `serve` and the ONNX export all call this
module, so a model never sees features computed differently from the ones it was trained on.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from knd.config import FeatureConfig


def fix_length(wave: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Centre-crop or symmetrically zero-pad the last axis to `num_samples`.

    Centring keeps the utterance: RAVDESS clips have silence at both ends, and speech in the
    middle. Training-time time shift (augmentation) moves the window randomly instead.
    """
    length = wave.shape[-1]
    if length >= num_samples:
        start = (length - num_samples) // 2
        return wave[..., start : start + num_samples]
    left = (num_samples - length) // 2
    return nn.functional.pad(wave, (left, num_samples - length - left))


class FrontEnd(nn.Module):
    """Log-mel, MFCC or log power spectrogram of a `(batch, samples)` waveform batch.

    Output is `(batch, bins, frames)`. The STFT window and the mel/DCT matrices are buffers, so
    the front end moves with the model between devices and is exported with it.
    """

    def __init__(self, cfg: FeatureConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)
        if cfg.kind in ("logmel", "mfcc"):
            mel = torchaudio.functional.melscale_fbanks(
                cfg.n_fft // 2 + 1, cfg.f_min, cfg.f_max, cfg.n_mels, cfg.sample_rate
            )
            self.register_buffer("mel", mel, persistent=False)  # (freqs, n_mels)
        if cfg.kind == "mfcc":
            dct = torchaudio.functional.create_dct(cfg.n_mfcc, cfg.n_mels, norm="ortho")
            self.register_buffer("dct", dct, persistent=False)  # (n_mels, n_mfcc)

    def power_spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            wave,
            n_fft=self.cfg.n_fft,
            hop_length=self.cfg.hop_length,
            win_length=self.cfg.win_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        return spec.real.square() + spec.imag.square()  # (batch, freqs, frames)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        power = self.power_spectrogram(wave.float())
        if self.cfg.kind != "spectrogram":
            power = (power.transpose(1, 2) @ self.mel).transpose(1, 2)  # (batch, n_mels, frames)
        if self.cfg.level_norm:
            power = power / speech_level(power)
        if self.cfg.band_norm:
            power = power / band_levels(power)
        spec = torch.log(power.clamp_min(self.cfg.log_floor))
        if self.cfg.kind == "mfcc":
            return (spec.transpose(1, 2) @ self.dct).transpose(1, 2)
        return spec


def speech_level(power: torch.Tensor) -> torch.Tensor:
    """Each clip's loud-frame energy, `(batch, 1, 1)`: the energy-weighted mean frame energy.

    Weighting frames by their own energy makes silence (and silence padding) count for almost
    nothing, so a clip's level is that of its speech; dividing by it makes the features the same
    at any input gain, and the floor of the log a fixed distance below the speech.
    """
    return _weighted_level(power.sum(dim=1, keepdim=True))


def band_levels(power: torch.Tensor) -> torch.Tensor:
    """Each band's speech level, `(batch, bins, 1)`: `speech_level` band by band.

    A microphone or a recording chain colours the spectrum by a gain per band that holds for the
    whole clip. Weighted by its own energy, a band's level scales by exactly that gain, so
    dividing by it leaves the same features whatever the colouring; silence still counts for
    almost nothing. What remains is how each band moves over time around its level.
    """
    return _weighted_level(power)


def _weighted_level(power: torch.Tensor) -> torch.Tensor:
    """The mean over the last axis weighted by the values themselves, keeping that axis."""
    level = power.square().sum(dim=-1, keepdim=True) / power.sum(dim=-1, keepdim=True).clamp_min(
        1e-20
    )
    return level.clamp_min(1e-20)


@torch.no_grad()
def extract(front_end: FrontEnd, waves: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Features of many clips, in batches so memory stays flat."""
    return torch.cat([front_end(chunk) for chunk in waves.split(batch_size)])


def band_stats(
    features: torch.Tensor, index: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over clips and frames (axes 0 and 2) of clips `index` (call on training clips
    only): per bin of `(clips, bins, frames)` features, per layer and dimension of an encoder's
    `(clips, layers, frames, dim)` states. Summed in float64 chunks, so a float16 cache of many
    gigabytes is neither copied nor rounded."""
    index = torch.arange(len(features)) if index is None else index
    total = square = 0
    for chunk in index.split(64):
        x = features[chunk].double()
        total = total + x.sum(dim=(0, 2))
        square = square + x.square().sum(dim=(0, 2))
    n = len(index) * features.shape[2]
    mean = total / n
    var = (square - n * mean.square()) / (n - 1)
    return mean.float(), var.clamp_min(0).sqrt().clamp_min(1e-5).float()
