"""Fixtures: a small real subset of RAVDESS, and its `data/processed` made by the real stages.

Tests never invent a second configuration: they compose `conf/` like DVC does and override a few
keys (1-2 epochs, short clips, a handful of actors); see `helpers.project`.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
from helpers.project import SUBSET_ACTORS, TINY, archive, compose_config

pytest_plugins = ["pytester", "helpers.strict_skips"]

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def subset_zip(tmp_path_factory) -> Path:
    """15 clips (every emotion and intensity, one statement and repetition) of 8 actors."""
    out = tmp_path_factory.mktemp("subset") / "ravdess_subset.zip"
    with zipfile.ZipFile(archive()) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            stem = Path(name).stem.split("-")
            if len(stem) == 7 and int(stem[6]) in SUBSET_ACTORS and stem[4] == stem[5] == "01":
                dst.writestr(name, src.read(name))
    return out


@pytest.fixture(scope="session")
def processed(subset_zip, tmp_path_factory) -> Path:
    """`data/processed` of the subset, made once per session by the real stages."""
    from knd.data.download import download_and_extract
    from knd.data.make_dataset import make_dataset

    root = tmp_path_factory.mktemp("processed")
    raw = download_and_extract(str(subset_zip), None, root / "raw", root / "download")
    make_dataset(compose_config(*TINY), raw, root / "processed")
    return root / "processed"
