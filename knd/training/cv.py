"""`knd cv`: k-fold cross-validation by actor, the protocol behind knd's headline numbers.

One test split of four actors says little (fold-to-fold spread is ~7 UAR points), so models are
compared by the mean and spread over folds that together hold out every actor once. Features are
computed once by `make_dataset`; each fold only reassigns splits and normalisation statistics.

The folds' test clips together are every actor once, each scored by a model that never heard it:
pooled, they measure calibration on five times the clips of one split, and fit the temperature a
recipe needs (cross-fitted, so the calibrated ECE is measured on clips the fit never saw).
With `robustness`, each fold model is also scored on its test actors under `knd robustness`'s
conditions, so a recipe's robustness is judged over every actor too, not over one split's four.

The training seed alone moves a 5-fold mean by about 3 UAR points, as much as many a recipe
change: `cross_validate_seeds` repeats the whole protocol per seed and reports the mean over seeds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from knd.config import Config, to_dict
from knd.data.processed import METADATA_FILE, Processed, load_processed
from knd.data.splits import assign_splits, kfold_test_speakers, speaker_genders
from knd.errors import KndError
from knd.files import replace_text
from knd.metrics import classification_metrics, scalars
from knd.models.classifier import Classifier
from knd.models.features import band_stats
from knd.serving.predict import load_predictor
from knd.training.calibration import (
    WindowPredictions,
    cross_fitted,
    ece_floor,
    expected_calibration_error,
    fit_pooled,
)
from knd.training.evaluate import predictions_table, score_windows
from knd.training.release import fit_release
from knd.training.robustness import MILD, TELEPHONE, score_clips, select_held_out
from knd.training.train import fit

log = logging.getLogger(__name__)

HEADLINE = ("uar", "accuracy", "f1_macro", "f1_weighted", "ece")
CONDITION_SCORES = ("uar", "uar_drop")


def pooled_calibration(
    folds: list[WindowPredictions],
    labels: list[str],
    released: list[WindowPredictions] | None = None,
) -> dict:
    """Metrics and calibration over every fold's test clips at once.

    `temperature` is fitted on all of them; `ece_cross_fitted` scores each fold at the
    temperature fitted on the other folds. With the release recipe's folds (`released`),
    `release_ece_cross_fitted` scores each at the temperature fitted on the other folds'
    held-out models, as `train.calibrate` calibrates the release with the held-out model's.
    """
    target = torch.cat([f.target for f in folds])
    raw = torch.cat([f.probabilities() for f in folds])
    release = {}
    if released:
        release_raw = torch.cat([r.probabilities() for r in released])
        release = {
            "release_ece": round(expected_calibration_error(release_raw, target), 4),
            "release_ece_cross_fitted": round(
                expected_calibration_error(cross_fitted(folds, released), target), 4
            ),
        }
    return {
        "clips": len(target),
        **{k: round(v, 4) for k, v in scalars(classification_metrics(raw, target, labels)).items()},
        "ece": round(expected_calibration_error(raw, target), 4),
        "ece_floor": round(ece_floor(raw), 4),
        "ece_cross_fitted": round(expected_calibration_error(cross_fitted(folds), target), 4),
        "temperature": round(fit_pooled(folds), 4),
        **release,
    }


TABLE = (("UAR", "uar"), ("WA", "accuracy"), ("macro F1", "f1_macro"), ("ECE", "ece"))


def fold_data(data: Processed, cfg: Config, fold: int) -> Processed:
    """`data` with fold `fold` as the test split and statistics from its training actors only."""
    split_cfg = dataclasses.replace(cfg.split, strategy="kfold", fold=fold)
    meta = data.meta.copy()
    meta["split"] = assign_splits(meta, split_cfg)
    resplit = dataclasses.replace(data, meta=meta, split_strategy="kfold")
    mean, std = band_stats(data.features, resplit.indices("train"))
    return dataclasses.replace(resplit, mean=mean, std=std)


def headline(scores: dict) -> str:
    return "  ".join(f"{k} {scores[k]:.4f}" for k in HEADLINE)


def split_scores(scored: WindowPredictions, labels: list[str]) -> dict:
    probabilities = scored.probabilities()
    metrics = scalars(classification_metrics(probabilities, scored.target, labels))
    return {**metrics, "ece": expected_calibration_error(probabilities, scored.target)}


def released_fold(cfg: Config, data: Processed, fold_dir: Path) -> tuple[dict, WindowPredictions]:
    """The release recipe on a fold: as `knd release` learns every actor (from scratch, or going
    on from the held-out model), it learns the fold's training and validation actors, and is
    scored on the same test actors: its scores, and its predictions."""
    start = time.perf_counter()
    meta = data.meta.assign(split=data.meta["split"].replace("val", "train"))
    model_path = fold_dir / "release.pt"
    fit_release(
        cfg,
        dataclasses.replace(data, meta=meta),
        fold_dir / "model.pt",
        model_path,
        fold_dir / "release_last.pt",
        job_type="release",
    )
    _, scored = score_windows(Classifier.load(model_path), data, "test")
    scores = {"seconds": time.perf_counter() - start, **split_scores(scored, data.labels)}
    return scores, scored


def cross_validate(
    cfg: Config,
    data_dir: Path = Path("data/processed"),
    out_dir: Path = Path("reports/cv"),
    folds: list[int] | None = None,
    release: bool = False,
    robustness: bool = False,
    raw_dir: Path = Path("data/raw"),
) -> dict:
    """`release`: also measure the release recipe on every fold (`released_fold`).
    `robustness`: also score each fold model under every condition, its clips read from
    `raw_dir` (all checked before the first fold trains).

    `cv.json` and `predictions.csv` are rewritten after every fold, `pending` naming the folds
    still to run, so a run stopped after an hour keeps the folds it finished."""
    if release and cfg.release.start == "scratch" and not cfg.split.val_actors:
        raise KndError(
            "knd cv --release: with release.start=scratch and no validation actors, the release "
            "recipe would train each fold's model over again on the same actors; set "
            "split.val_actors=4 (new actors for the release to learn) or release.start=heldout"
        )
    data = load_processed(data_dir)
    source = data_dir / METADATA_FILE
    if robustness:
        select_held_out(data.meta.assign(split="test"), raw_dir, source)
    test_actors = kfold_test_speakers(speaker_genders(data.meta), cfg.split.k, cfg.split.seed)
    folds = list(folds if folds is not None else range(cfg.split.k))
    results, predictions, released, paths = [], [], [], []
    for fold in folds:
        log.info("fold %d of %d: test actors %s", fold, cfg.split.k, test_actors[fold])
        start = time.perf_counter()
        fold_dir = out_dir / f"fold{fold}"
        fdata = fold_data(data, cfg, fold)
        fit(cfg, fdata, fold_dir / "model.pt", fold_dir / "dvclive", fold_dir / "last.pt")
        model = Classifier.load(fold_dir / "model.pt")
        index, scored = score_windows(model, fdata, "test")
        predictions.append(scored)
        paths.append(fdata.meta["path"].iloc[index.numpy()].tolist())
        metrics = split_scores(scored, fdata.labels)
        seconds = time.perf_counter() - start
        results.append(
            {"fold": fold, "test_actors": test_actors[fold], "seconds": seconds, **metrics}
        )
        log.info("fold %d: %s", fold, headline(metrics))
        if robustness:
            predictor = load_predictor(fold_dir / "model.pt")
            clips = select_held_out(fdata.meta, raw_dir, source)
            results[-1]["robustness"] = score_clips(predictor, clips, raw_dir)
        if release:
            results[-1]["release"], scored = released_fold(cfg, fdata, fold_dir)
            released.append(scored)
            log.info("fold %d, release recipe: %s", fold, headline(results[-1]["release"]))
        summary = summarise(results, cfg)
        if len(predictions) > 1:
            summary["pooled"] = pooled_calibration(predictions, data.labels, released)
        pending = folds[len(results) :]
        if pending:
            summary["pending"] = pending
            log.info("fold %d: the summary so far is in %s", fold, out_dir / "cv.json")
        table = predictions_csv(predictions, paths, [r["fold"] for r in results], data.labels)
        replace_text(out_dir / "predictions.csv", table)
        replace_text(out_dir / "cv.json", json.dumps(summary, indent=2) + "\n")
    log.info("cross-validation by actor:\n%s", format_table(summary))
    return summary


def cross_validate_seeds(
    cfg: Config,
    seeds: list[int],
    data_dir: Path = Path("data/processed"),
    out_dir: Path = Path("reports/cv"),
    folds: list[int] | None = None,
    release: bool = False,
    robustness: bool = False,
    raw_dir: Path = Path("data/raw"),
) -> dict:
    """`cross_validate` once per `train.seed` in `seeds`, each in `out_dir/seed<S>/`; their fold
    means, and the mean and spread of those over seeds, in `out_dir/seeds.json`."""
    if len(set(seeds)) < len(seeds):
        raise KndError(f"--seed: each seed once, got {seeds} (a repeat would count twice)")
    runs = {}
    for seed in seeds:
        log.info("seed %d (%d of %d)", seed, len(runs) + 1, len(seeds))
        seeded = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
        run_dir = out_dir / f"seed{seed}"
        runs[seed] = cross_validate(seeded, data_dir, run_dir, folds, release, robustness, raw_dir)
    summary = over_seeds(runs)
    replace_text(out_dir / "seeds.json", json.dumps(summary, indent=2) + "\n")
    log.info("cross-validation by actor over %d seeds:\n%s", len(seeds), format_seeds(summary))
    return summary


def over_seeds(runs: dict[int, dict]) -> dict:
    """Each seed's fold means (and pooled ECE, and the release recipe's means if measured); for
    each headline metric, the mean of the seeds' fold means and their standard deviation."""
    rows = []
    for seed, run in runs.items():
        row = {"seed": seed, **{key: run[key]["mean"] for key in HEADLINE}}
        if "pooled" in run:
            row["pooled_ece"] = run["pooled"]["ece"]
        if "release" in run:
            row["release"] = {key: run["release"][key]["mean"] for key in HEADLINE}
        if "robustness" in run:
            row["robustness"] = {
                name: {key: scores[key]["mean"] for key in CONDITION_SCORES}
                for name, scores in run["robustness"].items()
            }
        rows.append(row)
    first = next(iter(runs.values()))
    summary = {
        "model": first["model"],
        "k": first["k"],
        "epochs": first["epochs"],
        "seeds": rows,
        **{key: mean_std([row[key] for row in rows]) for key in HEADLINE},
    }
    if all("pooled_ece" in row for row in rows):
        summary["pooled_ece"] = mean_std([row["pooled_ece"] for row in rows])
    if all("release" in row for row in rows):
        summary["release"] = {
            key: mean_std([row["release"][key] for row in rows]) for key in HEADLINE
        }
    if all("robustness" in row for row in rows):
        summary["robustness"] = condition_spread([row["robustness"] for row in rows])
    return summary


def condition_spread(runs: list[dict[str, dict]]) -> dict[str, dict]:
    """Per condition, the mean and spread of each of `CONDITION_SCORES` over `runs`."""
    return {
        name: {key: mean_std([run[name][key] for run in runs]) for key in CONDITION_SCORES}
        for name in runs[0]
    }


def format_robustness(robustness: dict[str, dict], over: str) -> str:
    """UAR and its drop from clean per condition, `mean ± std` over folds or seeds (`over`);
    then the worst mild condition and the telephone band, the drops the targets bound."""
    rows = [f"| condition ({over}) | UAR | drop from clean |", "|---|---|---|"]
    for name, scores in robustness.items():
        rows.append(f"| {name} | {spread(scores, CONDITION_SCORES)} |")
    mild = max(MILD, key=lambda name: robustness[name]["uar_drop"]["mean"])
    rows.append(
        f"\nworst mild condition: {mild}, drop {robustness[mild]['uar_drop']['mean']:.3f}; "
        f"{TELEPHONE}: drop {robustness[TELEPHONE]['uar_drop']['mean']:.3f}"
    )
    return "\n".join(rows)


def format_seeds(summary: dict) -> str:
    names = [name for name, _ in TABLE]
    rows = ["| seed | " + " | ".join(names) + " |", "|---" * (len(TABLE) + 1) + "|"]
    for row in summary["seeds"]:
        rows.append(f"| {row['seed']} | " + " | ".join(f"{row[k]:.3f}" for _, k in TABLE) + " |")
    rows.append(f"| mean ± std over seeds | {spread(summary)} |")
    if "release" in summary:
        rows.append(f"| release recipe, over seeds | {spread(summary['release'])} |")
    if "pooled_ece" in summary:
        ece = summary["pooled_ece"]
        rows.append(f"\npooled ECE over seeds {ece['mean']:.3f} ± {ece['std']:.3f}")
    if "robustness" in summary:
        rows.append("\n" + format_robustness(summary["robustness"], "over seeds"))
    return "\n".join(rows)


def predictions_csv(
    predictions: list[WindowPredictions],
    paths: list[list[str]],
    folds: list[int],
    labels: list[str],
) -> str:
    """Every test clip of every fold, as `reports/predictions.csv` has them for one split."""
    frames = [
        predictions_table(fold_paths, p.target, p.probabilities().numpy(), labels)
        for p, fold_paths in zip(predictions, paths, strict=True)
    ]
    table = pd.concat(frames, keys=folds, names=["fold", None]).reset_index(level=0)
    return table.to_csv(index=False, float_format="%.6f")


def mean_std(values: list[float]) -> dict[str, float]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 4), "std": round(std, 4)}


def summarise(results: list[dict], cfg: Config) -> dict:
    summary = {
        "model": cfg.model.name,
        "k": cfg.split.k,
        "epochs": cfg.train.epochs,
        "folds": results,
        **{key: mean_std([r[key] for r in results]) for key in HEADLINE},
    }
    released = [r["release"] for r in results if "release" in r]
    if released:
        summary["release"] = {
            "settings": to_dict(cfg.release),
            **{key: mean_std([r[key] for r in released]) for key in HEADLINE},
        }
    scored = [r["robustness"] for r in results if "robustness" in r]
    if scored:
        summary["robustness"] = condition_spread(scored)
    summary["params"] = to_dict(cfg)
    return summary


def spread(scores: dict, keys: tuple[str, ...] = tuple(k for _, k in TABLE)) -> str:
    """The table's `mean ± std` cells of a summary's metrics."""
    return " | ".join(f"{scores[k]['mean']:.3f} ± {scores[k]['std']:.3f}" for k in keys)


def format_table(summary: dict) -> str:
    names = [name for name, _ in TABLE]
    rows = ["| fold | test actors | " + " | ".join(names) + " |", "|---" * (len(TABLE) + 2) + "|"]
    for r in summary["folds"]:
        actors = ",".join(map(str, r["test_actors"]))
        rows.append(
            f"| {r['fold']} | {actors} | " + " | ".join(f"{r[k]:.3f}" for _, k in TABLE) + " |"
        )

    rows.append(f"| mean ± std | | {spread(summary)} |")
    if "release" in summary:
        rows.append(f"| release recipe | | {spread(summary['release'])} |")
    if "pooled" in summary:
        pooled = summary["pooled"]
        rows.append(
            "| all folds pooled | | " + " | ".join(f"{pooled[k]:.3f}" for _, k in TABLE) + " |"
        )
        rows.append(
            f"\npooled ECE {pooled['ece']:.3f} (a calibrated model's on {pooled['clips']} clips: "
            f"{pooled['ece_floor']:.3f}); at the temperature fitted on the other folds "
            f"{pooled['ece_cross_fitted']:.3f}; temperature fitted on all: {pooled['temperature']}"
        )
        if "release_ece" in pooled:
            rows.append(
                f"release recipe: pooled ECE {pooled['release_ece']:.3f}; at the temperature "
                "fitted on the other folds' held-out models "
                f"{pooled['release_ece_cross_fitted']:.3f}"
            )
    if "robustness" in summary:
        rows.append("\n" + format_robustness(summary["robustness"], "over folds"))
    return "\n".join(rows)
