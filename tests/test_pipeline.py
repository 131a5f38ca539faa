"""End to end through DVC on a small real subset: all six stages, outputs, and caching."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers.project import experiments, git_env, make_project, md5sum, run

from knd.serving.predict import load_predictor

STAGES = (
    "download",
    "make_dataset",
    "train",
    "evaluate",
    "robustness",
    "plot",
    "release",
    "export",
)


def dvc(project: Path, *args: str) -> str:
    done = subprocess.run(
        ["dvc", *args], cwd=project, env=git_env(), capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def ran(output: str) -> list[str]:
    return [s for s in STAGES if f"Running stage '{s}'" in output]


@pytest.fixture(scope="module")
def project(subset_zip, tmp_path_factory) -> Path:
    # the default's split: no validation actors (the shrunk configuration's other tests have 2)
    project = make_project(tmp_path_factory.mktemp("project"), subset_zip, "split.val_actors=0")
    assert ran(dvc(project, "repro")) == list(STAGES)
    return project


@pytest.mark.slow
def test_all_stages_write_outputs_that_agree(project):
    summary = json.loads((project / "data/processed/summary.json").read_text())
    assert summary["kept"] == 120 and summary["skipped"] == 0
    meta = pd.read_csv(project / "data/processed/metadata.csv")
    checkpoint = torch.load(project / "models/heldout.pt", weights_only=True)
    assert checkpoint["labels"][0] == "neutral" and checkpoint["model_config"]["name"] == "sernet"
    # the release: every actor, the held-out model's numbers, and its ONNX export beside it
    released = torch.load(project / "models/model.pt", weights_only=True)
    assert released["trained_on_actors"] == sorted(set(meta["speaker"]))
    assert released["heldout"]["trained_on_actors"] == checkpoint["trained_on_actors"]
    assert set(checkpoint["trained_on_actors"]) == set(
        meta.loc[meta["split"] == "train", "speaker"]
    )
    assert set(meta["split"]) == {"train", "test"}

    # metrics.json is what predictions.csv says, on actors that training never heard
    metrics = json.loads((project / "reports/metrics.json").read_text())
    predictions = pd.read_csv(project / "reports/predictions.csv")
    assert metrics["split"] == "actor" and metrics["test_clips"] == len(predictions) == 2 * 15
    assert set(predictions["actual"]) == set(checkpoint["labels"])  # every class is tested
    hits = predictions["actual"] == predictions["predicted"]
    assert metrics["accuracy"] == pytest.approx(hits.mean(), abs=1e-4)
    assert metrics["uar"] == pytest.approx(
        hits.groupby(predictions["actual"]).mean().mean(), abs=1e-4
    )
    cm = np.array(json.loads((project / "reports/evaluation.json").read_text())["confusion_matrix"])
    assert cm.sum() == len(predictions) and np.trace(cm) == hits.sum()
    tested = {int(Path(path).stem.split("-")[6]) for path in predictions["path"]}
    assert len(tested) == metrics["test_actors"] == 2
    assert tested == set(meta.loc[meta["split"] == "test", "speaker"])
    assert not tested & set(meta.loc[meta["split"] != "test", "speaker"])

    figures = {p.name: p.read_bytes() for p in (project / "reports/figures").iterdir()}
    assert sorted(figures) == [
        "confusion_matrix.png",
        "emotion_examples.png",
        "per_class.png",
        "reliability.png",
        "training_curves.png",
    ]
    assert all(data.startswith(b"\x89PNG\r\n\x1a\n") for data in figures.values())
    assert (project / "dvclive/metrics.json").is_file()
    robustness = json.loads((project / "reports/robustness.json").read_text())
    assert (
        robustness["clips"] == len(predictions) and "reverb RT60 0.8 s" in robustness["conditions"]
    )
    assert (project / "reports/robustness.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert released["heldout"]["metrics"] == metrics and 0 <= metrics["ece"] <= 1
    assert load_predictor(project / "models/model.pt").backend == "onnx"  # the fresh export
    shown = json.loads(dvc(project, "metrics", "show", "--json"))
    assert shown[""]["data"]["reports/metrics.json"]["data"] == metrics


@pytest.mark.slow
def test_caching_reruns_exactly_what_changed(project):
    assert ran(dvc(project, "repro")) == []

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["lr"] = params["train"]["lr"] / 2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    after_train = ["train", "evaluate", "robustness", "plot", "release", "export"]
    assert ran(dvc(project, "repro")) == after_train

    params["features"]["n_mels"] = 48
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(dvc(project, "repro")) == ["make_dataset", *after_train]


@pytest.mark.slow
def test_exp_run_set_params_recomposes_conf(project):
    out = dvc(project, "exp", "run", "-S", "model=cnn", "-S", "train.epochs=1")
    assert "train" in ran(out)
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["model"]["name"] == "cnn" and params["train"]["optimizer"] == "adam"
    assert params["train"]["epochs"] == 1
    (shown,) = experiments(json.loads(dvc(project, "exp", "show", "--json")))
    assert shown["params"]["params.yaml"]["data"] == params
    assert shown["metrics"]["reports/metrics.json"]["data"] == json.loads(
        (project / "reports/metrics.json").read_text()
    )


@pytest.mark.slow
def test_data_given_once_is_kept_by_later_experiments(subset_zip, tmp_path):
    """`make pipeline DATA=...` writes conf/site/local.yaml, which every `dvc exp run` composes:
    a later plain `dvc exp run -S train.epochs=1` reruns training on the same data, and neither
    downloads (Zenodo, unreachable here) nor remakes the dataset."""
    project = make_project(tmp_path, None)
    assert "zenodo.org" in yaml.safe_load((project / "params.yaml").read_text())["data"]["url"]
    make = ["make", "-o", ".venv/.installed", "pipeline"]  # the test's venv, not a new one
    out = run(project, *make, f"DATA={subset_zip}", f"DATA_MD5={md5sum(subset_zip)}", env=git_env())
    assert ran(out) == list(STAGES)
    params = yaml.safe_load((project / "params.yaml").read_text())["data"]
    assert params["source"] == "local" and params["path"] == str(subset_zip)

    out = dvc(project, "exp", "run", "-S", "train.epochs=1")
    assert ran(out) == ["train", "evaluate", "robustness", "plot", "release", "export"]
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["data"]["path"] == str(subset_zip) and params["train"]["epochs"] == 1
