"""Fine-tuning (`train.init_from`): start from a trained checkpoint and learn new labels.

Only the output layer's shape depends on the labels, so it is all that changes: kept when the new
labels are the checkpoint's (in any order: its rows follow the labels), new otherwise; every other
weight is the checkpoint's. The encoder learnt on the checkpoint's front end and architecture, so
those must be the composed ones: a mismatch is refused with the keys to set, rather than the
checkpoint's taken behind the user's back (params.yaml then always says what was trained).
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from knd.config import to_dict
from knd.errors import KndError
from knd.models.classifier import Classifier, read_checkpoint
from knd.models.networks import networks

log = logging.getLogger(__name__)

OUTPUT_LAYER = {
    "kept": "kept",
    "reordered": "kept, its rows reordered to the new label order",
    "new": "new, for the new labels",
}


def start_from(model: Classifier, path: str | Path, freeze_encoder: bool) -> dict:
    """Load `path`'s weights into `model` (built for the new labels); what the checkpoint records.

    The normalisation statistics are the checkpoint's: its encoder's weights expect input scaled
    as in its training, and a small fine-tuning set would estimate them worse anyway.
    """
    path = Path(path)
    if not path.is_file():
        raise KndError(f"train.init_from: {path} not found (a path from the project folder)")
    try:
        checkpoint = read_checkpoint(path)
        source = Classifier.from_checkpoint(checkpoint, path)
    except KndError as err:  # not a checkpoint, or one of another knd version
        raise KndError(f"train.init_from: {err}") from None
    _require_same(path, "model", to_dict(source.model_cfg), to_dict(model.model_cfg))
    _require_same(path, "features", to_dict(source.feature_cfg), to_dict(model.feature_cfg))
    state, fresh = source.state_dict(), model.state_dict()
    state["temperature"] = fresh["temperature"]  # the source's calibration is not the new model's
    head = output_keys(model)
    if set(source.labels) == set(model.labels):
        rows = [source.labels.index(label) for label in model.labels]
        for key in head:
            state[key] = state[key][rows]
        output = "kept" if rows == sorted(rows) else "reordered"
    else:
        for key in head:
            state[key] = fresh[key]
        output = "new"
    model.load_state_dict(state)
    if freeze_encoder:
        for name, weight in model.named_parameters():
            weight.requires_grad_(name in head)
    log.info(
        "fine-tuning from %s (%s): encoder and normalisation kept%s; output layer %s (%s)",
        path,
        ", ".join(source.labels),
        " and frozen" if freeze_encoder else "",
        OUTPUT_LAYER[output],
        ", ".join(model.labels),
    )
    return {
        "path": str(path),
        "labels": source.labels,
        "output_layer": output,
        "frozen_encoder": freeze_encoder,
        "trained_on_actors": checkpoint.get("trained_on_actors"),
    }


def output_keys(model: Classifier) -> list[str]:
    """The state-dict keys of the output layer(s): an ensemble's members have one each."""
    layers = [member.output for member in networks(model.net)]
    names = {module: name for name, module in model.named_modules()}
    return [f"{names[layer]}.{key}" for layer in layers for key in layer.state_dict()]


def hold_statistics(net: nn.Module) -> None:
    """Put normalisation layers with running statistics in eval mode (after `net.train()`).

    A frozen encoder's BatchNorm layers would otherwise keep averaging the new data's statistics
    into their buffers: no weight would move, yet the encoder's output would drift.
    """
    for module in net.modules():
        if getattr(module, "running_mean", None) is not None:
            module.eval()


def _require_same(path: Path, section: str, theirs: dict, ours: dict) -> None:
    differ = [key for key in ours if theirs.get(key) != ours[key]]
    if differ:
        found = ", ".join(f"{section}.{key}={_value(theirs.get(key))}" for key in differ)
        raise KndError(
            f"train.init_from: {path} was trained with other {section} settings; fine-tuning "
            f"must use the checkpoint's: set {found} "
            f"(this run has {', '.join(f'{section}.{k}={_value(ours[k])}' for k in differ)})"
        )


def _value(value) -> str:
    return "null" if value is None else str(value).replace(" ", "").lower()
