"""The PyTorch backend: a checkpoint's own `Classifier` (front end, normalisation, network).

torch is imported when a predictor is made, not with this module's callers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from knd.serving.predictor import Predictor


class TorchPredictor(Predictor):
    """The checkpoint's own `Classifier` (front end, normalisation, network) plus a softmax."""

    backend = "torch"

    def __init__(self, path: str | Path, batch_size: int = 32):
        from knd.models.classifier import Classifier

        self.model = Classifier.load(path)
        cfg = self.model.feature_cfg
        super().__init__(self.model.labels, cfg.sample_rate, cfg.num_samples, batch_size)

    def _forward(self, windows: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return torch.softmax(self.model(torch.from_numpy(windows)), dim=-1).numpy()
