"""Classification metrics, one definition for validation, test (`evaluate`) and `knd score`.

UAR (unweighted average recall, the mean of per-class recalls) is the headline: RAVDESS has half
as many neutral clips as any other emotion, and UAR does not reward favouring big classes. WA
(weighted accuracy) is plain accuracy. Averages run over the classes the target holds: a class
with no clips has no recall, and a set scored without it is not penalised for it. Plain numpy,
so `knd score` on an ONNX model needs no torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def classification_metrics(preds: Any, target: Any, labels: list[str]) -> dict[str, Any]:
    """`preds`: class indices, or `(clips, classes)` scores whose argmax is the class.

    Accepts numpy arrays or CPU tensors. Returns scalars, per-class scores (recall None for a
    class without clips) and the confusion matrix (rows: actual, columns: predicted).
    """
    preds, target = np.asarray(preds), np.asarray(target).astype(int)
    if preds.ndim == 2:
        preds = preds.argmax(axis=1)
    n = len(labels)
    cm = np.zeros((n, n), dtype=int)
    np.add.at(cm, (target, preds.astype(int)), 1)
    tp, actual, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    present = actual > 0
    recall = np.divide(tp, actual, out=np.zeros(n), where=present)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    f1 = np.divide(2 * tp, actual + predicted, out=np.zeros(n), where=actual + predicted > 0)
    weights = actual / max(actual.sum(), 1)
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "uar": float(recall[present].mean()) if present.any() else 0.0,
        "f1_macro": float(f1[present].mean()) if present.any() else 0.0,
        "f1_weighted": float((weights * f1).sum()),
        "precision_macro": float(precision[present].mean()) if present.any() else 0.0,
        "per_class": {
            label: {
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4) if present[i] else None,
                "f1": round(float(f1[i]), 4),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": cm.tolist(),
    }


def scalars(metrics: dict) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, float)}
