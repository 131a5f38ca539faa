"""`data/processed`: what `make_dataset` writes and `train`, `evaluate`, `cv` and `plot` read.

The format lives here, apart from the code that makes it, so the stages that only read it do not
depend on decoding or splitting code.

Every clip is kept whole, as 16-bit samples laid end to end (`audio`, clip `i` between
`offsets[i]` and `offsets[i + 1]`): evaluation scores whole clips the way `knd predict` does,
while training takes fixed-length centre crops (`waves`), whose features are stored precomputed
(with encoder features: every layer's hidden states, float16, and the encoder that made them).
Samples are scaled by 2^15 as libsndfile reads 16-bit PCM, so a 16-bit source already at
`features.sample_rate` is stored exactly as `knd predict` reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from knd.config import FeatureConfig, from_dict
from knd.errors import KndError
from knd.files import replacing
from knd.models.features import fix_length

FEATURES_FILE = "features.pt"
METADATA_FILE = "metadata.csv"
SUMMARY_FILE = "summary.json"
INT16_SCALE = 32768


def to_int16(wave: np.ndarray) -> np.ndarray:
    """Float samples -> int16, the inverse of `Processed.clip`; out-of-range ones are clipped."""
    return np.clip(np.round(wave * INT16_SCALE), -INT16_SCALE, INT16_SCALE - 1).astype(np.int16)


@dataclass
class Processed:
    """What `make_dataset` wrote, as `train`, `evaluate` and `plot` read it."""

    audio: torch.Tensor
    offsets: torch.Tensor
    features: torch.Tensor
    target: torch.Tensor
    labels: list[str]
    mean: torch.Tensor
    std: torch.Tensor
    feature_config: dict
    encoder: dict | None
    split_strategy: str
    meta: pd.DataFrame

    def indices(self, split: str) -> torch.Tensor:
        return torch.from_numpy(np.flatnonzero(self.meta["split"].to_numpy() == split))

    def clip(self, i: int) -> np.ndarray:
        """Clip `i` whole, as float32 samples at `features.sample_rate`."""
        samples = self.audio[self.offsets[i] : self.offsets[i + 1]].numpy()
        return samples.astype(np.float32) / INT16_SCALE

    def waves(self, index: torch.Tensor) -> torch.Tensor:
        """Clips `index` centre-cropped or padded to the training length, as in training."""
        size = from_dict(FeatureConfig, self.feature_config).num_samples
        return torch.stack([fix_length(torch.from_numpy(self.clip(i)), size) for i in index])


def load_processed(data_dir: Path = Path("data/processed")) -> Processed:
    try:
        # memory-mapped: an encoder's cached states can be larger than the memory
        data = torch.load(data_dir / FEATURES_FILE, weights_only=True, mmap=True)
        meta = pd.read_csv(data_dir / METADATA_FILE)
    except FileNotFoundError as err:
        raise KndError(f"{err.filename}: not found; run `knd make-dataset` first") from None
    if set(data) != {f.name for f in fields(Processed)} - {"meta"}:
        raise KndError(
            f"{data_dir / FEATURES_FILE}: written by another version of knd; "
            "run `knd make-dataset` again"
        )
    return Processed(meta=meta, **data)


def save_processed(out_dir: Path, data: dict, meta: pd.DataFrame, summary: dict) -> None:
    """The three files appear together or not at all: a stage reads them as one."""
    with replacing(out_dir) as tmp:
        tmp.mkdir()
        torch.save(data, tmp / FEATURES_FILE)
        meta.to_csv(tmp / METADATA_FILE, index=False)
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
