"""Tiny real checkpoints: randomly initialised (seeded), saved by the real `Classifier.save`."""

from __future__ import annotations

from pathlib import Path

import torch

from knd.config import FeatureConfig, ModelConfig
from knd.data.ravdess import EMOTIONS
from knd.models.classifier import Classifier

LABELS = list(EMOTIONS)


def make_checkpoint(path: Path, model: ModelConfig | None = None) -> Path:
    """A real, randomly initialised (seeded) 2 s checkpoint: no training needed."""
    torch.manual_seed(0)
    model = model or ModelConfig(name="cnn", channels=[8, 16])
    mean, std = torch.full((64,), -6.0), torch.full((64,), 3.0)  # log-mel scale of speech
    Classifier(model, FeatureConfig(duration=2.0), LABELS, mean, std).save(path, history=[])
    return path
