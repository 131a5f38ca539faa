"""End to end through DVC on a small real subset: all six stages, outputs, and caching."""

import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from helpers.project import git_env, make_project

STAGES = ("download", "make_dataset", "train", "evaluate", "robustness", "plot")


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
    project = make_project(tmp_path_factory.mktemp("project"), subset_zip)
    assert ran(dvc(project, "repro")) == list(STAGES)
    return project


@pytest.mark.slow
def test_all_stages_write_sensible_outputs(project):
    summary = json.loads((project / "data/processed/summary.json").read_text())
    assert summary["kept"] == 120 and summary["skipped"] == 0
    metrics = json.loads((project / "reports/metrics.json").read_text())
    for key in ("accuracy", "uar", "f1_macro", "f1_weighted"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["split"] == "actor" and metrics["test_actors"] == 2
    checkpoint = torch.load(project / "models/model.pt", weights_only=True)
    assert checkpoint["labels"][0] == "neutral" and checkpoint["model_config"]["name"] == "sernet"
    figures = {p.name for p in (project / "reports/figures").glob("*.png")}
    assert figures == {
        "training_curves.png",
        "confusion_matrix.png",
        "per_class.png",
        "emotion_examples.png",
    }
    assert (project / "dvclive/metrics.json").is_file()
    robustness = json.loads((project / "reports/robustness.json").read_text())
    assert robustness["clips"] == 30 and "reverb RT60 0.8 s" in robustness["conditions"]
    assert (project / "reports/robustness.png").is_file()
    assert "reports/metrics.json" in dvc(project, "metrics", "show", "--json")


@pytest.mark.slow
def test_caching_reruns_exactly_what_changed(project):
    assert ran(dvc(project, "repro")) == []

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["lr"] = params["train"]["lr"] / 2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(dvc(project, "repro")) == ["train", "evaluate", "robustness", "plot"]

    params["features"]["n_mels"] = 48
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(dvc(project, "repro")) == ["make_dataset", "train", "evaluate", "robustness", "plot"]


@pytest.mark.slow
def test_exp_run_set_params_recomposes_conf(project):
    out = dvc(project, "exp", "run", "-S", "model=cnn", "-S", "train.epochs=1")
    assert "train" in ran(out)
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["model"]["name"] == "cnn" and params["train"]["optimizer"] == "adam"
    assert params["train"]["epochs"] == 1
    shown = json.loads(dvc(project, "exp", "show", "--json"))
    assert shown, "dvc exp show lists the experiment"
