"""Cross-validation by actor: per-fold splits and normalisation, and the summary it reports."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers.project import TINY, compose_config, compose_dict, run_cli

from knd.config import to_dict
from knd.data.processed import Processed, load_processed
from knd.data.splits import kfold_test_speakers
from knd.errors import KndError
from knd.training import cv
from knd.training.calibration import WindowPredictions
from knd.training.cv import (
    HEADLINE,
    cross_validate,
    cross_validate_seeds,
    fold_data,
    format_seeds,
    format_table,
    over_seeds,
    pooled_calibration,
    summarise,
)
from knd.training.robustness import CONDITIONS, MILD, TELEPHONE

ACTORS = list(range(1, 25))
GENDER = {a: "male" if a % 2 else "female" for a in ACTORS}
CLIPS, BINS, FRAMES = 4, 3, 5


@pytest.fixture
def data() -> Processed:
    """Every value of actor a's features in bin b is a * (b + 1): statistics say whose they are."""
    meta = pd.DataFrame(
        [
            {"speaker": a, "gender": GENDER[a], "label": f"e{c}", "split": "train"}
            for a in ACTORS
            for c in range(CLIPS)
        ]
    )
    actor = torch.tensor(meta["speaker"].to_numpy(), dtype=torch.float32)
    features = actor[:, None, None] * torch.arange(1.0, BINS + 1)[None, :, None]
    return Processed(
        audio=torch.zeros(len(meta) * 10, dtype=torch.int16),
        offsets=torch.arange(len(meta) + 1) * 10,
        features=features.expand(-1, -1, FRAMES).contiguous(),
        target=torch.tensor([int(label[1]) for label in meta["label"]]),
        labels=[f"e{c}" for c in range(CLIPS)],
        mean=torch.zeros(BINS),
        std=torch.ones(BINS),
        feature_config={},
        encoder=None,
        split_strategy="actor",
        meta=meta,
    )


def test_each_fold_normalises_with_its_training_actors_only(data):
    cfg = compose_config("split=kfold")
    folds = kfold_test_speakers(GENDER, cfg.split.k, cfg.split.seed)
    tested = []
    for fold in range(cfg.split.k):
        fdata = fold_data(data, cfg, fold)
        actors = {
            split: set(fdata.meta.loc[fdata.meta["split"] == split, "speaker"])
            for split in ("train", "val", "test")
        }
        assert actors["test"] == set(folds[fold]) and len(actors["val"]) == cfg.split.val_actors
        assert actors["train"] == set(ACTORS) - actors["test"] - actors["val"]
        tested += actors["test"]

        values = np.repeat(sorted(actors["train"]), CLIPS * FRAMES).astype(float)
        scale = np.arange(1, BINS + 1)
        np.testing.assert_allclose(fdata.mean, values.mean() * scale, rtol=1e-6)
        np.testing.assert_allclose(fdata.std, values.std(ddof=1) * scale, rtol=1e-5)
        assert fdata.split_strategy == "kfold"
    assert sorted(tested) == ACTORS, "every actor is tested exactly once"
    assert set(data.meta["split"]) == {"train"} and torch.equal(data.mean, torch.zeros(BINS))


def test_summary_and_table_report_mean_and_spread():
    cfg = compose_config("split=kfold")
    results = [
        {"fold": 0, "test_actors": [1, 2], "seconds": 9.0, "uar": 0.5, "accuracy": 0.6}
        | {"f1_macro": 0.4, "f1_weighted": 0.45, "ece": 0.05},
        {"fold": 1, "test_actors": [3, 4], "seconds": 8.0, "uar": 0.7, "accuracy": 0.7}
        | {"f1_macro": 0.6, "f1_weighted": 0.55, "ece": 0.03},
    ]
    summary = summarise(results, cfg)
    assert (summary["model"], summary["k"], summary["epochs"]) == (
        cfg.model.name,
        cfg.split.k,
        cfg.train.epochs,
    )
    assert summary["folds"] == results
    assert summary["uar"] == {"mean": 0.6, "std": 0.1414}  # stdev of 0.5 and 0.7: 0.1 * sqrt(2)
    assert summary["accuracy"] == {"mean": 0.65, "std": 0.0707}
    assert summary["f1_weighted"] == {"mean": 0.5, "std": 0.0707}
    assert summary["ece"] == {"mean": 0.04, "std": 0.0141}
    assert format_table(summary).splitlines() == [
        "| fold | test actors | UAR | WA | macro F1 | ECE |",
        "|---|---|---|---|---|---|",
        "| 0 | 1,2 | 0.500 | 0.600 | 0.400 | 0.050 |",
        "| 1 | 3,4 | 0.700 | 0.700 | 0.600 | 0.030 |",
        "| mean ± std | | 0.600 ± 0.141 | 0.650 ± 0.071 | 0.500 ± 0.141 | 0.040 ± 0.014 |",
    ]
    assert summarise(results[:1], cfg)["uar"] == {"mean": 0.5, "std": 0.0}


def test_pooled_folds_fit_the_temperature_and_score_it_on_folds_it_never_saw():
    """Five folds of a model 3x overconfident: the pooled fit finds 3 and repairs the ECE."""
    gen = torch.Generator().manual_seed(0)
    folds, released = [], []
    for _ in range(5):
        logits = 2.0 * torch.randn(400, 4, generator=gen)
        target = torch.multinomial(torch.softmax(logits, 1), 1, generator=gen).squeeze(1)
        windows = torch.softmax(3 * logits, 1).double()
        clip = torch.arange(400)
        folds.append(WindowPredictions(windows, clip, target))
        released.append(WindowPredictions(torch.softmax(logits, 1).double(), clip, target))
    pooled = pooled_calibration(folds, ["a", "b", "c", "d"], released)
    assert pooled["clips"] == 2000
    assert pooled["temperature"] == pytest.approx(3.0, rel=0.1)
    assert pooled["ece_cross_fitted"] < 0.04 < 0.1 < pooled["ece"]
    assert pooled["ece_floor"] < 0.04
    # a calibrated release made 3x less sure by the held-out models' temperature
    assert pooled["release_ece"] < 0.04 < 0.1 < pooled["release_ece_cross_fitted"]
    spread = {key: {"mean": 0.5, "std": 0.1} for key in ("uar", "accuracy", "f1_macro", "ece")}
    line = format_table({"folds": [], **spread, "pooled": pooled}).splitlines()[-1]
    assert line == (
        f"release recipe: pooled ECE {pooled['release_ece']:.3f}; at the temperature fitted on "
        f"the other folds' held-out models {pooled['release_ece_cross_fitted']:.3f}"
    )
    correct = torch.cat([f.probabilities().argmax(1) == f.target for f in folds]).double()
    assert pooled["accuracy"] == pytest.approx(float(correct.mean()), abs=1e-4)


def test_seeds_are_summarised_by_the_mean_and_spread_of_their_fold_means():
    cfg = compose_config("split=kfold")

    def run(uar: float, release_uar: float) -> dict:
        folds = [{"fold": f, "test_actors": [f], "seconds": 1.0} for f in range(2)]
        for fold, shift in zip(folds, (-0.05, 0.05), strict=True):
            fold.update({key: 0.5 for key in HEADLINE}, uar=uar + shift)
            fold["release"] = {key: 0.5 for key in HEADLINE} | {"uar": release_uar}
        return summarise(folds, cfg) | {"pooled": {"ece": uar / 10}}

    summary = over_seeds({42: run(0.7, 0.72), 43: run(0.6, 0.66)})
    assert [row["seed"] for row in summary["seeds"]] == [42, 43]
    assert [row["uar"] for row in summary["seeds"]] == [0.7, 0.6]
    assert summary["uar"] == {"mean": 0.65, "std": 0.0707}  # of 0.7 and 0.6, not of the folds
    assert summary["accuracy"] == {"mean": 0.5, "std": 0.0}
    assert summary["release"]["uar"] == {"mean": 0.69, "std": 0.0424}
    assert summary["pooled_ece"] == {"mean": 0.065, "std": 0.0071}
    assert format_seeds(summary).splitlines() == [
        "| seed | UAR | WA | macro F1 | ECE |",
        "|---|---|---|---|---|",
        "| 42 | 0.700 | 0.500 | 0.500 | 0.500 |",
        "| 43 | 0.600 | 0.500 | 0.500 | 0.500 |",
        "| mean ± std over seeds | 0.650 ± 0.071 | 0.500 ± 0.000 | 0.500 ± 0.000 | 0.500 ± 0.000 |",
        "| release recipe, over seeds | 0.690 ± 0.042 | 0.500 ± 0.000 | 0.500 ± 0.000 | "
        "0.500 ± 0.000 |",
        "",
        "pooled ECE over seeds 0.065 ± 0.007",
    ]


def test_a_repeated_seed_is_refused_before_any_training(tmp_path):
    with pytest.raises(KndError, match=r"--seed: each seed once, got \[1, 2, 1\]"):
        cross_validate_seeds(compose_config(), [1, 2, 1], tmp_path / "none", tmp_path)
    assert not any(tmp_path.iterdir())


def conditions_scored(clean: float, drops: dict[str, float]) -> dict[str, dict]:
    """`score`'s result for every condition: drop 0.01 unless `drops` says otherwise."""
    scored = {}
    for condition in CONDITIONS:
        drop = 0.0 if condition.name == "clean" else drops.get(condition.name, 0.01)
        scored[condition.name] = {"uar": clean - drop, "uar_drop": drop, "wa": 0.5}
    return scored


def test_robustness_is_reported_per_condition_over_folds_and_over_seeds():
    cfg = compose_config("split=kfold")
    folds = [
        {"fold": f, "test_actors": [f], "seconds": 1.0} | {key: 0.6 for key in HEADLINE}
        for f in range(2)
    ]
    drops = (
        {"reverb RT60 0.3 s": 0.04, TELEPHONE: 0.08},
        {"reverb RT60 0.3 s": 0.06, TELEPHONE: 0.1},
    )
    scored = [
        f | {"robustness": conditions_scored(0.6, d)} for f, d in zip(folds, drops, strict=True)
    ]
    summary = summarise(scored, cfg)
    room = summary["robustness"]["reverb RT60 0.3 s"]
    assert room == {"uar": {"mean": 0.55, "std": 0.0141}, "uar_drop": {"mean": 0.05, "std": 0.0141}}
    assert summary["robustness"]["clean"]["uar_drop"] == {"mean": 0.0, "std": 0.0}
    lines = format_table(summary).splitlines()
    assert "| reverb RT60 0.3 s | 0.550 ± 0.014 | 0.050 ± 0.014 |" in lines
    assert lines[-1] == (
        "worst mild condition: reverb RT60 0.3 s, drop 0.050; telephone 300-3400 Hz: drop 0.090"
    )
    other = summarise([f | {"robustness": conditions_scored(0.6, {})} for f in folds], cfg)
    seeds = over_seeds({42: summary, 43: other})
    assert seeds["robustness"][TELEPHONE]["uar_drop"] == {"mean": 0.05, "std": 0.0566}
    assert format_seeds(seeds).splitlines()[-1] == (
        "worst mild condition: reverb RT60 0.3 s, drop 0.030; telephone 300-3400 Hz: drop 0.050"
    )
    assert "robustness" not in over_seeds({42: summary, 43: summarise(folds, cfg)})


def test_every_mild_condition_and_the_telephone_band_are_scored():
    assert {*MILD, TELEPHONE} < {condition.name for condition in CONDITIONS}


def test_missing_audio_for_robustness_is_refused_before_any_training(processed, tmp_path):
    cfg = compose_config(*TINY, "split=kfold", "split.k=3")
    with pytest.raises(KndError, match=r"not found \(\d+ of \d+ test clips missing\)"):
        cross_validate(cfg, processed, tmp_path / "cv", robustness=True, raw_dir=tmp_path)
    assert not (tmp_path / "cv").exists()


@pytest.mark.slow
def test_each_fold_model_is_scored_under_every_condition_on_its_test_actors(processed, tmp_path):
    cfg = compose_config(*TINY, "split=kfold", "split.k=3", "train.epochs=1")
    raw = processed.parent / "raw"
    summary = cross_validate(cfg, processed, tmp_path, [0], robustness=True, raw_dir=raw)
    fold = summary["folds"][0]
    assert list(fold["robustness"]) == [condition.name for condition in CONDITIONS]
    # the clean audio through `knd predict`'s path scores as the stored features do (one
    # front end), up to a clip or two whose top two classes are within float noise
    assert fold["robustness"]["clean"]["uar"] == pytest.approx(fold["uar"], abs=0.1)
    assert summary["robustness"]["clean"]["uar"]["mean"] == fold["robustness"]["clean"]["uar"]
    assert json.loads((tmp_path / "cv.json").read_text()) == summary
    assert "worst mild condition" in format_table(summary)


@pytest.mark.slow
def test_each_seed_runs_the_whole_cross_validation_in_its_own_folder(processed, tmp_path):
    cfg = compose_config(*TINY, "split=kfold", "split.k=3", "train.epochs=1")
    summary = cross_validate_seeds(cfg, [7, 8], processed, tmp_path, folds=[0])
    for seed in (7, 8):
        run = json.loads((tmp_path / f"seed{seed}" / "cv.json").read_text())
        row = next(row for row in summary["seeds"] if row["seed"] == seed)
        assert row["uar"] == run["uar"]["mean"]
        checkpoint = torch.load(tmp_path / f"seed{seed}" / "fold0" / "model.pt", weights_only=True)
        assert checkpoint["train_config"]["seed"] == seed
    assert json.loads((tmp_path / "seeds.json").read_text()) == summary
    assert not (tmp_path / "cv.json").exists()


@pytest.mark.slow
def test_cross_validation_scores_every_tested_clip_once_and_pools_them(processed, tmp_path):
    cfg = compose_config(*TINY, "split=kfold", "split.k=3", "train.epochs=1")
    summary = cross_validate(cfg, processed, tmp_path, folds=[0, 1])
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    tested = [a for fold in summary["folds"] for a in fold["test_actors"]]
    actors = predictions["path"].str.extract(r"Actor_(\d+)")[0].astype(int)
    assert sorted(set(actors)) == sorted(tested) and not predictions["path"].duplicated().any()
    assert summary["pooled"]["clips"] == len(predictions)
    right = (predictions["actual"] == predictions["predicted"]).mean()
    assert summary["pooled"]["accuracy"] == pytest.approx(right, abs=1e-4)
    assert summary["params"] == to_dict(cfg)  # every setting the numbers came from
    assert json.loads((tmp_path / "cv.json").read_text()) == summary
    assert "pending" not in summary


@pytest.mark.slow
def test_a_stopped_run_keeps_the_summary_of_the_folds_it_finished(processed, tmp_path, monkeypatch):
    cfg = compose_config(*TINY, "split=kfold", "split.k=3", "train.epochs=1")
    fit = cv.fit

    def stopped_in_fold_1(cfg, data, model_path, *paths):
        if model_path.parent.name == "fold1":
            raise KeyboardInterrupt
        fit(cfg, data, model_path, *paths)

    monkeypatch.setattr(cv, "fit", stopped_in_fold_1)
    with pytest.raises(KeyboardInterrupt):
        cross_validate(cfg, processed, tmp_path, folds=[0, 1, 2])
    summary = json.loads((tmp_path / "cv.json").read_text())
    assert [fold["fold"] for fold in summary["folds"]] == [0]
    assert summary["pending"] == [1, 2]
    assert summary["uar"]["mean"] == round(summary["folds"][0]["uar"], 4)
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    actors = predictions["path"].str.extract(r"Actor_(\d+)")[0].astype(int)
    assert set(predictions["fold"]) == {0}
    assert set(actors) == set(summary["folds"][0]["test_actors"])
    assert not list(tmp_path.glob("*.tmp"))


def test_cv_takes_overrides_as_dvc_exp_run_does(monkeypatch, capsys, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(compose_dict()))
    seen = {}
    monkeypatch.setattr(cv, "cross_validate", lambda cfg, **options: seen.update(cfg=cfg))
    args = ["cv", "--params", str(params), "-S", "split.k=10", "--set", "train.lr=1e-3"]
    status, _, _ = run_cli(monkeypatch, capsys, *args)
    assert status == 0
    assert (seen["cfg"].split.k, seen["cfg"].train.lr) == (10, 0.001)


@pytest.mark.slow
def test_the_release_recipe_goes_on_with_the_validation_actors_and_is_scored_on_the_test_ones(
    processed, tmp_path
):
    overrides = ("split=kfold", "split.k=3", "train.epochs=1", "release.start=heldout")
    cfg = compose_config(*TINY, *overrides, "release.epochs=2", "release.lr=0.0007")
    summary = cross_validate(cfg, processed, tmp_path, folds=[0], release=True)
    heldout = torch.load(tmp_path / "fold0" / "model.pt", weights_only=True)
    released = torch.load(tmp_path / "fold0" / "release.pt", weights_only=True)
    test_actors = summary["folds"][0]["test_actors"]
    everyone = set(load_processed(processed).meta["speaker"])
    assert released["trained_on_actors"] == sorted(everyone - set(test_actors))
    assert set(heldout["trained_on_actors"]) < set(released["trained_on_actors"])
    assert released["init_from"]["path"] == str(tmp_path / "fold0" / "model.pt")
    assert len(released["history"]) == 2 and released["train_config"]["lr"] == 0.0007
    scores = summary["folds"][0]["release"]
    assert 0 <= scores["uar"] <= 1 and scores["seconds"] > 0
    assert summary["release"]["uar"] == {"mean": round(scores["uar"], 4), "std": 0.0}
    assert summary["release"]["settings"] == {"start": "heldout", "epochs": 2, "lr": 0.0007}
    assert "| release recipe |" in format_table(summary)


@pytest.mark.slow
def test_without_validation_actors_the_release_recipe_goes_on_with_the_training_actors(
    processed, tmp_path
):
    overrides = ("split=kfold", "split.k=3", "split.val_actors=0", "release.start=heldout")
    cfg = compose_config(*TINY, *overrides, "train.epochs=1")
    summary = cross_validate(cfg, processed, tmp_path, folds=[0], release=True)
    heldout = torch.load(tmp_path / "fold0" / "model.pt", weights_only=True)
    released = torch.load(tmp_path / "fold0" / "release.pt", weights_only=True)
    assert released["trained_on_actors"] == heldout["trained_on_actors"]
    assert len(released["history"]) == 2  # TINY's release.epochs
    assert 0 <= summary["folds"][0]["release"]["uar"] <= 1


def test_a_release_from_scratch_without_new_actors_is_not_measured_twice(processed, tmp_path):
    cfg = compose_config(*TINY, "split=kfold", "split.k=3", "split.val_actors=0")
    with pytest.raises(KndError, match=r"split\.val_actors=4 .* or release\.start=heldout"):
        cross_validate(cfg, processed, tmp_path, folds=[0], release=True)
    assert not any(tmp_path.iterdir()), "refused before the first fold"
