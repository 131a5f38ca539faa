"""Weights & Biases logging, offline by default so no account is needed.

DVC stays the source of truth (params, metrics and plots are DVC outputs); W&B mirrors a run for
people who compare experiments there. Run names and tags follow the DVC experiment, so the two
line up. `wandb.mode: disabled` turns every call into a no-op (tests, CI).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from knd.config import Config, to_dict


class Tracker:
    def __init__(self, cfg: Config, job_type: str):
        self.run = None
        if cfg.wandb.mode == "disabled":
            return
        import wandb

        exp = os.environ.get("DVC_EXP_NAME")
        self.run = wandb.init(
            project=cfg.wandb.project,
            entity=cfg.wandb.entity,
            mode=cfg.wandb.mode,
            job_type=job_type,
            name=f"{exp}-{job_type}" if exp else None,
            group=exp,
            tags=[t for t in (cfg.model.name, cfg.split.strategy, exp) if t],
            config=to_dict(cfg),
            dir=os.environ.get("WANDB_DIR", "."),
        )

    def log(self, values: dict[str, Any], step: int | None = None) -> None:
        if self.run:
            self.run.log(values, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run:
            self.run.summary.update(values)

    def log_evaluation(self, metrics: dict, labels: list[str]) -> None:
        """Confusion matrix and per-class scores as W&B table and plot."""
        if not self.run:
            return
        import wandb

        columns = ["label", "precision", "recall", "f1"]
        rows = [[k, v["precision"], v["recall"], v["f1"]] for k, v in metrics["per_class"].items()]
        cm = metrics["confusion_matrix"]
        pairs = [
            (t, p) for t in range(len(labels)) for p in range(len(labels)) for _ in range(cm[t][p])
        ]
        self.run.log(
            {
                "test/per_class": wandb.Table(columns=columns, data=rows),
                "test/confusion_matrix": wandb.plot.confusion_matrix(
                    y_true=[t for t, _ in pairs], preds=[p for _, p in pairs], class_names=labels
                ),
            }
        )

    def log_model(self, path: Path, metadata: dict[str, Any]) -> None:
        if not self.run:
            return
        import wandb

        artifact = wandb.Artifact("knd-model", type="model", metadata=metadata)
        artifact.add_file(str(path))
        self.run.log_artifact(artifact, aliases=["latest"])

    def finish(self) -> None:
        if self.run:
            self.run.finish()
