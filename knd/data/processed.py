"""`data/processed`: what `make_dataset` writes and `train`, `evaluate`, `cv` and `plot` read.

The format lives here, apart from the code that makes it, so the stages that only read it do not
depend on decoding or splitting code.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from knd.errors import KndError

FEATURES_FILE = "features.pt"
METADATA_FILE = "metadata.csv"
SUMMARY_FILE = "summary.json"


@dataclass
class Processed:
    """What `make_dataset` wrote, as `train`, `evaluate` and `plot` read it."""

    audio: torch.Tensor
    features: torch.Tensor
    target: torch.Tensor
    labels: list[str]
    mean: torch.Tensor
    std: torch.Tensor
    feature_config: dict
    split_strategy: str
    meta: pd.DataFrame

    def indices(self, split: str) -> torch.Tensor:
        return torch.from_numpy(np.flatnonzero(self.meta["split"].to_numpy() == split))

    def waves(self, index: torch.Tensor) -> torch.Tensor:
        return self.audio[index].float() / 32767


def load_processed(data_dir: Path = Path("data/processed")) -> Processed:
    try:
        data = torch.load(data_dir / FEATURES_FILE, weights_only=True)
        meta = pd.read_csv(data_dir / METADATA_FILE)
    except FileNotFoundError as err:
        raise KndError(f"{err.filename}: not found; run `knd make-dataset` first") from None
    return Processed(meta=meta, **data)


def save_processed(out_dir: Path, data: dict, meta: pd.DataFrame, summary: dict) -> None:
    """Write into a temporary sibling, then swap it in: the outputs appear whole or not at all."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(data, tmp / FEATURES_FILE)
    meta.to_csv(tmp / METADATA_FILE, index=False)
    (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
