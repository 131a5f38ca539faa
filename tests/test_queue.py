"""A queued hyperparameter sweep, the way docs/experiments.md tells people to run one.

`dvc exp run --queue -S 'train.lr=a,b'` stashes one experiment per value; `dvc queue start`
runs them in temporary clones of the repo, which see only what Git and DVC track. That is what
this checks: from a clean commit, on the tiny subset, both succeed and report params and metrics.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from helpers.project import experiments, git_env, make_project, run

LRS = (0.001, 0.0003)


def wait_for_queue(project: Path, timeout: float = 900) -> str:
    """Poll `dvc queue status` until nothing is queued or running; returns the last status."""
    deadline = time.monotonic() + timeout
    while True:
        status = run(project, "dvc", "queue", "status", env=git_env())
        tasks = [line.split()[-1] for line in status.splitlines()[1:] if line.strip()]
        if not {"Queued", "Running"} & set(tasks):
            return status
        assert time.monotonic() < deadline, f"queue still busy after {timeout:.0f} s:\n{status}"
        time.sleep(5)


def failure_logs(project: Path, status: str) -> str:
    failed = [line.split()[0] for line in status.splitlines() if line.endswith("Failed")]
    return "\n".join(run(project, "dvc", "queue", "logs", task, env=git_env()) for task in failed)


@pytest.mark.slow
def test_queued_sweep_runs_every_point(tmp_path: Path, subset_zip: Path):
    project = make_project(tmp_path / "project", subset_zip)
    sweep = "train.lr=" + ",".join(map(str, LRS))
    run(project, "dvc", "exp", "run", "--queue", "-S", sweep, env=git_env())
    assert run(project, "dvc", "queue", "status", env=git_env()).count("Queued") == 2

    try:
        run(project, "dvc", "queue", "start", "-j", "1", env=git_env())  # 2 cores: one at a time
        status = wait_for_queue(project)
    finally:
        subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=project, env=git_env())
    assert status.count("Success") == 2, status + failure_logs(project, status)

    show = json.loads(run(project, "dvc", "exp", "show", "--json", env=git_env()))
    done = experiments(show)
    assert sorted(d["params"]["params.yaml"]["data"]["train"]["lr"] for d in done) == sorted(LRS)
    for data in done:
        params = data["params"]["params.yaml"]["data"]
        assert params["train"]["epochs"] == 2  # conf/tiny.yaml survived the recomposition
        assert params["data"]["url"] == str(subset_zip)
        scores = data["metrics"]["reports/metrics.json"]["data"]
        assert 0 <= scores["uar"] <= 1 and scores["test_clips"] > 0
        assert "val" in data["metrics"]["dvclive/metrics.json"]["data"]
    table = run(project, "dvc", "exp", "show", "--md", "--only-changed", env=git_env())
    assert table.count("\n|") >= 3  # header, rule, one row per experiment at least
