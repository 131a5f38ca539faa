"""`knd robustness` and its condition transforms: each does what it says, measured, and repeats."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyroomacoustics as pra
import pytest
from helpers.audio import RATE, voice
from helpers.models import make_checkpoint
from helpers.project import run_cli

from knd.data.conditions import (
    add_noise,
    babble,
    change_level,
    crop,
    pad_silence,
    reverberate,
    room_impulse_response,
    telephone,
    tilt,
)
from knd.training.robustness import CONDITIONS, apply


def db(ratio: float) -> float:
    return 10 * np.log10(ratio)


def power(wave: np.ndarray) -> float:
    return float(np.mean(np.square(wave, dtype=np.float64)))


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


CLIP = voice(3.0)


# --- level ---------------------------------------------------------------------------------


@pytest.mark.parametrize("gain", [-20, -10, 10])
def test_level_changes_the_power_by_the_gain(gain):
    quiet = 0.1 * CLIP  # peak about -25 dBFS, like RAVDESS: +10 dB does not clip it
    assert db(power(change_level(quiet, gain)) / power(quiet)) == pytest.approx(gain, abs=0.01)


def test_level_clips_at_full_scale_like_a_recording():
    loud = change_level(CLIP, 20)
    assert np.abs(loud).max() == 1.0
    assert np.mean(np.abs(loud) == 1.0) > 0.01
    assert db(power(loud) / power(CLIP)) < 20  # clipping loses power


# --- noise ---------------------------------------------------------------------------------


@pytest.mark.parametrize("snr", [20, 10, 5])
def test_white_noise_is_added_at_the_asked_snr(snr):
    noisy = add_noise(CLIP, snr, rng())
    assert db(power(CLIP) / power(noisy - CLIP)) == pytest.approx(snr, abs=0.05)
    spectrum = np.abs(np.fft.rfft(noisy - CLIP)) ** 2
    low, high = np.array_split(spectrum, 2)
    assert db(low.mean() / high.mean()) == pytest.approx(0, abs=0.5)  # white: flat


@pytest.mark.parametrize("snr", [20, 5])
def test_babble_is_added_at_the_asked_snr(snr):
    talkers = [voice(2.0, f0=f0, seed=k) for k, f0 in enumerate((110, 180, 220, 95))]
    noise = babble(talkers, len(CLIP), rng())
    assert len(noise) == len(CLIP)
    noisy = add_noise(CLIP, snr, rng(), noise)
    assert db(power(CLIP) / power(noisy - CLIP)) == pytest.approx(snr, abs=0.05)


def test_babble_sums_every_talker_at_the_same_level():
    quiet, loud = voice(2.0, f0=120, seed=1) * 0.01, voice(2.0, f0=200, seed=2)
    mix = babble([quiet, loud], 32_000, rng())
    alone = babble([loud], 32_000, rng(5))
    assert db(power(mix) / power(alone)) == pytest.approx(3, abs=1.5)  # two uncorrelated talkers


# --- reverberation -------------------------------------------------------------------------


@pytest.mark.parametrize("rt60", [0.3, pytest.param(0.8, marks=pytest.mark.slow)])
def test_room_impulse_response_decays_in_about_rt60(rt60):
    rir = room_impulse_response(RATE, rt60, rng())
    measured = pra.experimental.measure_rt60(rir, RATE, decay_db=30)
    assert 0.75 * rt60 < measured < 1.4 * rt60


def test_reverb_keeps_length_and_level_and_smears_in_time():
    burst = np.zeros(RATE, np.float32)
    burst[1000:1400] = voice(0.025)
    wet = reverberate(burst, room_impulse_response(RATE, 0.3, rng()))
    assert len(wet) == len(burst)
    assert power(wet) == pytest.approx(power(burst), rel=1e-3)
    tail = slice(1400 + RATE // 20, None)  # 50 ms after the burst ended
    assert db(power(wet[tail]) / power(wet)) > -30 and not burst[tail].any()


# --- telephone -----------------------------------------------------------------------------


def band_power(wave: np.ndarray, low: float, high: float) -> float:
    """Mean power per frequency bin between `low` and `high` Hz."""
    spectrum = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].mean())


@pytest.mark.parametrize("slope", [-3.0, 3.0])
def test_a_microphone_tilt_changes_each_octave_by_its_slope(slope):
    noise = 0.1 * rng().standard_normal(2 * RATE).astype(np.float32)
    coloured = tilt(noise, RATE, slope)
    assert coloured.shape == noise.shape and coloured.dtype == np.float32
    for low, high in ((250, 500), (500, 1000), (2000, 4000), (4000, 8000)):
        change = db(band_power(coloured, low, high) / band_power(noise, low, high))
        octaves = np.log2(np.sqrt(low * high) / 1000)  # the band's centre, from 1 kHz
        assert change == pytest.approx(slope * octaves, abs=0.5)


@pytest.mark.parametrize("mu_law", [False, True])
def test_telephone_keeps_300_to_3400_hz_at_the_input_rate(mu_law):
    noise = 0.1 * rng().standard_normal(2 * RATE).astype(np.float32)
    line = telephone(noise, RATE, mu_law=mu_law)
    assert line.shape == noise.shape
    passband = band_power(line, 500, 3000)
    assert db(passband / band_power(noise, 500, 3000)) == pytest.approx(0, abs=1)
    assert db(band_power(line, 0, 150) / passband) < -30
    assert db(band_power(line, 4200, 8000) / passband) < -30


def test_mu_law_adds_8_bit_quantisation_noise():
    wave = voice(1.0)
    error = telephone(wave, RATE, mu_law=True) - telephone(wave, RATE)
    assert 25 < db(power(telephone(wave, RATE)) / power(error)) < 45


# --- silence and crop ----------------------------------------------------------------------


def test_silence_is_added_around_the_clip_untouched():
    lengths = set()
    for seed in range(5):
        padded = pad_silence(CLIP, RATE, 2.0, rng(seed))
        assert len(CLIP) <= len(padded) <= len(CLIP) + 4 * RATE
        lead = np.flatnonzero(padded)[0] - np.flatnonzero(CLIP)[0]
        np.testing.assert_array_equal(padded[lead : lead + len(CLIP)], CLIP)
        assert not padded[:lead].any() and not padded[lead + len(CLIP) :].any()
        lengths.add(len(padded))
    assert len(lengths) == 5  # drawn, not fixed


def test_crop_keeps_the_middle():
    cropped = crop(CLIP, RATE, 1.5)
    assert len(cropped) == 1.5 * RATE
    start = (len(CLIP) - len(cropped)) // 2
    np.testing.assert_array_equal(cropped, CLIP[start : start + len(cropped)])
    assert len(crop(CLIP[:RATE], RATE, 1.5)) == RATE  # a shorter clip is left whole


# --- the condition table -------------------------------------------------------------------


@pytest.fixture(scope="module")
def rooms():
    return [room_impulse_response(RATE, 0.3, rng(k)) for k in range(2)]


@pytest.mark.parametrize("condition", CONDITIONS, ids=lambda c: c.name)
def test_every_condition_repeats_with_its_seed(condition, rooms):
    talkers = [voice(2.0, f0=f0, seed=k) for k, f0 in enumerate((110, 180, 220))]
    first = apply(condition, CLIP, RATE, rng(3), talkers, rooms)
    again = apply(condition, CLIP, RATE, rng(3), talkers, rooms)
    assert first.ndim == 1 and np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)
    if condition.family in ("white", "babble", "silence"):  # these draw per clip
        assert not np.array_equal(first, apply(condition, CLIP, RATE, rng(4), talkers, rooms))
    if condition.family != "clean":
        assert not np.array_equal(first, CLIP)


def test_rooms_repeat_with_the_seed():
    np.testing.assert_array_equal(
        room_impulse_response(RATE, 0.3, rng(1)), room_impulse_response(RATE, 0.3, rng(1))
    )


# --- the stage -----------------------------------------------------------------------------


def link_project(tmp_path: Path, processed: Path) -> None:
    """A working directory whose data/ is the fixture's and whose models/ has a tiny model."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data/processed").symlink_to(processed)
    (tmp_path / "data/raw").symlink_to(processed.parent / "raw")
    make_checkpoint(tmp_path / "models/heldout.pt")


@pytest.mark.slow
def test_stage_writes_every_condition_and_the_figure(processed, tmp_path, monkeypatch, capsys):
    link_project(tmp_path, processed)
    monkeypatch.chdir(tmp_path)
    status, _, err = run_cli(monkeypatch, capsys, "robustness")
    assert status == 0, err
    report = json.loads(Path("reports/robustness.json").read_text())
    assert list(report["conditions"]) == [c.name for c in CONDITIONS]
    assert report["clips"] == 30 and len(report["actors"]) == 2
    for name, row in report["conditions"].items():
        assert 0 <= row["uar"] <= 1 and 0 <= row["wa"] <= 1 and 0 <= row["clipped"] <= 1
        assert row["uar_drop"] == pytest.approx(report["conditions"]["clean"]["uar"] - row["uar"])
        assert name in err  # the table is logged
    assert report["conditions"]["clean"]["uar_drop"] == 0
    assert Path("reports/robustness.png").read_bytes().startswith(b"\x89PNG")
    assert sorted(os.listdir("reports")) == ["robustness.json", "robustness.png"]  # no leftovers


def test_missing_model_or_data_says_what_to_run(processed, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, _, err = run_cli(monkeypatch, capsys, "robustness")
    assert status == 1 and "models/heldout.pt: model not found" in err and "knd train" in err
    make_checkpoint(tmp_path / "models/heldout.pt")
    status, _, err = run_cli(monkeypatch, capsys, "robustness")
    assert status == 1 and "metadata.csv: not found" in err and "knd make-dataset" in err
    (tmp_path / "data").mkdir()
    (tmp_path / "data/processed").symlink_to(processed)
    (tmp_path / "data/raw").mkdir()
    status, _, err = run_cli(monkeypatch, capsys, "robustness")
    assert status == 1 and "(30 of 30 test clips missing)" in err and "knd download" in err
    assert not (tmp_path / "reports").exists()
