"""Stage `release`: the model people get, trained on every actor.

The held-out model (`train`, `models/heldout.pt`) exists to be measured: `evaluate`,
`robustness` and `plot` score it on actors it never heard. The release learns from all actors,
because more voices generalise better (on RAVDESS actors that neither model heard, 20 training
actors scored UAR 0.65 where 14 scored 0.55): either the held-out recipe again from scratch
(`release.start=scratch`, the default: cross-validated 2-4 points better), or the held-out
model continued on every actor for `release.epochs` at `release.lr` (`heldout`), in a seventh of
the time. Nothing is left to score the release on, so its checkpoint carries the held-out
model's numbers (`knd cv --release` measures the recipe on folds); with `train.calibrate` it
also takes the temperature `evaluate` fitted on the held-out model's test actors, which
calibrates a model of the same recipe.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from knd.config import Config, TrainConfig
from knd.data.processed import Processed, load_processed
from knd.errors import KndError
from knd.models.classifier import read_checkpoint
from knd.models.features import band_stats
from knd.paths import HELD_OUT_MODEL, RELEASE_MODEL
from knd.training.train import fit

RELEASE_STATE = Path("models/checkpoints/release.pt")


def release(
    cfg: Config,
    data_dir: Path = Path("data/processed"),
    heldout_path: Path = HELD_OUT_MODEL,
    metrics_path: Path = Path("reports/metrics.json"),
    model_path: Path = RELEASE_MODEL,
    state_path: Path = RELEASE_STATE,
) -> dict:
    """Train on every clip of `data_dir`; record the held-out model's metrics."""
    heldout = read_checkpoint(heldout_path)
    try:
        metrics = json.loads(metrics_path.read_text())
    except FileNotFoundError:
        raise KndError(f"{metrics_path}: not found; run `knd evaluate` first") from None
    data = load_processed(data_dir)
    everyone = dataclasses.replace(data, meta=data.meta.assign(split="train"))
    return fit_release(
        cfg,
        everyone,
        heldout_path,
        model_path,
        state_path,
        temperature=metrics["temperature"] if cfg.train.calibrate else 1.0,
        job_type="release",
        heldout={
            "model": str(heldout_path),
            "trained_on_actors": heldout["trained_on_actors"],
            "init_from": heldout.get("init_from"),
            "metrics": metrics,
        },
    )


def fit_release(
    cfg: Config, data: Processed, heldout_path: Path, model_path: Path, state_path: Path, **extra
) -> dict:
    """The release recipe on `data`'s training split: `knd release` gives it every actor, `knd cv
    --release` a fold's training (and any validation) actors, to measure it on the fold's test
    actors."""
    cfg = dataclasses.replace(cfg, train=release_training(cfg, heldout_path))
    if not cfg.train.init_from:  # a starting checkpoint brings its own normalisation
        mean, std = band_stats(data.features, data.indices("train"))  # as its own training data
        data = dataclasses.replace(data, mean=mean, std=std)
    return fit(cfg, data, model_path, None, state_path, **extra)


def release_training(cfg: Config, heldout_path: Path) -> TrainConfig:
    """The held-out model's training settings, as far as a run with no validation actors can
    follow them: the last epoch is kept, nothing stops early, and a plateau schedule (which
    lowers the rate when validation scores stall) holds `release.lr`. `heldout` goes on from the
    held-out weights (a frozen encoder stays frozen)."""
    train = dataclasses.replace(cfg.train, select="last", patience=0)
    if cfg.release.start == "scratch":
        return train
    return dataclasses.replace(
        train,
        init_from=str(heldout_path),
        epochs=cfg.release.epochs,
        lr=cfg.release.lr,
        scheduler="none" if train.scheduler == "plateau" else train.scheduler,
    )
