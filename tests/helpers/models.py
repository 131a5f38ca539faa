"""Tiny real checkpoints: randomly initialised (seeded), saved by the real `Classifier.save`."""

from __future__ import annotations

from pathlib import Path

import torch

from helpers.project import compose_config
from knd.data.ravdess import EMOTIONS
from knd.models.classifier import Classifier

LABELS = list(EMOTIONS)
TINY_CNN = ("model=cnn", "model.channels=[8,16]")


def make_checkpoint(path: Path, *overrides: str) -> Path:
    """A real, randomly initialised (seeded) 2 s checkpoint: no training needed.

    `overrides` (Hydra, on the real `conf/`) choose the model; without them, a two-block cnn.
    """
    torch.manual_seed(0)
    cfg = compose_config("features.duration=2.0", *(overrides or TINY_CNN))
    bins = cfg.features.num_bins
    mean, std = torch.full((bins,), -6.0), torch.full((bins,), 3.0)  # log-mel scale of speech
    Classifier(cfg.model, cfg.features, LABELS, mean, std).save(path, history=[])
    return path
