"""The project as tests see it: the real `conf/` composed and shrunk, throwaway DVC projects."""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from knd.cli import main
from knd.config import Config, compose, from_dict

ROOT = Path(__file__).resolve().parents[2]
# The RAVDESS zip real-audio tests read: $KND_TEST_ARCHIVE (CI: Zenodo's 24 actors at 48 kHz),
# else the offline mirror in ../shared (20 actors at 16 kHz). Tests must hold for either.
ARCHIVE = Path(
    os.environ.get("KND_TEST_ARCHIVE")
    or ROOT.parent / "shared" / "data" / "ravdess" / "Audio_Speech_Actors_16k_dev.zip"
)
SUBSET_ACTORS = (2, 3, 4, 5, 6, 7, 8, 9)  # in both archives

# Small and fast, but the same code paths as the defaults.
TINY = (
    "features.duration=2.0",
    "split.test_actors=2",
    "split.val_actors=2",
    "train.epochs=2",
    "train.batch_size=16",
    "train.num_threads=2",
    "release.epochs=2",
    "wandb.mode=disabled",
    "model.channels=[8,16,16,32]",
)


def archive() -> Path:
    """The RAVDESS archive, or skip the test saying where it was looked for."""
    if not ARCHIVE.is_file():
        pytest.skip(f"RAVDESS archive not found at {ARCHIVE} (set KND_TEST_ARCHIVE)")
    return ARCHIVE


def compose_dict(*overrides: str) -> dict:
    """`conf/` composed by Hydra, as DVC writes it to params.yaml (a copy: callers may edit it)."""
    return copy.deepcopy(_composed(overrides))


@functools.cache
def _composed(overrides: tuple[str, ...]) -> dict:
    # Hydra takes ~0.5 s, and tests compose often. `~site`: never this machine's data choice
    # (conf/site/local.yaml, written by `make pipeline DATA=...`).
    return compose(ROOT / "conf", "~site", *overrides)


def compose_config(*overrides: str) -> Config:
    return from_dict(Config, compose_dict(*overrides))


def write_params(path: Path, *overrides: str) -> Path:
    path.write_text(yaml.safe_dump(compose_dict(*overrides), sort_keys=False))
    return path


def md5sum(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_project(dest: Path, subset: Path | None, *overrides: str) -> Path:
    """A git clone-like copy of this project whose conf/ defaults point at `subset`, shrunk.

    The overrides go into a `conf/tiny.yaml` appended to the defaults list (and `params.yaml`),
    so both `dvc repro` and `dvc exp run -S ...` (which recomposes conf/) see them. Without
    `subset`, the data stays conf/'s default (Zenodo) until the test chooses another.
    """
    files = subprocess.run(
        ["git", "ls-files"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    data = (f"data.url={subset}", f"data.md5={md5sum(subset)}") if subset else ()
    overrides = (*data, *TINY, *overrides)
    tiny: dict = {}
    for item in overrides:
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        tiny.setdefault(section, {})[name] = yaml.safe_load(value)
    (dest / "conf/tiny.yaml").write_text("# @package _global_\n" + yaml.safe_dump(tiny))
    config = yaml.safe_load((dest / "conf/config.yaml").read_text())
    config["defaults"].append("tiny")
    (dest / "conf/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    composed = compose(dest / "conf")
    (dest / "params.yaml").write_text(yaml.safe_dump(composed, sort_keys=False))
    env = git_env()
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=dest, check=True, env=env)
    return dest


def git_env() -> dict[str, str]:
    """Environment for git/DVC subprocesses: an identity, the venv's `knd` on PATH, no telemetry."""
    env = dict(os.environ)
    env.update(
        GIT_AUTHOR_NAME="knd test",
        GIT_AUTHOR_EMAIL="test@knd.invalid",
        GIT_COMMITTER_NAME="knd test",
        GIT_COMMITTER_EMAIL="test@knd.invalid",
        DVC_NO_ANALYTICS="1",
        WANDB_MODE="disabled",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def run(cwd: Path, *args: str | Path, env: dict | None = None) -> str:
    """Run a command to completion (15 min at most); fail the test with its output if it fails."""
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`knd ARGS` in-process through the real entry point: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["knd", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()
    return exit_.value.code or 0, out, err


def experiments(show: list[dict]) -> list[dict]:
    """The experiments' `data` blocks from `dvc exp show --json`, under any baseline."""
    return [
        rev["data"]
        for baseline in show
        for exp in baseline.get("experiments") or []
        for rev in exp["revs"]
    ]
