"""`knd cv`: k-fold cross-validation by actor, the protocol behind knd's headline numbers.

One test split of four actors says little (fold-to-fold spread is ~7 UAR points), so models are
compared by the mean and spread over folds that together hold out every actor once. Features are
computed once by `make_dataset`; each fold only reassigns splits and normalisation statistics.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import time
from pathlib import Path

from knd.config import Config
from knd.data.processed import Processed, load_processed
from knd.data.splits import assign_splits, kfold_test_actors
from knd.models.classifier import Classifier
from knd.models.features import band_stats
from knd.training.evaluate import evaluate_split
from knd.training.metrics import scalars
from knd.training.train import fit

log = logging.getLogger(__name__)

HEADLINE = ("uar", "accuracy", "f1_macro", "f1_weighted")


def fold_data(data: Processed, cfg: Config, fold: int) -> Processed:
    """`data` with fold `fold` as the test split and statistics from its training actors only."""
    split_cfg = dataclasses.replace(cfg.split, strategy="kfold", fold=fold)
    meta = data.meta.copy()
    meta["split"] = assign_splits(meta, split_cfg)
    resplit = dataclasses.replace(data, meta=meta, split_strategy="kfold")
    mean, std = band_stats(data.features[resplit.indices("train")])
    return dataclasses.replace(resplit, mean=mean, std=std)


def cross_validate(
    cfg: Config,
    data_dir: Path = Path("data/processed"),
    out_dir: Path = Path("reports/cv"),
    folds: list[int] | None = None,
) -> dict:
    data = load_processed(data_dir)
    actors = sorted(set(data.meta["actor"]))
    test_actors = kfold_test_actors(actors, cfg.split.k, cfg.split.seed)
    results = []
    for fold in folds if folds is not None else range(cfg.split.k):
        log.info("fold %d of %d: test actors %s", fold, cfg.split.k, test_actors[fold])
        start = time.perf_counter()
        fold_dir = out_dir / f"fold{fold}"
        fdata = fold_data(data, cfg, fold)
        fit(cfg, fdata, fold_dir / "model.pt", fold_dir / "dvclive", fold_dir / "last.pt")
        model = Classifier.load(fold_dir / "model.pt")
        metrics = scalars(evaluate_split(model, fdata, "test"))
        seconds = time.perf_counter() - start
        results.append(
            {"fold": fold, "test_actors": test_actors[fold], "seconds": seconds, **metrics}
        )
        log.info("fold %d: %s", fold, "  ".join(f"{k} {metrics[k]:.4f}" for k in HEADLINE))
    summary = summarise(results, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cv.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("cross-validation by actor:\n%s", format_table(summary))
    return summary


def summarise(results: list[dict], cfg: Config) -> dict:
    def mean_std(key: str) -> dict[str, float]:
        values = [r[key] for r in results]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return {"mean": round(statistics.fmean(values), 4), "std": round(std, 4)}

    return {
        "model": cfg.model.name,
        "k": cfg.split.k,
        "epochs": cfg.train.epochs,
        "folds": results,
        **{key: mean_std(key) for key in HEADLINE},
    }


def format_table(summary: dict) -> str:
    rows = ["| fold | test actors | UAR | WA | macro F1 |", "|---|---|---|---|---|"]
    for r in summary["folds"]:
        actors = ",".join(map(str, r["test_actors"]))
        scores = " | ".join(f"{r[k]:.3f}" for k in ("uar", "accuracy", "f1_macro"))
        rows.append(f"| {r['fold']} | {actors} | {scores} |")
    m = {k: summary[k] for k in HEADLINE}
    rows.append(
        f"| mean ± std | | {m['uar']['mean']:.3f} ± {m['uar']['std']:.3f} "
        f"| {m['accuracy']['mean']:.3f} ± {m['accuracy']['std']:.3f} "
        f"| {m['f1_macro']['mean']:.3f} ± {m['f1_macro']['std']:.3f} |"
    )
    return "\n".join(rows)
