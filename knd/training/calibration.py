"""Calibration: a temperature that makes the probabilities mean what they say, and its check.

Label smoothing and mixup train a model to be less sure than it is right, so its raw softmax
undersells (or, on new voices, oversells) its confidence. One scalar temperature, fitted on
held-out clips by minimising the negative log-likelihood, fixes the scale without changing a
single prediction (argmax is unchanged). The expected calibration error (ECE) measures the
result: the mean gap between confidence and accuracy over confidence bins.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import multiclass_calibration_error

ECE_BINS = 15


def fit_temperature(logits: torch.Tensor, target: torch.Tensor) -> float:
    """The temperature T minimising the NLL of `softmax(logits / T)` on these held-out clips."""
    log_t = torch.zeros(1, requires_grad=True)  # T = exp(log_t) stays positive
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")
    logits, target = logits.detach().double(), target.detach()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.double().exp(), target)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def expected_calibration_error(probabilities: torch.Tensor, target: torch.Tensor) -> float:
    """ECE (L1, `ECE_BINS` equal-width confidence bins) of predicted probabilities."""
    n_classes = probabilities.shape[1]
    return float(
        multiclass_calibration_error(
            probabilities.float(), target, num_classes=n_classes, n_bins=ECE_BINS, norm="l1"
        )
    )


def reliability(probabilities: torch.Tensor, target: torch.Tensor) -> list[dict]:
    """Per confidence bin: its range, clip count, mean confidence and accuracy (for the figure)."""
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == target).float()
    edges = torch.linspace(0, 1, ECE_BINS + 1)
    bins = torch.bucketize(confidence, edges[1:-1], right=True)  # bin k: (edges[k], edges[k+1]]
    rows = []
    for k in range(ECE_BINS):
        inside = bins == k
        count = int(inside.sum())
        rows.append(
            {
                "low": round(float(edges[k]), 4),
                "high": round(float(edges[k + 1]), 4),
                "count": count,
                "confidence": round(float(confidence[inside].mean()), 4) if count else None,
                "accuracy": round(float(correct[inside].mean()), 4) if count else None,
            }
        )
    return rows
