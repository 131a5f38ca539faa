"""Shared fixtures: the real `conf/` composed and shrunk, and a small real subset of RAVDESS.

Tests never invent a second configuration: they compose `conf/` like DVC does and override a few
keys (1-2 epochs, short clips, a handful of actors).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
import yaml

from knd.config import Config, compose, from_dict

ROOT = Path(__file__).resolve().parents[1]
MIRROR = ROOT.parent / "shared" / "data" / "ravdess" / "Audio_Speech_Actors_16k_dev.zip"
SUBSET_ACTORS = (2, 3, 4, 5, 6, 7, 8, 9)

# Small and fast, but the same code paths as the defaults.
TINY = (
    "features.duration=2.0",
    "split.test_actors=2",
    "split.val_actors=2",
    "train.epochs=2",
    "train.batch_size=16",
    "train.num_threads=2",
    "wandb.mode=disabled",
    "model.channels=[8,16,16,32]",
)

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def compose_dict(*overrides: str) -> dict:
    """`conf/` composed by Hydra, as DVC writes it to params.yaml."""
    return compose(ROOT / "conf", *overrides)


def compose_config(*overrides: str) -> Config:
    return from_dict(Config, compose_dict(*overrides))


def write_params(path: Path, *overrides: str) -> Path:
    path.write_text(yaml.safe_dump(compose_dict(*overrides), sort_keys=False))
    return path


requires_mirror = pytest.mark.skipif(
    not MIRROR.is_file(), reason=f"RAVDESS mirror not found at {MIRROR} (../shared is absent)"
)


@pytest.fixture(scope="session")
def subset_zip(tmp_path_factory) -> Path:
    """15 clips (every emotion and intensity, one statement and repetition) of 8 actors."""
    if not MIRROR.is_file():
        pytest.skip(f"RAVDESS mirror not found at {MIRROR} (../shared is absent)")
    out = tmp_path_factory.mktemp("subset") / "ravdess_subset.zip"
    with zipfile.ZipFile(MIRROR) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            stem = Path(name).stem.split("-")
            if len(stem) == 7 and int(stem[6]) in SUBSET_ACTORS and stem[4] == stem[5] == "01":
                dst.writestr(name, src.read(name))
    return out


@pytest.fixture(scope="session")
def processed(subset_zip, tmp_path_factory) -> Path:
    """`data/processed` of the subset, made once per session by the real stages."""
    from knd.download import download_and_extract
    from knd.make_dataset import make_dataset

    root = tmp_path_factory.mktemp("processed")
    raw = download_and_extract(str(subset_zip), None, root / "raw", root / "download")
    make_dataset(compose_config(*TINY), raw, root / "processed")
    return root / "processed"


def md5sum(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


def make_project(dest: Path, subset: Path, *overrides: str) -> Path:
    """A git clone-like copy of this project whose conf/ defaults point at `subset`, shrunk.

    The overrides go into a `conf/tiny.yaml` appended to the defaults list (and `params.yaml`),
    so both `dvc repro` and `dvc exp run -S ...` (which recomposes conf/) see them.
    """
    import shutil
    import subprocess

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
    overrides = (f"data.url={subset}", f"data.md5={md5sum(subset)}", *TINY, *overrides)
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
    import sys

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
