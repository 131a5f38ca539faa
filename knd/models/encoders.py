"""Pretrained speech encoders as a frozen front end: waveform -> every layer's hidden states.

`features.kind` names a torchaudio.pipelines bundle (`wavlm_base_plus` -> `WAVLM_BASE_PLUS`).
The encoder travels as an *encoder spec*: the torchaudio builder's name, its keyword arguments
and whether the bundle layer-normalises the waveform, plus its weights. `make_dataset` caches
the hidden states it computes, and stores the spec with the data; the checkpoint stores it again,
so `predict` and `serve` run the very encoder that made the training cache, from the checkpoint
alone.

Weights are read from a local file only (the bundle's file in the torch hub cache, or
`features.encoder_weights`), never downloaded: a missing file is reported with where to get it
and where to put it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torchaudio
from torch import nn
from tqdm import tqdm

from knd.config import FeatureConfig
from knd.errors import KndError

log = logging.getLogger(__name__)

BUNDLE_URL = "https://download.pytorch.org/torchaudio/models/{}"
BUILDERS = {"WavLM": "wavlm_model", "Wav2Vec2": "wav2vec2_model"}  # torchaudio's model types
SPEC_KEYS = ("builder", "params", "normalize")


def bundle(kind: str) -> torchaudio.pipelines.Wav2Vec2Bundle:
    return getattr(torchaudio.pipelines, kind.upper())


def bundle_file(kind: str) -> Path:
    """Where torch.hub (and so the bundle's `get_model`) looks for the bundle's weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / bundle(kind)._path


def load_encoder(cfg: FeatureConfig) -> dict[str, Any]:
    """The spec and weights (`state_dict`) of `features.kind`'s encoder, from a local file."""
    b = bundle(cfg.kind)
    spec = {
        "builder": BUILDERS[b._model_type],
        "params": dict(b._params),
        "normalize": b._normalize_waveform,
    }
    path = Path(cfg.encoder_weights) if cfg.encoder_weights else bundle_file(cfg.kind)
    if not path.is_file():
        where = (
            f"features.encoder_weights={cfg.encoder_weights}"
            if cfg.encoder_weights
            else f"TORCH_HOME={Path(torch.hub.get_dir()).parent}"
        )
        raise KndError(
            f"features={cfg.kind} needs {b._path}; download it from {BUNDLE_URL.format(b._path)} "
            f"on a machine with internet and put it at {path.resolve()} ({where})"
        )
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise KndError(f"{path}: not a torch weights file ({err})") from None
    if isinstance(saved, dict) and set(SPEC_KEYS) | {"state_dict"} == set(saved):
        if saved["builder"] != spec["builder"]:
            raise KndError(
                f"{path}: a torchaudio {saved['builder']} encoder, but features={cfg.kind} is a "
                f"{spec['builder']}"
            )
        spec = {k: saved[k] for k in SPEC_KEYS}
        return {**spec, "state_dict": saved["state_dict"]}
    return {**spec, "state_dict": saved}


def save_encoder(model: nn.Module, builder: str, params: dict, normalize: bool, path: Path) -> None:
    """Write an encoder of any size as `features.encoder_weights` reads it (tests, own models)."""
    spec = {"builder": builder, "params": params, "normalize": normalize}
    torch.save({**spec, "state_dict": model.state_dict()}, path)


def encoder_spec(encoder: dict[str, Any]) -> dict[str, Any]:
    """The encoder without its weights: what a checkpoint needs to rebuild it."""
    return {k: encoder[k] for k in SPEC_KEYS}


class EncoderFrontEnd(nn.Module):
    """A frozen encoder: `(batch, samples)` -> `(batch, layers, frames, dim)`, rounded to float16.

    The layers are the outputs of every transformer layer. The rounding makes `predict` see
    exactly what `make_dataset` cached (float16, half the disk), so training and serving cannot
    drift apart. The encoder stays in eval mode (no dropout) even when the head trains.
    """

    def __init__(self, spec: dict[str, Any]):
        super().__init__()
        self.normalize = spec["normalize"]
        self.encoder = getattr(torchaudio.models, spec["builder"])(**spec["params"])
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        params = spec["params"]
        self.shape = (params["encoder_num_layers"], params["encoder_embed_dim"])
        if "state_dict" in spec:
            self.encoder.load_state_dict(spec["state_dict"])

    def train(self, mode: bool = True) -> EncoderFrontEnd:
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = wave.float()
        if self.normalize:  # each clip to zero mean, unit variance (layer_norm, exportable)
            mean, var = x.mean(dim=-1, keepdim=True), x.var(dim=-1, unbiased=False, keepdim=True)
            x = (x - mean) / (var + 1e-5).sqrt()
        layers, _ = self.encoder.extract_features(x)
        return torch.stack(layers, dim=1).half().float()


@torch.no_grad()
def encode(front_end: EncoderFrontEnd, waves: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """Hidden states of many clips as one float16 tensor, on CUDA when there is one."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    front_end = front_end.to(device).eval()
    out = None
    for start in tqdm(range(0, len(waves), batch_size), desc="encode", unit="batch", disable=None):
        states = front_end(waves[start : start + batch_size].to(device)).to("cpu", torch.float16)
        if out is None:  # filled in place: a concatenation would hold the cache twice
            out = torch.empty((len(waves), *states.shape[1:]), dtype=torch.float16)
        out[start : start + len(states)] = states
    front_end.cpu()
    log.info(
        "cached hidden states: %d clips x %d layers x %d frames x %d dims, float16, %.2f GB",
        *out.shape,
        out.numel() * 2 / 1e9,
    )
    return out
