"""The PyTorch backend: a checkpoint's own `Classifier` (front end, normalisation, network).

torch is imported when a predictor is made, not with this module's callers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from knd.serving.predictor import Predictor

if TYPE_CHECKING:
    from knd.models.classifier import Classifier


class TorchPredictor(Predictor):
    """The checkpoint's own `Classifier` (front end, normalisation, network) plus a softmax.

    `model` is a checkpoint file, or a `Classifier` in memory (evaluation during training): that
    one is switched to eval mode and scored on its own device.
    """

    backend = "torch"

    def __init__(self, model: str | Path | Classifier, batch_size: int = 32):
        from knd.models.classifier import Classifier

        self.model = model.eval() if isinstance(model, Classifier) else Classifier.load(model)
        cfg = self.model.feature_cfg
        super().__init__(self.model.labels, cfg.sample_rate, cfg.num_samples, batch_size)

    def _forward(self, windows: np.ndarray, embeddings: bool) -> tuple[np.ndarray, Any]:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(windows).to(self.model.mean.device)
            if not embeddings:
                return torch.softmax(self.model(x).float(), dim=-1).cpu().numpy(), None
            logits, vectors = self.model.forward_with_embedding(x)
            return torch.softmax(logits.float(), -1).cpu().numpy(), vectors.float().cpu().numpy()
