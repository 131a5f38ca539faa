"""Stage `plot`: the figures people look at instead of reading JSON.

Training curves, the test confusion matrix, per-class F1, and for one clip per emotion its
waveform, log-mel spectrogram and MFCC, computed with the model's own feature front end.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from knd.config import FeatureConfig, from_dict
from knd.data.processed import Processed, load_processed
from knd.models.classifier import read_checkpoint
from knd.models.features import FrontEnd
from knd.paths import HELD_OUT_MODEL

log = logging.getLogger(__name__)


def training_curves(history: list[dict], saved_epoch: int, n_classes: int, out: Path) -> None:
    """Loss, and validation scores; without validation actors (they trained too), the learning
    rate, the schedule that alone decided the saved epoch."""
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, right_ax) = plt.subplots(1, 2, figsize=(11, 4))
    loss_ax.plot(epochs, [row["train_loss"] for row in history], label="train loss")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Training loss")
    if "val_uar" in history[0]:
        for key in ("val_uar", "val_accuracy", "val_f1_macro"):
            right_ax.plot(epochs, [row[key] for row in history], label=key.removeprefix("val_"))
        right_ax.axhline(1 / n_classes, color="red", ls=":", lw=1, label="chance")
        right_ax.set(ylabel="score", title="Validation (held-out actors)", ylim=(0, 1))
    else:
        right_ax.plot(epochs, [row["lr"] for row in history], label="learning rate")
        right_ax.set(ylabel="learning rate", title="Schedule (no validation actors)")
    right_ax.axvline(saved_epoch, color="grey", ls="--", lw=1, label=f"saved (epoch {saved_epoch})")
    right_ax.set(xlabel="epoch")
    for ax in (loss_ax, right_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, out)


def confusion_matrix(cm: list[list[int]], labels: list[str], out: Path) -> None:
    counts = np.array(cm)
    rates = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(counts):
        color = "white" if rates[i, j] > 0.5 else "black"
        ax.text(
            j, i, f"{rates[i, j]:.2f}\n({n})", ha="center", va="center", fontsize=7, color=color
        )
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="actual", title="Test confusion matrix (row-normalised)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    _save(fig, out)


def reliability_diagram(bins: list[dict], ece: float, floor: float, out: Path) -> None:
    """Accuracy against confidence per bin: on the diagonal, probabilities mean what they say."""
    used = [b for b in bins if b["count"]]
    fig, (ax, count_ax) = plt.subplots(
        2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": (3, 1)}
    )
    centres = [(b["low"] + b["high"]) / 2 for b in used]
    width = used[0]["high"] - used[0]["low"] if used else 0.1
    ax.bar(centres, [b["accuracy"] for b in used], width * 0.9, label="accuracy", alpha=0.8)
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    ax.plot(centres, [b["confidence"] for b in used], "o", color="black", ms=3, label="confidence")
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.set_title(
        f"Reliability on the test actors\nECE {ece:.3f} (a calibrated model's on as many clips: "
        f"{floor:.3f})",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=8)
    count_ax.bar(centres, [b["count"] for b in used], width * 0.9, color="grey")
    count_ax.set(xlabel="confidence (top probability)", ylabel="clips")
    for a in (ax, count_ax):
        a.grid(alpha=0.3)
    _save(fig, out)


def per_class_f1(per_class: dict[str, dict], out: Path) -> None:
    labels = list(per_class)
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.27
    for k, name in enumerate(("precision", "recall", "f1")):
        values = [per_class[label][name] for label in labels]
        ax.bar(np.arange(len(labels)) + (k - 1) * width, values, width, label=name)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set(ylim=(0, 1), ylabel="score", title="Per-class test scores")
    ax.axhline(1 / len(labels), color="red", ls=":", lw=1, label="chance")
    ax.legend(ncols=4, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, out)


def emotion_examples(data: Processed, feature_cfg: FeatureConfig, out: Path) -> None:
    """One clip per emotion, picked deterministically (first in file order)."""
    examples = data.meta.groupby("emotion", sort=False).head(1)
    waves = data.waves(torch.tensor(examples.index.to_numpy()))
    logmel = FrontEnd(dataclasses.replace(feature_cfg, kind="logmel"))(waves)
    mfcc = FrontEnd(dataclasses.replace(feature_cfg, kind="mfcc"))(waves)
    mfcc = (mfcc - mfcc.mean(-1, keepdim=True)) / mfcc.std(-1, keepdim=True)  # c0 would swamp it
    sr, hop = feature_cfg.sample_rate, feature_cfg.hop_length
    seconds = waves.shape[1] / sr
    fig, axes = plt.subplots(len(examples), 3, figsize=(13, 2.0 * len(examples)), squeeze=False)
    for row, (axs, (_, clip)) in enumerate(zip(axes, examples.iterrows(), strict=True)):
        axs[0].plot(np.arange(waves.shape[1]) / sr, waves[row].numpy(), lw=0.4)
        axs[0].set(xlim=(0, seconds), ylim=(-1, 1), ylabel=clip["emotion"])
        extent = (0, seconds, 0, logmel.shape[1])
        axs[1].imshow(
            logmel[row].detach(), origin="lower", aspect="auto", cmap="magma", extent=extent
        )
        extent = (0, seconds, 0, mfcc.shape[1])
        axs[2].imshow(
            mfcc[row].detach(),
            origin="lower",
            aspect="auto",
            cmap="coolwarm",
            extent=extent,
            vmin=-3,
            vmax=3,
        )
        axs[1].set_ylabel("mel band")
        axs[2].set_ylabel("coefficient")
    for ax, title in zip(
        axes[0],
        ("waveform", "log-mel spectrogram", "MFCC (standardised per coefficient)"),
        strict=True,
    ):
        ax.set_title(title)
    for ax in axes[-1]:
        ax.set_xlabel("seconds")
    fig.suptitle(f"One clip per emotion ({sr} Hz, hop {1000 * hop / sr:.0f} ms)", y=1.0)
    _save(fig, out)


def _save(fig, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    log.info("wrote %s", out)


def plot(
    data_dir: Path = Path("data/processed"),
    model_path: Path = HELD_OUT_MODEL,
    reports: Path = Path("reports"),
) -> None:
    figures = reports / "figures"
    checkpoint = read_checkpoint(model_path)
    evaluation = json.loads((reports / "evaluation.json").read_text())
    n_classes = len(checkpoint["labels"])
    saved_epoch = checkpoint["validation"]["epoch"]
    training_curves(checkpoint["history"], saved_epoch, n_classes, figures / "training_curves.png")
    confusion_matrix(
        evaluation["confusion_matrix"], evaluation["labels"], figures / "confusion_matrix.png"
    )
    per_class_f1(evaluation["per_class"], figures / "per_class.png")
    metrics = json.loads((reports / "metrics.json").read_text())
    reliability_diagram(
        evaluation["reliability"], metrics["ece"], metrics["ece_floor"], figures / "reliability.png"
    )
    feature_cfg = from_dict(FeatureConfig, checkpoint["feature_config"])
    emotion_examples(load_processed(data_dir), feature_cfg, figures / "emotion_examples.png")
