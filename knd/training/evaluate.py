"""Stage `evaluate`: test-split metrics of the trained model, as DVC metrics and plots.

It scores the held-out model (`models/heldout.pt`) and measures its calibration: the expected
calibration error (ECE), beside the ECE a perfectly calibrated model would show on as few clips
(`ece_floor`); the temperature fitted on the test clips (which the release may take, see
`train.calibrate`); and what such a temperature does for voices it was not fitted on
(`ece_calibrated`: each test actor at the temperature fitted on the other test actors).
Test clips come from actors the model never heard (unless the split is the leaky `random` one,
which the metrics then say in so many words). Every clip is scored whole, by `knd predict`'s own
code (`knd.serving.predictor`: windows of the training duration, probabilities averaged), so
`reports/predictions.csv` is what `knd predict` says about the same files. Validation in
`train` and the test folds of `knd cv` score clips the same way, through `score_windows`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from knd.config import Config
from knd.data.processed import Processed, load_processed
from knd.metrics import classification_metrics, scalars
from knd.models.classifier import Classifier
from knd.paths import HELD_OUT_MODEL
from knd.serving.torch_backend import TorchPredictor
from knd.training.calibration import (
    WindowPredictions,
    cross_fitted,
    ece_floor,
    expected_calibration_error,
    fit_pooled,
    reliability,
)

log = logging.getLogger(__name__)

LEAKY_NOTE = (
    "LEAKY: random clip-level split, the test actors are also in training; "
    "not comparable with speaker-independent results"
)


def predictions_table(
    paths: Sequence[str], target: torch.Tensor, probabilities: np.ndarray, labels: list[str]
) -> pd.DataFrame:
    """`predictions.csv`'s rows: each clip's path, actual and predicted label, probabilities."""
    return pd.DataFrame(
        {
            "path": list(paths),
            "actual": [labels[i] for i in target],
            "predicted": [labels[i] for i in probabilities.argmax(axis=1)],
            **dict(zip(labels, probabilities.T, strict=True)),
        }
    )


def score_windows(
    model: Classifier, data: Processed, split: str
) -> tuple[torch.Tensor, WindowPredictions]:
    """Row indices of `split` and its clips' window probabilities (at the model's temperature:
    1 for every model `train` saves)."""
    index = data.indices(split)
    windows, clip = TorchPredictor(model).window_probabilities([data.clip(i) for i in index])
    return index, WindowPredictions(
        torch.from_numpy(windows), torch.from_numpy(clip), data.target[index]
    )


def evaluate_split(model: Classifier, data: Processed, split: str) -> dict:
    _, scored = score_windows(model, data, split)
    return classification_metrics(scored.probabilities(), scored.target, data.labels)


def per_corpus(
    probabilities: np.ndarray, target: torch.Tensor, corpus: pd.Series, labels: list[str]
) -> dict[str, dict]:
    """Test clips, UAR, accuracy and macro F1 of each corpus (datasets of several corpora)."""
    out = {}
    for name in sorted(corpus.unique()):
        mask = (corpus == name).to_numpy()
        metrics = classification_metrics(probabilities[mask], target.numpy()[mask], labels)
        keep = ("uar", "accuracy", "f1_macro")
        out[name] = {"test_clips": int(mask.sum()), **{k: round(metrics[k], 4) for k in keep}}
    return out


def evaluate(
    data_dir: Path = Path("data/processed"),
    model_path: Path = HELD_OUT_MODEL,
    reports: Path = Path("reports"),
    cfg: Config | None = None,
) -> dict:
    """Write the test metrics; with `cfg`, also log them to W&B as the `evaluate` run."""
    data = load_processed(data_dir)
    model = Classifier.load(model_path)
    index, scored = score_windows(model, data, "test")
    target, probabilities = scored.target, scored.probabilities()
    metrics = classification_metrics(probabilities, target, data.labels)
    test_meta = data.meta.iloc[index.numpy()]
    speakers = test_meta["speaker"].to_numpy()
    masks = [torch.from_numpy(speakers == s) for s in pd.unique(speakers)]
    by_speaker = [scored.subset(mask) for mask in masks]
    order = torch.cat([torch.nonzero(mask).squeeze(1) for mask in masks])
    summary = {
        **{k: round(v, 4) for k, v in scalars(metrics).items()},
        "ece": round(expected_calibration_error(probabilities, target), 4),
        "ece_floor": round(ece_floor(probabilities), 4),
        "temperature": round(fit_pooled([scored]), 4),
        "split": data.split_strategy,
        "test_clips": len(index),
        "test_actors": len(by_speaker),
    }
    if len(by_speaker) > 1:
        crossed = cross_fitted(by_speaker)
        summary["ece_calibrated"] = round(expected_calibration_error(crossed, target[order]), 4)
    if data.split_strategy == "random":
        summary["warning"] = LEAKY_NOTE
    if test_meta["corpus"].nunique() > 1:
        summary["per_corpus"] = per_corpus(
            probabilities.numpy(), target, test_meta["corpus"], data.labels
        )
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    details = {
        "labels": data.labels,
        **metrics,
        "reliability": reliability(probabilities, target),
    }
    (reports / "evaluation.json").write_text(json.dumps(details, indent=2) + "\n")
    predictions_table(test_meta["path"], target, probabilities.numpy(), data.labels).to_csv(
        reports / "predictions.csv", index=False, float_format="%.6f"
    )
    pd.DataFrame([{"label": k, **v} for k, v in metrics["per_class"].items()]).to_csv(
        reports / "per_class.csv", index=False
    )
    if cfg is not None:
        from knd.training.tracking import track_evaluation

        track_evaluation(cfg, summary, metrics, data.labels)
    log.info("test metrics: %s", json.dumps(summary))
    return summary
