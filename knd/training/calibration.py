"""Calibration: a temperature that makes the probabilities mean what they say, and its check.

Label smoothing and mixup train a model to be less sure than it is right, so its raw softmax
undersells (or, on new voices, oversells) its confidence. One scalar temperature, fitted on
held-out clips by minimising the negative log-likelihood, fixes the scale without changing a
single prediction (argmax is unchanged). The expected calibration error (ECE) measures the
result: the mean gap between confidence and accuracy over confidence bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchmetrics.functional.classification import multiclass_calibration_error

ECE_BINS = 15


def fit_temperature(
    log_probabilities: torch.Tensor, target: torch.Tensor, clip: torch.Tensor | None = None
) -> float:
    """The temperature T minimising the NLL of the clips' probabilities at T.

    `log_probabilities` are `(windows, classes)` at T = 1 (logits work too: softmax ignores a
    per-window shift). A clip's probabilities are the mean of its windows' softmax(x / T), as
    `knd predict` averages them; `clip[w]` is window w's clip (default: one window per clip).
    """
    x = log_probabilities.detach().double()
    clip = torch.arange(len(x)) if clip is None else clip
    counts = torch.bincount(clip, minlength=len(target)).double().unsqueeze(1)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # T = exp(log_t) > 0
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        windows = torch.softmax(x / log_t.exp(), dim=1)
        clips = torch.zeros(len(target), x.shape[1], dtype=x.dtype).index_add(0, clip, windows)
        loss = torch.nn.functional.nll_loss((clips / counts).clamp_min(1e-12).log(), target)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


@dataclass
class WindowPredictions:
    """Clips as a model scored them: each window's probabilities at temperature 1, and its clip."""

    windows: torch.Tensor  # (windows, classes)
    clip: torch.Tensor  # (windows,): the clip each window belongs to
    target: torch.Tensor  # (clips,)

    def probabilities(self, temperature: float = 1.0) -> torch.Tensor:
        """Clip probabilities at `temperature`: the mean of the windows', as `predict` gives."""
        windows = torch.softmax(self.windows.clamp_min(1e-12).log() / temperature, dim=1)
        sums = torch.zeros(len(self.target), windows.shape[1], dtype=windows.dtype)
        counts = torch.bincount(self.clip, minlength=len(self.target)).unsqueeze(1)
        return sums.index_add(0, self.clip, windows) / counts

    def subset(self, clips: torch.Tensor) -> WindowPredictions:
        """The clips where the boolean mask `clips` is true, and their windows."""
        keep = clips[self.clip]
        renumber = torch.cumsum(clips.long(), 0) - 1
        return WindowPredictions(self.windows[keep], renumber[self.clip[keep]], self.target[clips])


def fit_pooled(parts: list[WindowPredictions]) -> float:
    """`fit_temperature` on every part's clips at once."""
    offsets = torch.tensor([0] + [len(p.target) for p in parts]).cumsum(0)
    return fit_temperature(
        torch.cat([p.windows for p in parts]).clamp_min(1e-12).log(),
        torch.cat([p.target for p in parts]),
        torch.cat([p.clip + offsets[k] for k, p in enumerate(parts)]),
    )


def cross_fitted(
    parts: list[WindowPredictions], scored: list[WindowPredictions] | None = None
) -> torch.Tensor:
    """Each part's clip probabilities at the temperature fitted on the other parts, concatenated;
    with `scored`, its matching part's instead (another model of the same voices).

    Parts are groups of voices (actors, folds): the ECE of the result measures what a fitted
    temperature does for voices it was not fitted on.
    """
    scored = parts if scored is None else scored
    return torch.cat(
        [s.probabilities(fit_pooled(parts[:k] + parts[k + 1 :])) for k, s in enumerate(scored)]
    )


def expected_calibration_error(probabilities: torch.Tensor, target: torch.Tensor) -> float:
    """ECE (L1, `ECE_BINS` equal-width confidence bins) of predicted probabilities."""
    n_classes = probabilities.shape[1]
    return float(
        multiclass_calibration_error(
            probabilities.float(), target, num_classes=n_classes, n_bins=ECE_BINS, norm="l1"
        )
    )


def ece_floor(probabilities: torch.Tensor, draws: int = 200) -> float:
    """The ECE a perfectly calibrated model would show on these clips: below it, ECE is noise.

    With a few hundred clips the bins hold a dozen clips each, and their accuracy alone wanders
    by several points; so each draw makes every prediction right with probability equal to its
    confidence, and the floor is the mean ECE over the draws (seeded: the same clips, the same
    floor).
    """
    confidence, predicted = probabilities.float().max(dim=1)
    gen = torch.Generator().manual_seed(0)
    wrong = (predicted + 1) % probabilities.shape[1]
    eces = [
        expected_calibration_error(
            probabilities,
            torch.where(torch.rand(len(confidence), generator=gen) < confidence, predicted, wrong),
        )
        for _ in range(draws)
    ]
    return sum(eces) / draws


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
