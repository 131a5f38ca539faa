"""The shared feature front end."""

import dataclasses

import pytest
import torch
import torchaudio
from helpers.project import compose_config

from knd.models.features import FrontEnd, band_stats, extract, fix_length


def test_fix_length_centre_crops_and_pads():
    wave = torch.arange(10.0)
    assert fix_length(wave, 4).tolist() == [3.0, 4.0, 5.0, 6.0]
    padded = fix_length(torch.ones(4), 8)
    assert padded.tolist() == [0, 0, 1, 1, 1, 1, 0, 0]
    assert fix_length(torch.ones(2, 5), 5).shape == (2, 5)


@pytest.mark.parametrize(("kind", "bins"), [("logmel", 40), ("mfcc", 40), ("spectrogram", 321)])
def test_shapes_match_the_config(kind, bins):
    cfg = dataclasses.replace(compose_config().features, kind=kind)
    out = FrontEnd(cfg)(torch.randn(3, cfg.num_samples))
    assert out.shape == (3, bins, cfg.num_frames) and cfg.num_bins == bins
    assert torch.isfinite(out).all()


def test_logmel_equals_torchaudio_melspectrogram():
    cfg = compose_config("features.level_norm=false", "features.log_floor=1e-7").features
    wave = torch.randn(2, cfg.num_samples)
    reference = torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg.sample_rate,
        n_fft=cfg.n_fft,
        win_length=cfg.win_length,
        hop_length=cfg.hop_length,
        f_min=cfg.f_min,
        f_max=cfg.f_max,
        n_mels=cfg.n_mels,
    )(wave)
    ours = FrontEnd(cfg)(wave)
    torch.testing.assert_close(
        ours, torch.log(reference.clamp_min(cfg.log_floor)), rtol=1e-4, atol=1e-4
    )


def test_mfcc_equals_torchaudio_mfcc_of_the_same_log_mel():
    cfg = dataclasses.replace(compose_config().features, kind="mfcc")
    wave = torch.randn(1, cfg.num_samples)
    logmel = FrontEnd(dataclasses.replace(cfg, kind="logmel"))(wave)
    dct = torchaudio.functional.create_dct(cfg.n_mfcc, cfg.n_mels, "ortho")
    expected = (logmel.transpose(1, 2) @ dct).transpose(1, 2)
    torch.testing.assert_close(FrontEnd(cfg)(wave), expected)


def test_extract_batches_equal_one_pass_and_band_stats():
    cfg = compose_config().features
    front = FrontEnd(cfg)
    waves = torch.randn(5, cfg.num_samples)
    torch.testing.assert_close(extract(front, waves, batch_size=2), front(waves))
    mean, std = band_stats(extract(front, waves))
    assert mean.shape == std.shape == (cfg.n_mels,) and (std > 0).all()


def test_level_norm_makes_the_features_the_same_at_any_gain():
    cfg = compose_config("features.level_norm=true", "features.log_floor=1e-8").features
    front_end = FrontEnd(cfg)
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(cfg.num_samples) / cfg.sample_rate
    speech = 0.02 * torch.randn(1, cfg.num_samples, generator=gen) * torch.sin(3 * t) ** 2
    base = front_end(speech)
    for gain_db in (-20.0, 20.0):
        louder = front_end(speech * 10 ** (gain_db / 20))
        torch.testing.assert_close(louder, base, atol=1e-3, rtol=0)
    plain = FrontEnd(dataclasses.replace(cfg, level_norm=False))
    assert (plain(speech * 10) - plain(speech)).mean() > 4  # without it: log(100) = 4.6 higher
    assert torch.isfinite(front_end(torch.zeros(1, cfg.num_samples))).all()  # silence: the floor


def test_band_norm_makes_the_features_the_same_under_any_microphone_colouring():
    cfg = compose_config("features.band_norm=true").features
    front_end = FrontEnd(cfg)
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(cfg.num_samples) / cfg.sample_rate
    # no near-silence: the circular filter below smears a little of every frame into the others
    speech = 0.02 * torch.randn(1, cfg.num_samples, generator=gen) * (0.3 + torch.sin(3 * t) ** 2)
    freqs = torch.fft.rfftfreq(cfg.num_samples, 1 / cfg.sample_rate).clamp(125, 8000)

    def coloured(slope_db_per_octave: float) -> torch.Tensor:
        gain = 10 ** (slope_db_per_octave * torch.log2(freqs / 1000) / 20)
        return torch.fft.irfft(torch.fft.rfft(speech) * gain, cfg.num_samples)

    plain = FrontEnd(dataclasses.replace(cfg, band_norm=False))
    for slope in (-6.0, 6.0):
        # 6 dB per octave: the top band 3 octaves above 1 kHz is 18 dB brighter (ln: 4.1). Only a
        # gain constant within each band cancels exactly; the tilt varies a little inside the
        # wide low bands, so a little remains there.
        before = (plain(coloured(slope)) - plain(speech)).abs().mean()
        after = (front_end(coloured(slope)) - front_end(speech)).abs().mean()
        assert before > 2 and after < 0.05
    assert torch.isfinite(front_end(torch.zeros(1, cfg.num_samples))).all()
