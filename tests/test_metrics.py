"""Metric definitions against hand-computed values."""

import pytest
import torch

from knd.metrics import classification_metrics


def test_uar_is_the_mean_of_per_class_recall():
    # class 0: 4 clips, all right; class 1: 2 clips, 1 right; class 2: 2 clips, none right
    target = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 0, 0, 0, 1, 0, 0, 1])
    m = classification_metrics(preds, target, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["uar"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["per_class"]["b"]["recall"] == 0.5
    assert m["confusion_matrix"] == [[4, 0, 0], [1, 1, 0], [1, 1, 0]]
    f1 = [2 * 4 / (2 * 4 + 2), 2 * 1 / (2 * 1 + 1 + 1), 0.0]
    assert m["f1_macro"] == pytest.approx(sum(f1) / 3, abs=1e-6)
    assert m["f1_weighted"] == pytest.approx((4 * f1[0] + 2 * f1[1] + 2 * f1[2]) / 8, abs=1e-6)
