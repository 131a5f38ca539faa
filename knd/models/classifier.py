"""Waveform in, logits out: front end + normalisation + network, saved as one checkpoint.

A checkpoint carries everything prediction needs (weights, model and feature config,
normalisation statistics, label names; with encoder features, the frozen encoder's spec and
weights too), so `predict`, `serve` and `export` never read `params.yaml` or the training data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from knd.config import FeatureConfig, ModelConfig, from_dict, to_dict
from knd.errors import KndError
from knd.files import replacing
from knd.models.encoders import EncoderFrontEnd, encoder_spec
from knd.models.features import FrontEnd
from knd.models.networks import build_model

# Bump when a checkpoint written before would load but mean something else (a config key's
# meaning or default, the weights' layout): older files are then refused, never reinterpreted.
# 2: stored configs hold every key (format 1 files lacking features.log_floor were read with a
#    code default that has since changed).
# 3: a calibration temperature divides the logits.
# 4: an `encoder` entry (a pretrained encoder's spec, or None) and `features.encoder_weights`.
CHECKPOINT_FORMAT = 4


class Classifier(nn.Module):
    """`encoder`: with encoder features, the encoder's spec (`knd.models.encoders`), with its
    weights (`state_dict`) when they are not loaded afterwards with the checkpoint's."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        feature_cfg: FeatureConfig,
        labels: list[str],
        mean: torch.Tensor,
        std: torch.Tensor,
        encoder: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.model_cfg, self.feature_cfg, self.labels = model_cfg, feature_cfg, list(labels)
        self.encoder = None if encoder is None else encoder_spec(encoder)
        if feature_cfg.is_encoder:
            if encoder is None:
                raise KndError(f"features.kind={feature_cfg.kind} needs its encoder")
            self.front_end = EncoderFrontEnd(encoder)
            input_shape = self.front_end.shape  # statistics per layer and dimension
            stats_shape = (1, input_shape[0], 1, input_shape[1])
        else:
            self.front_end = FrontEnd(feature_cfg)
            input_shape, stats_shape = (feature_cfg.num_bins,), (1, 1, -1, 1)
        self.register_buffer("mean", mean.reshape(stats_shape).float().clone())
        self.register_buffer("std", std.reshape(stats_shape).float().clone())
        self.net = build_model(model_cfg, len(labels), *input_shape)
        # Logits are divided by it: fitted on held-out clips after training (1 = uncalibrated)
        self.register_buffer("temperature", torch.ones(()))

    def normalise(self, features: torch.Tensor) -> torch.Tensor:
        """Raw `(batch, bins, frames)` features -> normalised `(batch, 1, bins, frames)` input;
        an encoder's `(batch, layers, frames, dim)` keeps its shape."""
        x = features if self.feature_cfg.is_encoder else features.unsqueeze(1)
        return (x - self.mean) / self.std

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalise(self.front_end(wave))) / self.temperature

    def forward_with_embedding(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, pooled embedding): the vector the network's last linear layer classifies.

        An ensemble's is its members' concatenated (`knd.models.networks.Ensemble`).
        """
        logits, embedding = self.net.forward_with_embedding(self.normalise(self.front_end(wave)))
        return logits / self.temperature, embedding

    def save(self, path: str | Path, **extra: Any) -> None:
        """Write the checkpoint atomically: a killed save never leaves a file that loads."""
        state = {
            "format": CHECKPOINT_FORMAT,
            "model_config": to_dict(self.model_cfg),
            "feature_config": to_dict(self.feature_cfg),
            "labels": self.labels,
            "encoder": self.encoder,
            "state_dict": self.state_dict(),
            **extra,
        }
        with replacing(path) as tmp:
            torch.save(state, tmp)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> Classifier:
        """The checkpoint's model in eval mode, or `KndError` naming the file and what is wrong.

        A checkpoint saved by an older knd whose architecture has since changed is reported as
        stale, with its first mismatching weight, instead of torch's wall of size mismatches.
        """
        return cls.from_checkpoint(read_checkpoint(path, map_location), path)

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], path: str | Path) -> Classifier:
        """`load` for a checkpoint already read by `read_checkpoint` (`path` names it in errors)."""
        model_cfg = state.get("model_config")
        name = model_cfg.get("name", "model") if isinstance(model_cfg, dict) else "model"
        try:
            weights = state["state_dict"]
            model = cls(
                from_dict(ModelConfig, model_cfg, "model."),
                from_dict(FeatureConfig, state["feature_config"], "features."),
                state["labels"],
                weights["mean"],
                weights["std"],
                state["encoder"],
            )
        except KeyError as err:
            raise _stale(path, name, f"no {err.args[0]!r} in the checkpoint") from None
        except KndError as err:  # a config key or value this version no longer accepts
            raise _stale(path, name, str(err)) from None
        if mismatch := _first_mismatch(model.state_dict(), weights):
            raise _stale(path, name, mismatch)
        model.load_state_dict(weights)
        return model.eval()


def _first_mismatch(expected: dict[str, torch.Tensor], found: dict[str, Any]) -> str | None:
    """The first weight the code and the checkpoint disagree on, in the code's order."""
    for key, tensor in expected.items():
        if key not in found:
            return f"{key} missing from the checkpoint"
        shape = getattr(found[key], "shape", None)
        if shape != tensor.shape:
            got, want = _shape(shape), _shape(tensor.shape)
            return f"{key} has shape {got} in the checkpoint, {want} in the code"
    for key in found:
        if key not in expected:
            return f"{key} in the checkpoint is not in the code"
    return None


def _shape(shape: Any) -> str:
    return str(list(shape)) if shape is not None else "no tensor"


def _stale(path: str | Path, name: str, detail: str) -> KndError:
    return KndError(
        f"{path}: checkpoint does not match this version of knd's {name} ({detail}); "
        "retrain with `knd train`"
    )


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise KndError(f"{path}: model checkpoint not found; train one with `knd train`")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise KndError(f"{path}: not a knd checkpoint ({err})") from None
    if not isinstance(state, dict) or "format" not in state:
        raise KndError(f"{path}: not a knd checkpoint (no format number)")
    if state["format"] != CHECKPOINT_FORMAT:
        raise KndError(
            f"{path}: checkpoint format {state['format']!r}, but this knd reads format "
            f"{CHECKPOINT_FORMAT}; retrain with `knd train`"
        )
    return state
