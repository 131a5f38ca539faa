"""Write docs/configuration.md from the dataclasses in knd/config.py and the files in conf/.

    python docs/gen_config_reference.py          # rewrite the page
    python docs/gen_config_reference.py --check  # exit 1 if the page is out of date

Every field of every section must have a line in MEANING below; a new parameter without one
fails here (and in tests/test_docs.py), so the reference cannot silently fall behind the code.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "configuration.md"
CONF = ROOT / "conf"

MEANING = {
    "data.url": "Where `knd download` fetches the RAVDESS speech archive: http(s) URL, "
    "`file://` URL or a path. The default is the official Zenodo record.",
    "data.md5": "MD5 of that archive; the download is verified against it. Empty skips the "
    "check (with a warning).",
    "data.labels": "Class set: `emotion8` (the 8 RAVDESS emotions), `emotion7` (calm merged "
    "into neutral) or `emotion_gender14` (gender x 7 emotions).",
    "data.max_skipped_fraction": "`make_dataset` fails when a larger share of the files is "
    "unusable (bad name, unreadable, silent); smaller shares are skipped and reported.",
    "features.kind": "Model input: `logmel` (log mel spectrogram), `mfcc`, or `spectrogram` "
    "(log power, `n_fft/2+1` bins).",
    "features.sample_rate": "Every clip is resampled to this rate (Hz), mixed to mono.",
    "features.duration": "Window length in seconds: the model sees this much audio at a time. "
    "Shorter clips are zero-padded on both sides; longer ones are scored (by `predict`, "
    "`serve`, `evaluate`, validation and `cv` alike) as the mean over windows of this length "
    "that overlap by at least 50%, and trained on from their centre.",
    "features.n_fft": "STFT size in samples.",
    "features.win_length": "STFT window (Hann) in samples; at most `n_fft`.",
    "features.hop_length": "STFT hop in samples.",
    "features.n_mels": "Mel bands (`logmel`, and the bands the MFCCs are computed from).",
    "features.n_mfcc": "MFCC coefficients (`mfcc` only); at most `n_mels`.",
    "features.f_min": "Lowest mel filter frequency (Hz).",
    "features.f_max": "Highest mel filter frequency (Hz); at most `sample_rate / 2`.",
    "features.log_floor": "Power floor before the logarithm: digital silence (exact zeros) is "
    "lifted to it instead of falling to extreme values.",
    "split.strategy": "`actor`: whole actors held out for test and validation, half of each "
    "gender. `kfold`: `k` actor folds, fold `fold` is the test set. `random`: clip-level split, "
    "LEAKY (the same actors in train and test), only to compare with other projects.",
    "split.seed": "Seed of the actor shuffle (`actor`, `kfold`) or clip shuffle (`random`).",
    "split.test_actors": "Test actors for `actor` (even: half female, half male).",
    "split.val_actors": "Validation actors for `actor` and `kfold` (even, gender-balanced).",
    "split.k": "Number of actor folds for `kfold`.",
    "split.fold": "Test fold for `kfold`, in `[0, k)`.",
    "split.test_fraction": "Test share of each class for `random`.",
    "split.val_fraction": "Validation share of each class for `random`.",
    "model.name": "Network: `sernet` (small residual CNN + attentive statistics pooling), "
    "`cnn` (reference 4-block CNN), `vgg` (VGGish-style), `resnet18` (torchvision), `acnt` "
    "(residual CNN + Transformer encoder).",
    "model.channels": "Channels of each convolutional block (the number of blocks is the "
    "length of the list; `resnet18` ignores it).",
    "model.dropout": "Dropout rate (after each block in `cnn`; before the classifier elsewhere; "
    "also inside the Transformer of `acnt`).",
    "model.pretrained": "`resnet18` only: start from ImageNet weights (must be cached or "
    "downloadable).",
    "model.use_transformer": "`acnt` only: `false` drops the Transformer encoder.",
    "model.d_model": "`acnt` only: Transformer width; divisible by `n_heads`.",
    "model.n_heads": "`acnt` only: attention heads.",
    "model.n_layers": "`acnt` only: Transformer encoder layers.",
    "model.pooling": "Pooling over time before the classifier: `mean`, `stats` (mean and "
    "standard deviation) or `attention` (attentive statistics). `cnn` always averages.",
    "model.members": "Ensemble size: this many independently initialised networks, each "
    "trained on its own loss over the same batches; prediction averages their probabilities. "
    "Costs `members` times the compute of one network.",
    "augment.gain_db": "Random gain in `[-gain_db, +gain_db]` dB per clip; 0 = off.",
    "augment.noise_snr_db": "White-noise SNR range `[low, high]` in dB.",
    "augment.noise_p": "Chance that a clip gets white noise; 0 = off.",
    "augment.time_shift": "Shift each clip by up to this fraction of its length; 0 = off.",
    "augment.polarity_p": "Chance of inverting a clip's waveform; 0 = off.",
    "augment.pitch_semitones": "Pitch shift up to +-N semitones (slow on a CPU); 0 = off.",
    "augment.pitch_p": "Chance that a clip is pitch-shifted.",
    "augment.speed": "Speed factor range `[low, high]`; `[1.0, 1.0]` = off.",
    "augment.freq_masks": "SpecAugment frequency masks per clip.",
    "augment.freq_mask_width": "Largest frequency mask, in bins.",
    "augment.time_masks": "SpecAugment time masks per clip.",
    "augment.time_mask_width": "Largest time mask, in frames.",
    "augment.mixup_alpha": "Mixup Beta(alpha, alpha) parameter; 0 = no mixup.",
    "train.seed": "Seed of initialisation, shuffling, augmentation and dropout: the same seed "
    "gives the same model on a CPU.",
    "train.epochs": "Training epochs.",
    "train.batch_size": "Clips per batch (per process under `torchrun`).",
    "train.optimizer": "`adam`, `adamw` or `sgd` (Nesterov momentum 0.9).",
    "train.lr": "Learning rate (the peak rate for `onecycle`).",
    "train.weight_decay": "Weight decay.",
    "train.scheduler": "Learning-rate schedule: `onecycle`, `cosine` (annealed to 0), "
    "`plateau` (halved after 3 epochs without validation UAR gain) or `none`.",
    "train.label_smoothing": "Label smoothing of the cross-entropy loss.",
    "train.grad_clip": "Gradient norm clipping threshold.",
    "train.patience": "Early stopping after this many epochs without validation UAR gain; 0 = off.",
    "train.select": "Which epoch `models/model.pt` keeps: `best` (highest validation UAR) or "
    "`last`. With two validation actors the best epoch is a noisy pick; `last` trusts the "
    "schedule.",
    "train.amp": "Mixed precision; used on CUDA only.",
    "train.resume": "Continue from `models/checkpoints/last.pt` if it was written with the same "
    "settings.",
    "train.num_threads": "PyTorch CPU threads; 0 = PyTorch's default.",
    "wandb.mode": "Weights & Biases logging: `offline` (local files under `wandb/`, no "
    "account), `online` or `disabled`.",
    "wandb.project": "W&B project name.",
    "wandb.entity": "W&B team or user; `null` = your default entity.",
}


def sections() -> list[tuple[str, type]]:
    from knd.config import Config

    hints = typing.get_type_hints(Config)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(Config)]


def fields(cls: type) -> list[tuple[str, Any, Any]]:
    """(name, type, code default) of a config dataclass."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append((f.name, hints[f.name], default))
    return out


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {type_name(typing.get_args(tp)[0])}"
    return "null" if tp is type(None) else tp.__name__


def show(value: Any) -> str:
    """A value as it would be written in params.yaml, in code style."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1000)
    return f"`{text.strip().removesuffix('...').strip()}`"


def composed_defaults() -> dict:
    """conf/ composed as DVC composes it for `dvc repro` (no overrides)."""
    from knd.config import compose

    return compose(CONF)


def defaults_list() -> dict[str, str]:
    conf = yaml.safe_load((CONF / "config.yaml").read_text())
    return {k: v for d in conf["defaults"] if isinstance(d, dict) for k, v in d.items()}


def first_comment(path: Path) -> str:
    for line in path.read_text().splitlines():
        text = line.lstrip("# ").strip()
        if line.startswith("#") and text and not text.startswith("@package"):
            return text
    return ""


def render() -> str:
    composed = composed_defaults()
    chosen = defaults_list()
    missing = [
        f"{section}.{name}"
        for section, cls in sections()
        for name, _, _ in fields(cls)
        if f"{section}.{name}" not in MEANING
    ]
    if missing:
        raise SystemExit(f"docs/gen_config_reference.py: no MEANING for {', '.join(missing)}")
    out = [
        "<!-- Generated by docs/gen_config_reference.py from knd/config.py and conf/; "
        "do not edit by hand. -->",
        "# Configuration reference",
        "",
        "Every parameter knd reads, one table per section of `params.yaml`. DVC composes "
        "`params.yaml` from `conf/` (Hydra: `conf/config.yaml` plus one file per group below); "
        "`knd` then loads it into the typed dataclasses of `knd/config.py`, which reject unknown "
        "keys, wrong types and out-of-range values with the key at fault.",
        "",
        "Change a value for one experiment with `dvc exp run -S key=value` "
        "(e.g. `dvc exp run -S train.lr=0.0003 -S model=resnet18`), or permanently in `conf/`.",
        "",
        "**Default** is the value `dvc repro` uses (composed from `conf/`). Where the dataclass "
        "in `knd/config.py` has another default (used only when a key is missing from "
        "`params.yaml`), it is given as *code default*.",
        "",
        "## Groups",
        "",
        "Choose a whole group file with `-S group=option`, e.g. `-S split=kfold`. "
        "Files in `conf/model/` also set `train` keys where noted in them.",
        "",
        "| Group | Options | Default | What the options are |",
        "|---|---|---|---|",
    ]
    for group, default in chosen.items():
        files = sorted((CONF / group).glob("*.yaml"))
        options = ", ".join(f"`{f.stem}`" for f in files)
        notes = "<br>".join(f"`{f.stem}`: {first_comment(f)}" for f in files)
        out.append(f"| `{group}` | {options} | `{default}` | {notes} |")
    for section, cls in sections():
        doc = (cls.__doc__ or "").strip()
        out += ["", f"## `{section}`", ""]
        if doc and not doc.startswith(f"{cls.__name__}("):
            out += [" ".join(doc.split()), ""]
        out += ["| Key | Type | Default | Meaning |", "|---|---|---|---|"]
        for name, tp, code_default in fields(cls):
            key = f"{section}.{name}"
            value = composed[section][name]
            default = show(value)
            if value != code_default:
                default += f" (code default: {show(code_default)})"
            out.append(f"| `{key}` | {type_name(tp)} | {default} | {MEANING[key]} |")
    return "\n".join(out) + "\n"


def main() -> int:
    from generated import write_or_check  # docs/ is on sys.path when run as a script

    return write_or_check(PAGE, render(), "docs/gen_config_reference.py")


if __name__ == "__main__":
    sys.exit(main())
