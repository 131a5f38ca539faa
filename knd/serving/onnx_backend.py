"""The ONNX backend: an `knd export` model run by onnxruntime, so serving it needs no torch.

Audio is decoded by `Predictor.read` (`knd.audio.read_audio`: soundfile and soxr),
the same reader as the torch backend's, so both see the same samples and report a bad file alike.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from knd.config import FeatureConfig, from_dict
from knd.errors import KndError
from knd.serving.predictor import Predictor

# Metadata keys written by `knd export` (knd/models/onnx_export.py); values are JSON.
META_LABELS, META_FEATURES, META_MODEL = "knd.labels", "knd.feature_config", "knd.model_config"
META_CHECKPOINT = "knd.checkpoint_sha256"  # of the .pt file it was exported from
INPUT, OUTPUT, EMBEDDING = "waveform", "probabilities", "embedding"


class OnnxPredictor(Predictor):
    """An `knd export` model: waveform windows in, probabilities out (softmax is in the graph).

    Its second output is the pooled `embedding`; an export made before knd wrote that output
    still predicts, and is refused with a reason when embeddings are asked for.
    """

    backend = "onnx"

    def __init__(self, path: str | Path, batch_size: int = 32):
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            meta = self.session.get_modelmeta().custom_metadata_map
            labels = json.loads(meta[META_LABELS])
            cfg = from_dict(FeatureConfig, json.loads(meta[META_FEATURES]))
            self.checkpoint_sha256 = json.loads(meta.get(META_CHECKPOINT, "null"))
        except KeyError as err:
            raise KndError(
                f"{path}: ONNX model without knd metadata {err}; make it with `knd export`"
            ) from None
        except Exception as err:  # onnxruntime raises its own types for a bad file
            raise KndError(f"{path}: not a loadable ONNX model ({err})") from None
        super().__init__(labels, cfg.sample_rate, cfg.num_samples, batch_size)
        self.path = Path(path)
        self.has_embedding = EMBEDDING in {o.name for o in self.session.get_outputs()}

    def _forward(self, windows: np.ndarray, embeddings: bool) -> tuple[np.ndarray, Any]:
        if not embeddings:
            return self.session.run([OUTPUT], {INPUT: windows})[0], None
        if not self.has_embedding:
            raise KndError(
                f"{self.path}: this export has no {EMBEDDING!r} output (made by an older knd); "
                "re-export it with `knd export` for embeddings"
            )
        probabilities, vectors = self.session.run([OUTPUT, EMBEDDING], {INPUT: windows})
        return probabilities, vectors


def file_sha256(path: str | Path) -> str:
    """What an export records of its checkpoint, to tell whether it still matches it."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
