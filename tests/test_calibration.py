"""Calibration: the temperature fitted on held-out clips, the ECE that checks it, and the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.audio import voice
from helpers.models import make_checkpoint

from knd.models.classifier import Classifier
from knd.models.onnx_export import export_onnx
from knd.serving.predict import load_predictor
from knd.training.calibration import (
    ECE_BINS,
    WindowPredictions,
    cross_fitted,
    ece_floor,
    expected_calibration_error,
    fit_temperature,
    reliability,
)


def calibrated_sample(n: int = 4000, classes: int = 8, seed: int = 0):
    """Logits and labels drawn from those logits' own softmax: calibrated by construction."""
    gen = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n, classes, generator=gen)
    target = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=gen).squeeze(1)
    return logits, target


@pytest.mark.parametrize("scale", [0.4, 1.0, 3.0])
def test_the_fitted_temperature_undoes_a_known_miscalibration(scale):
    logits, target = calibrated_sample()
    assert fit_temperature(scale * logits, target) == pytest.approx(scale, rel=0.1)


def test_ece_is_small_when_calibrated_and_large_when_overconfident():
    logits, target = calibrated_sample()
    calibrated = expected_calibration_error(torch.softmax(logits, 1), target)
    overconfident = expected_calibration_error(torch.softmax(4 * logits, 1), target)
    assert calibrated < 0.03 < 0.1 < overconfident


def test_the_ece_floor_is_what_calibrated_samples_of_that_size_score():
    """240 clips (one test split) leave a calibrated model an ECE of several points; 4000, not."""
    logits, _ = calibrated_sample(n=4000)
    probabilities = torch.softmax(logits, 1)
    small = [calibrated_sample(n=240, seed=seed) for seed in range(1, 41)]
    observed = np.mean([expected_calibration_error(torch.softmax(x, 1), y) for x, y in small])
    floor_small = np.mean([ece_floor(torch.softmax(x, 1), draws=20) for x, _ in small[:5]])
    assert floor_small == pytest.approx(observed, rel=0.2)
    assert ece_floor(probabilities, draws=20) < 0.4 * floor_small


def test_reliability_bins_hold_every_clip_once():
    probabilities = torch.tensor([[0.95, 0.05], [0.55, 0.45], [0.3, 0.7], [0.02, 0.98]])
    target = torch.tensor([0, 1, 1, 1])  # right, wrong, right, right
    bins = {(b["low"], b["high"]): b for b in reliability(probabilities, target) if b["count"]}
    assert len(reliability(probabilities, target)) == ECE_BINS
    assert [(b["count"], b["accuracy"]) for b in bins.values()] == [(1, 0.0), (1, 1.0), (2, 1.0)]
    assert [b["confidence"] for b in bins.values()] == [0.55, 0.7, 0.965]


def test_the_temperature_divides_the_logits_in_pytorch_and_in_the_onnx_export(tmp_path):
    path = make_checkpoint(tmp_path / "model.pt", "model=sernet", "model.channels=[8,16]")
    wave = voice(2.0)
    plain = load_predictor(path).predict([wave])[0]
    model = Classifier.load(path)
    model.temperature.fill_(2.5)
    model.save(path, history=[])
    export_onnx(path, tmp_path / "export.onnx")  # refuses to write an export off by > 1e-4
    for backend in (load_predictor(path), load_predictor(tmp_path / "export.onnx")):
        softer = backend.predict([wave])[0]
        logits = np.log(list(plain.values()))
        want = np.exp(logits / 2.5) / np.exp(logits / 2.5).sum()
        np.testing.assert_allclose(list(softer.values()), want, atol=1e-4)


def test_a_clip_is_calibrated_as_the_mean_of_its_windows():
    """Averaging windows softens a clip's probabilities; the fit must see what predict gives."""
    logits, target = calibrated_sample(n=3000)
    gen = torch.Generator().manual_seed(1)
    noisy = [3 * logits + 4 * torch.randn(logits.shape, generator=gen) for _ in range(2)]
    windows, clip = torch.cat(noisy), torch.cat([torch.arange(3000)] * 2)

    def clip_ece(temperature: float) -> float:
        probabilities = torch.softmax(windows / temperature, dim=1)
        mean = torch.zeros(3000, 8).index_add(0, clip, probabilities) / 2
        return expected_calibration_error(mean, target)

    per_clip = fit_temperature(windows, target, clip)
    per_window = fit_temperature(windows, torch.cat([target, target]))
    assert clip_ece(per_clip) < 0.03 < clip_ece(per_window)
    assert fit_temperature(logits, target, torch.arange(3000)) == fit_temperature(logits, target)


def test_a_clips_probabilities_are_the_mean_of_its_windows_at_any_temperature():
    windows = torch.tensor([[0.7, 0.3], [0.5, 0.5], [0.2, 0.8]], dtype=torch.float64)
    scored = WindowPredictions(windows, torch.tensor([0, 0, 1]), torch.tensor([0, 1]))
    expected = torch.tensor([[0.6, 0.4], [0.2, 0.8]], dtype=torch.float64)
    torch.testing.assert_close(scored.probabilities(), expected)
    sharp = torch.softmax(windows.log() / 0.5, 1)
    torch.testing.assert_close(scored.probabilities(0.5)[0], sharp[:2].mean(0))
    second = scored.subset(torch.tensor([False, True]))
    torch.testing.assert_close(second.probabilities(), expected[1:])
    assert second.target.tolist() == [1] and second.clip.tolist() == [0]


def test_cross_fitting_calibrates_each_group_with_the_others_temperature():
    """Two groups of voices, one 3x overconfident and one calibrated: neither fit is its own."""
    logits, target = calibrated_sample(n=2000)
    one = torch.arange(2000)
    loud = WindowPredictions(torch.softmax(3 * logits[:1000], 1), one[:1000], target[:1000])
    calm = WindowPredictions(torch.softmax(logits[1000:], 1), one[:1000], target[1000:])
    crossed = cross_fitted([loud, calm])
    torch.testing.assert_close(crossed[:1000], loud.probabilities(1.0), atol=0.05, rtol=0)
    torch.testing.assert_close(crossed[1000:], calm.probabilities(3.0), atol=0.05, rtol=0)
    other = cross_fitted([loud, calm], [calm, loud])  # the temperatures of `[loud, calm]`
    torch.testing.assert_close(other[:1000], calm.probabilities(1.0), atol=0.05, rtol=0)
    torch.testing.assert_close(other[1000:], loud.probabilities(3.0), atol=0.05, rtol=0)
