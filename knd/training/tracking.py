"""Weights & Biases logging, offline by default so no account is needed.

DVC stays the source of truth (params, metrics and plots are DVC outputs); W&B mirrors a run for
people who compare experiments there. Run names, groups and tags follow the DVC experiment
(`dvc exp run` sets DVC_EXP_NAME for every stage; `dvc repro` does not), so the two line up.
`wandb.mode: disabled`, or WANDB_MODE=disabled in the environment, turns every call into a no-op
(tests, CI). Offline runs land in `wandb/` of the repository (DVC_ROOT), also for queued
experiments, whose own temporary directory is deleted; `wandb sync wandb/offline-run-*` uploads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from knd.config import Config, to_dict

MODEL_ARTIFACT = "knd-model"


class Tracker:
    def __init__(self, cfg: Config, job_type: str):
        self.run, self.exp = None, os.environ.get("DVC_EXP_NAME")
        # wandb.init(mode=...) beats WANDB_MODE; here the environment wins, so CI can switch it off
        mode = os.environ.get("WANDB_MODE") or cfg.wandb.mode
        if mode == "disabled":
            return
        import wandb

        dvc = {"exp_name": self.exp, "baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV")}
        # the resolved config: params.yaml as DVC composed it (dataclasses.asdict, the equivalent
        # of OmegaConf.to_container(cfg, resolve=True) for this typed config)
        self.config = {**to_dict(cfg), "dvc": dvc}
        self.run = wandb.init(
            project=cfg.wandb.project,
            entity=cfg.wandb.entity,
            mode=mode,
            job_type=job_type,
            name=f"{self.exp}-{job_type}" if self.exp else None,
            group=self.exp,
            tags=[t for t in (cfg.model.name, cfg.split.strategy, self.exp) if t],
            config=self.config,
            dir=os.environ.get("WANDB_DIR") or os.environ.get("DVC_ROOT") or ".",
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
        """The checkpoint as a new version of one model artifact (W&B numbers them v0, v1, ...)."""
        if not self.run:
            return
        import wandb

        artifact = wandb.Artifact(
            MODEL_ARTIFACT,
            type="model",
            description="knd speech emotion classifier checkpoint (Classifier.load)",
            metadata={**metadata, **self.config},  # the registry shows what made it
        )
        artifact.add_file(str(path), name=Path(path).name)
        self.run.log_artifact(artifact, aliases=["latest", *([self.exp] if self.exp else [])])

    def finish(self) -> None:
        if self.run:
            self.run.finish()


def track_evaluation(
    cfg: Config, summary: dict[str, Any], metrics: dict, labels: list[str]
) -> None:
    """The `evaluate` stage's W&B run: test scores, per-class table and confusion matrix."""
    tracker = Tracker(cfg, "evaluate")
    tracker.summary({f"test/{k}": v for k, v in summary.items()})
    tracker.log_evaluation(metrics, labels)
    tracker.finish()
