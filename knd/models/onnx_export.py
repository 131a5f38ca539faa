"""Export a checkpoint to one self-contained ONNX file: waveform batch in, probabilities out.

The graph is the whole `Classifier` (log-mel/MFCC front end or a pretrained encoder, normalisation,
network) followed by a softmax. Its input `waveform` is `(batch, samples)` float32 at the training
sample rate and length (`features.duration`; windowing longer clips stays in `knd.serving.predict`),
with a dynamic batch axis; its outputs are `probabilities`, `(batch, classes)`, and `embedding`,
`(batch, dim)`: the pooled vector the last layer classifies (`Classifier.forward_with_embedding`).
Labels and the feature and model configs are stored as JSON metadata, so the .onnx file alone is
enough to predict; so is the checkpoint's sha256, so that `load_predictor` runs an export beside its
checkpoint instead of it only while it was made from that very file.

`torch.stft` returns complex tensors, which the TorchScript exporter cannot write, so the
exported front end computes the same STFT as a strided conv1d with a fixed windowed-DFT basis.
Every export is checked against the checkpoint on onnxruntime before it is written.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from knd.config import FeatureConfig, to_dict
from knd.errors import KndError
from knd.files import replacing
from knd.models.classifier import Classifier
from knd.models.features import FrontEnd
from knd.serving.onnx_backend import (
    EMBEDDING,
    INPUT,
    META_CHECKPOINT,
    META_FEATURES,
    META_LABELS,
    META_MODEL,
    OUTPUT,
    file_sha256,
)

OPSET = 17
TOLERANCE = 1e-4  # max |probability difference| between the export and the checkpoint
EMBEDDING_TOLERANCE = 1e-4  # max |embedding difference| / max |embedding|, the same check


class DftFrontEnd(FrontEnd):
    """`FrontEnd` whose power spectrogram is a conv1d with windowed cos/sin DFT kernels.

    Same framing as `torch.stft(center=True, pad_mode="reflect")`: reflect-pad n_fft // 2 on
    both sides, the window centred in n_fft, one-sided bins. The mel/DCT buffers and the rest of
    `forward` are inherited, so only the STFT differs from training, by float32 rounding.
    """

    def __init__(self, cfg: FeatureConfig):
        super().__init__(cfg)
        n_fft, left = cfg.n_fft, (cfg.n_fft - cfg.win_length) // 2
        window = nn.functional.pad(self.window.double(), (left, n_fft - cfg.win_length - left))
        phase = torch.outer(torch.arange(n_fft // 2 + 1), torch.arange(n_fft)) % n_fft
        angle = 2 * math.pi * phase.double() / n_fft
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window
        self.register_buffer("dft", basis.float().unsqueeze(1), persistent=False)

    def power_spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        pad = self.cfg.n_fft // 2
        frames = nn.functional.pad(wave.unsqueeze(1), (pad, pad), mode="reflect")
        real, imag = nn.functional.conv1d(frames, self.dft, stride=self.cfg.hop_length).chunk(2, 1)
        return real.square() + imag.square()  # (batch, freqs, frames)


class Exportable(nn.Module):
    """A copy of a `Classifier` with the DFT front end: waveform -> (probabilities, embedding)."""

    def __init__(self, model: Classifier):
        super().__init__()
        self.model = copy.deepcopy(model)
        if not model.feature_cfg.is_encoder:  # an encoder has no STFT
            self.model.front_end = DftFrontEnd(model.feature_cfg)
        self.eval()

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, embedding = self.model.forward_with_embedding(wave)
        return torch.softmax(logits, dim=-1), embedding


def export_onnx(model_path: str | Path, out_path: str | Path) -> float:
    """Write the ONNX export of a checkpoint; return its max probability difference from it."""
    import onnx

    model = Classifier.load(model_path)
    out_path = Path(out_path)
    with replacing(out_path) as tmp:
        _export_graph(model, tmp)
        proto = onnx.load(tmp)
        for key, value in (
            (META_LABELS, model.labels),
            (META_FEATURES, to_dict(model.feature_cfg)),
            (META_MODEL, to_dict(model.model_cfg)),
            (META_CHECKPOINT, file_sha256(model_path)),
        ):
            proto.metadata_props.add(key=key, value=json.dumps(value))
        proto.doc_string = (
            f"knd {model.model_cfg.name} ({Path(model_path).name}): "
            "waveform -> probabilities, embedding"
        )
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        difference, embedding_difference = _check(model, tmp)
        if difference > TOLERANCE or embedding_difference > EMBEDDING_TOLERANCE:
            raise KndError(
                f"{out_path}: export differs from {model_path} by {difference:.2e} in "
                f"probability (limit {TOLERANCE}), {embedding_difference:.2e} in embedding "
                f"relative to its largest value (limit {EMBEDDING_TOLERANCE})"
            )
    return difference


def _export_graph(model: Classifier, path: Path) -> None:
    example = torch.zeros(1, model.feature_cfg.num_samples)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated, but unlike dynamo it needs no onnxscript; and
        # reflect padding's reversed pad list cannot be constant-folded (harmless).
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", "Constant folding", UserWarning)
        # torchaudio's encoders check shapes in Python: constant for the fixed window length,
        # and the batch axis is checked on onnxruntime below
        warnings.filterwarnings("ignore", "Converting a tensor to a Python boolean")
        torch.onnx.export(
            Exportable(model),
            (example,),
            path,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT],
            output_names=[OUTPUT, EMBEDDING],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}, EMBEDDING: {0: "batch"}},
        )


def _check(model: Classifier, onnx_path: Path) -> tuple[float, float]:
    """Max |probability difference|, and max |embedding difference| relative to the largest
    embedding value, on a noisy sweep and white noise, speech's broad spectra.

    (A pure tone would exaggerate float32 rounding: most mel bands hold almost no energy.)
    """
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    t = np.arange(model.feature_cfg.num_samples) / model.feature_cfg.sample_rate
    sweep = 0.3 * np.sin(2 * np.pi * (100 + 1000 * t) * t) + 0.01 * rng.standard_normal(len(t))
    waves = np.stack([sweep, 0.1 * rng.standard_normal(len(t))]).astype(np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got, got_embedding = session.run([OUTPUT, EMBEDDING], {INPUT: waves})
    with torch.inference_mode():
        logits, embedding = model.forward_with_embedding(torch.from_numpy(waves))
    want, want_embedding = torch.softmax(logits, dim=-1).numpy(), embedding.numpy()
    scale = max(float(np.abs(want_embedding).max()), 1e-12)
    return (
        float(np.abs(got - want).max()),
        float(np.abs(got_embedding - want_embedding).max()) / scale,
    )
