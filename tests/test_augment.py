"""Each augmentation does what it says, only when switched on, reproducibly."""

import dataclasses
import math

import pytest
import torch
from helpers.project import compose_config

from knd.training.augment import Augmenter

OFF = compose_config("augment=none").augment


def _wave(n=4, length=16000):
    t = torch.arange(length) / 16000
    return torch.stack([torch.sin(2 * torch.pi * (200 + 50 * i) * t) * 0.5 for i in range(n)])


def _only(**changes) -> Augmenter:
    return Augmenter(dataclasses.replace(OFF, **changes), 16000)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_all_off_is_the_identity():
    aug, wave = Augmenter(OFF, 16000), _wave()
    assert torch.equal(aug.waveform(wave, _gen()), wave)
    x = torch.randn(4, 1, 64, 100)
    assert torch.equal(aug.spectrogram(x, _gen()), x)
    y = torch.arange(4)
    assert aug.mixup(x, y, _gen())[3] == 1.0
    assert not OFF.waveform_enabled


def test_gain_scales_within_range():
    wave = _wave()
    out = _only(gain_db=6.0).waveform(wave, _gen())
    ratio = out.abs().amax(1) / wave.abs().amax(1)
    assert ((ratio >= 10 ** (-6 / 20) - 1e-5) & (ratio <= 10 ** (6 / 20) + 1e-5)).all()
    assert not torch.allclose(ratio, torch.ones(4))


def test_noise_hits_the_sampled_snr():
    wave = _wave()
    out = _only(noise_p=1.0, noise_snr_db=[20.0, 20.0]).waveform(wave, _gen())
    snr = 10 * torch.log10(wave.square().mean(1) / (out - wave).square().mean(1))
    assert torch.allclose(snr, torch.full((4,), 20.0), atol=0.5)


def test_time_shift_moves_each_clip_whole_and_zero_fills():
    wave = torch.arange(1.0, 1001.0).repeat(8, 1)  # a ramp: a sample's value is its position
    out = _only(time_shift=0.2).waveform(wave, _gen())
    shifts = []
    for row in out:
        where = row.nonzero().squeeze(1)
        assert torch.equal(where, torch.arange(int(where[0]), int(where[-1]) + 1))  # one piece
        assert torch.equal(row[where].diff(), torch.ones(len(where) - 1))  # unchanged inside
        shifts.append(int(where[0]) - int(row[where[0]]) + 1)
        assert len(where) == 1000 - abs(shifts[-1])  # only what was moved out is gone
    assert all(abs(s) <= 200 for s in shifts) and any(shifts)


def test_polarity_inverts_some_clips():
    wave = _wave(16)
    out = _only(polarity_p=0.5).waveform(wave, _gen())
    flipped = torch.isclose(out, -wave).all(1)
    assert flipped.any() and not flipped.all()
    assert torch.isclose(out[~flipped], wave[~flipped]).all()


def test_speed_changes_the_pitch_and_keeps_the_length():
    wave = _wave(1)
    out = _only(speed=[1.25, 1.25]).waveform(wave, _gen())
    assert out.shape == wave.shape
    peak = lambda w: torch.fft.rfft(w[0]).abs().argmax().item()  # noqa: E731
    assert peak(out) == pytest.approx(peak(wave) * 1.25, rel=0.02)


def _dominant_hz(wave: torch.Tensor, rate: int = 16000) -> float:
    """The strongest frequency, to a tenth of a 1 Hz bin (parabolic peak interpolation)."""
    spectrum = torch.fft.rfft(wave * torch.hann_window(len(wave))).abs().log()
    k = int(spectrum[1:-1].argmax()) + 1
    a, b, c = spectrum[k - 1 : k + 2].tolist()
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / len(wave)


@pytest.mark.slow  # torchaudio's pitch_shift takes seconds per call on a CPU
def test_pitch_shift_moves_by_whole_semitones_within_range():
    t = torch.arange(16000) / 16000
    tone = sum(torch.sin(2 * torch.pi * 220 * k * t) / k for k in range(1, 6)).unsqueeze(0)
    assert _dominant_hz(tone[0]) == pytest.approx(220, abs=0.1)
    aug = _only(pitch_p=1.0, pitch_semitones=4.0)
    shifts = []
    for seed in (0, 3):  # seeds that draw an upward and a downward shift
        out = aug.waveform(tone, _gen(seed))
        assert out.shape == tone.shape
        shifts.append(12 * math.log2(_dominant_hz(out[0]) / 220))
    steps = [round(s) for s in shifts]
    assert shifts == pytest.approx(steps, abs=0.05), "a frequency ratio of 2^(n/12), n whole"
    assert all(-4 <= n <= 4 for n in steps) and min(steps) < 0 < max(steps), steps


def test_specaugment_masks_bands_and_frames():
    x = torch.ones(4, 1, 64, 200)
    out = _only(freq_masks=1, freq_mask_width=10, time_masks=1, time_mask_width=30).spectrogram(
        x, _gen(1)
    )
    zero_rows = (out == 0).all(dim=3).sum(dim=(1, 2))
    zero_cols = (out == 0).all(dim=2).sum(dim=(1, 2))
    assert (zero_rows <= 10).all() and (zero_cols <= 30).all() and zero_rows.any()


def test_mixup_blends_pairs():
    torch.manual_seed(0)
    x, y = torch.eye(4).reshape(4, 1, 2, 2), torch.arange(4)
    mixed, y_a, y_b, lam = _only(mixup_alpha=0.4).mixup(x, y, _gen())
    assert 0 <= lam <= 1 and torch.equal(y_a, y)
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[y_b])


def test_same_generator_seed_same_augmentation():
    aug = Augmenter(compose_config().augment, 16000)
    wave = _wave()
    assert torch.equal(aug.waveform(wave, _gen(5)), aug.waveform(wave, _gen(5)))


def _speech_like(n=8, length=32000, seed=0):
    """Noise under a syllable-rate envelope: broadband, with louder and softer stretches."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 16000
    envelope = 0.55 + 0.45 * torch.sin(2 * torch.pi * 3 * t + torch.arange(n)[:, None])
    return 0.1 * envelope * torch.randn(n, length, generator=gen)


def _rms(x):
    return x.square().mean(dim=-1).sqrt()


def test_reverb_keeps_the_level_and_smears_the_sound_in_time():
    wave = torch.zeros(4, 32000)
    wave[:, 8000] = 1.0  # a click: its echo is the room's response
    out = _only(reverb_p=1.0, rt60=[0.8, 0.8]).waveform(wave, _gen())
    assert torch.allclose(_rms(out), _rms(wave), rtol=1e-4)
    tail = out[:, 8000 + 1600 : 8000 + 8000].square().sum(dim=1)  # 0.1-0.5 s after the click
    assert (tail > 0.05 * out.square().sum(dim=1)).all()  # a 0.8 s room rings on
    assert out[:, :8000].abs().max() < 1e-3  # and nothing comes before the click
    untouched = _only(reverb_p=1.0, rt60=[0.8, 0.8]).waveform(torch.zeros(2, 100), _gen())
    assert torch.equal(untouched, torch.zeros(2, 100))


@pytest.mark.parametrize("drr_db", [-5.0, 0.0, 10.0])
def test_reverb_has_the_drawn_direct_to_reverberant_ratio(drr_db):
    """Within the noise of the tail's first sample, which the direct path lands on."""
    wave = torch.zeros(4, 40000)
    wave[:, 8000] = 1.0
    out = _only(reverb_p=1.0, rt60=[1.0, 1.0], drr_db=[drr_db, drr_db]).waveform(wave, _gen())
    direct, reverberant = out[:, 8000].square(), out[:, 8001:].square().sum(dim=1)
    measured = 10 * torch.log10(direct / reverberant)
    assert torch.allclose(measured, torch.full_like(measured, drr_db), atol=1.5)


def test_babble_mixes_other_clips_at_the_drawn_snr():
    wave = _speech_like()
    out = _only(babble_p=1.0, babble_snr_db=[10.0, 10.0]).waveform(wave, _gen())
    snr = 20 * torch.log10(_rms(wave) / _rms(out - wave))
    assert torch.allclose(snr, torch.full_like(snr, 10.0), atol=0.01)
    assert torch.equal(_only(babble_p=1.0).waveform(wave[:1], _gen()), wave[:1])  # no one else


def test_band_limit_passes_speech_band_only():
    t = torch.arange(32000) / 16000
    tones = {hz: torch.sin(2 * torch.pi * hz * t) for hz in (60.0, 1000.0, 6000.0)}
    aug = _only(band_p=1.0)
    for hz, tone in tones.items():
        out = aug.waveform(tone.expand(3, -1).clone(), _gen())
        kept = (_rms(out) / _rms(tone)).max()
        assert (kept > 0.99) if hz == 1000.0 else (kept < 0.01), hz


def test_tilt_colours_each_clip_like_a_microphone_within_the_slope_range():
    """Tones an octave apart, at 500, 1000 and 4000 Hz: each clip's tilt is one slope per octave
    on both sides of 1 kHz, within +-tilt_db, and drawn per clip."""
    t = torch.arange(32000) / 16000
    tones = {hz: torch.sin(2 * torch.pi * hz * t).expand(8, -1).clone() for hz in (500, 1000, 4000)}
    aug = _only(tilt_p=1.0, tilt_db=3.0)
    level = {
        hz: 20 * torch.log10(_rms(aug.waveform(x, _gen())) / _rms(x)) for hz, x in tones.items()
    }
    assert level[1000].abs().max() < 0.1  # the pivot
    below, above = -level[500], level[4000] / 2  # dB per octave
    torch.testing.assert_close(below, above, atol=0.1, rtol=0)
    assert above.abs().max() <= 3.0 + 0.1 and above.std() > 0.5


def test_the_costly_transforms_touch_only_the_drawn_share():
    wave = _speech_like(n=64)
    out = _only(reverb_p=0.25).waveform(wave, _gen())
    changed = (out != wave).any(dim=1).float().mean()
    assert 0.1 < changed < 0.45
