"""Classification metrics, one definition for validation (`train`) and test (`evaluate`).

UAR (unweighted average recall, the mean of per-class recalls) is the headline: RAVDESS has half
as many neutral clips as any other emotion, and UAR does not reward favouring big classes.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)


def classification_metrics(
    preds: torch.Tensor, target: torch.Tensor, labels: list[str]
) -> dict[str, float | dict | list]:
    """`preds`: class indices, or `(clips, classes)` scores whose argmax is the class.

    Returns scalars, per-class scores and the confusion matrix.
    """
    n = len(labels)
    kw = dict(num_classes=n)
    per_class = {
        "precision": multiclass_precision(preds, target, average=None, **kw),
        "recall": multiclass_recall(preds, target, average=None, **kw),
        "f1": multiclass_f1_score(preds, target, average=None, **kw),
    }
    return {
        "accuracy": float(multiclass_accuracy(preds, target, average="micro", **kw)),
        "uar": float(multiclass_recall(preds, target, average="macro", **kw)),
        "f1_macro": float(multiclass_f1_score(preds, target, average="macro", **kw)),
        "f1_weighted": float(multiclass_f1_score(preds, target, average="weighted", **kw)),
        "precision_macro": float(multiclass_precision(preds, target, average="macro", **kw)),
        "per_class": {
            label: {name: round(float(v[i]), 4) for name, v in per_class.items()}
            for i, label in enumerate(labels)
        },
        "confusion_matrix": multiclass_confusion_matrix(preds, target, **kw).tolist(),
    }


def scalars(metrics: dict) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, float)}
