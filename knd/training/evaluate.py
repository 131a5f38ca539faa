"""Stage `evaluate`: test-split metrics of the trained model, as DVC metrics and plots.

Test clips come from actors the model never heard (unless the split is the leaky `random` one,
which the metrics then say in so many words).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from knd.config import Config
from knd.data.processed import Processed, load_processed
from knd.models.classifier import Classifier
from knd.training.metrics import classification_metrics, scalars

LEAKY_NOTE = (
    "LEAKY: random clip-level split, the test actors are also in training; "
    "not comparable with speaker-independent results"
)


@torch.no_grad()
def predict_logits(
    model: Classifier, data: Processed, index: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """Logits from the stored features (made by the same front end as the model's own)."""
    model.eval()
    device = model.mean.device
    chunks = index.split(batch_size)
    return torch.cat(
        [model.net(model.normalise(data.features[c].to(device))).float().cpu() for c in chunks]
    )


def predict_split(
    model: Classifier, data: Processed, split: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices of `split` and the predicted class of each."""
    index = data.indices(split)
    return index, predict_logits(model, data, index).argmax(dim=1)


def evaluate_split(model: Classifier, data: Processed, split: str) -> dict:
    index, preds = predict_split(model, data, split)
    return classification_metrics(preds, data.target[index], data.labels)


def evaluate(
    data_dir: Path = Path("data/processed"),
    model_path: Path = Path("models/model.pt"),
    reports: Path = Path("reports"),
    cfg: Config | None = None,
) -> dict:
    """Write the test metrics; with `cfg`, also log them to W&B as the `evaluate` run."""
    data = load_processed(data_dir)
    model = Classifier.load(model_path)
    index, preds = predict_split(model, data, "test")
    metrics = classification_metrics(preds, data.target[index], data.labels)
    test_meta = data.meta.iloc[index.numpy()]
    summary = {
        **{k: round(v, 4) for k, v in scalars(metrics).items()},
        "split": data.split_strategy,
        "test_clips": len(index),
        "test_actors": len(set(test_meta["actor"])),
    }
    if data.split_strategy == "random":
        summary["warning"] = LEAKY_NOTE
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    details = {"labels": data.labels, **metrics}
    (reports / "evaluation.json").write_text(json.dumps(details, indent=2) + "\n")
    pd.DataFrame(
        {
            "path": test_meta["path"].to_numpy(),
            "actual": [data.labels[i] for i in data.target[index]],
            "predicted": [data.labels[i] for i in preds],
        }
    ).to_csv(reports / "predictions.csv", index=False)
    pd.DataFrame([{"label": k, **v} for k, v in metrics["per_class"].items()]).to_csv(
        reports / "per_class.csv", index=False
    )
    if cfg is not None:
        from knd.training.tracking import track_evaluation

        track_evaluation(cfg, summary, metrics, data.labels)
    print(json.dumps(summary, indent=2))
    return summary
