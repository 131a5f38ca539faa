"""Stage `evaluate`: test-split metrics of the trained model, as DVC metrics and plots.

It scores the held-out model (`models/heldout.pt`), calibrated by the temperature `train` fitted
on the validation actors; the expected calibration error (ECE) is reported with and without it.
Test clips come from actors the model never heard (unless the split is the leaky `random` one,
which the metrics then say in so many words). Every clip is scored whole, by `knd predict`'s own
code (`knd.serving.predictor`: windows of the training duration, probabilities averaged), so
`reports/predictions.csv` is what `knd predict` says about the same files. Validation in
`train` and the test folds of `knd cv` score clips the same way, through `predict_split`.
"""

from __future__ import annotations

import json
import logging
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
from knd.training.calibration import expected_calibration_error, reliability

log = logging.getLogger(__name__)

LEAKY_NOTE = (
    "LEAKY: random clip-level split, the test actors are also in training; "
    "not comparable with speaker-independent results"
)


def predict_split(
    model: Classifier, data: Processed, split: str
) -> tuple[torch.Tensor, np.ndarray]:
    """Row indices of `split` and each clip's probabilities, `(clips, classes)`."""
    index = data.indices(split)
    return index, TorchPredictor(model).probabilities([data.clip(i) for i in index])


def evaluate_split(model: Classifier, data: Processed, split: str) -> dict:
    index, probabilities = predict_split(model, data, split)
    return classification_metrics(torch.from_numpy(probabilities), data.target[index], data.labels)


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
    index, probabilities = predict_split(model, data, "test")
    target = data.target[index]
    metrics = classification_metrics(torch.from_numpy(probabilities), target, data.labels)
    test_meta = data.meta.iloc[index.numpy()]
    temperature = float(model.temperature)
    uncalibrated = probabilities
    if temperature != 1.0:  # the same model uncalibrated, to show what calibration did
        model.temperature.fill_(1.0)
        uncalibrated = predict_split(model, data, "test")[1]
    summary = {
        **{k: round(v, 4) for k, v in scalars(metrics).items()},
        "ece": round(expected_calibration_error(torch.from_numpy(probabilities), target), 4),
        "ece_uncalibrated": round(
            expected_calibration_error(torch.from_numpy(uncalibrated), target), 4
        ),
        "temperature": round(temperature, 4),
        "split": data.split_strategy,
        "test_clips": len(index),
        "test_actors": len(set(test_meta["speaker"])),
    }
    if data.split_strategy == "random":
        summary["warning"] = LEAKY_NOTE
    if test_meta["corpus"].nunique() > 1:
        summary["per_corpus"] = per_corpus(probabilities, target, test_meta["corpus"], data.labels)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    details = {
        "labels": data.labels,
        **metrics,
        "reliability": reliability(torch.from_numpy(probabilities), target),
    }
    (reports / "evaluation.json").write_text(json.dumps(details, indent=2) + "\n")
    pd.DataFrame(
        {
            "path": test_meta["path"].to_numpy(),
            "actual": [data.labels[i] for i in data.target[index]],
            "predicted": [data.labels[i] for i in probabilities.argmax(axis=1)],
            **dict(zip(data.labels, probabilities.T, strict=True)),
        }
    ).to_csv(reports / "predictions.csv", index=False, float_format="%.6f")
    pd.DataFrame([{"label": k, **v} for k, v in metrics["per_class"].items()]).to_csv(
        reports / "per_class.csv", index=False
    )
    if cfg is not None:
        from knd.training.tracking import track_evaluation

        track_evaluation(cfg, summary, metrics, data.labels)
    log.info("test metrics: %s", json.dumps(summary))
    return summary
