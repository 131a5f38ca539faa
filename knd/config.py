"""Typed configuration, read from `params.yaml` (written by DVC's Hydra composition of `conf/`).

Every stage reads `params.yaml` rather than composing `conf/` itself, so `dvc exp run -S ...`
overrides are always seen. Loading validates every key and value: a typo fails at once with the
file, the key and the allowed choices, instead of deep inside training.

`conf/` is the one place defaults and descriptions live: the dataclasses have no defaults, so a
key missing from `params.yaml` (or from a checkpoint's stored config) is an error, never a
silent stand-in value. Code that needs the defaults composes `conf/` (`compose_config`).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from knd.errors import KndError

T = TypeVar("T")
EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ConfigError(KndError):
    """A bad key or value in the configuration."""


@dataclass
class DataConfig:
    """Where the labelled audio comes from (`data=ravdess`, `local`, `manifest`) and its classes."""

    source: Literal["ravdess", "local", "manifest"]
    url: str
    md5: str
    path: str | None
    manifest: str | list[str]
    corpus: Literal["ravdess", "crema-d", "tess", "savee", "emodb"]
    labels: Literal["emotion8", "emotion7", "emotion_gender14", "found"]
    max_skipped_fraction: float

    def __post_init__(self):
        _check(0.0 <= self.max_skipped_fraction <= 1.0, "data.max_skipped_fraction", "in [0, 1]")
        if self.source == "local":
            _check(bool(self.path), "data.path", "a zip archive or a folder with data=local")
        if self.source == "manifest":
            _check(
                bool(self.manifests),
                "data.manifest",
                "one manifest path or more with data=manifest",
            )

    @property
    def manifests(self) -> list[str]:
        return [self.manifest] if isinstance(self.manifest, str) else self.manifest


# Pretrained speech encoders (`features.kind`): torchaudio.pipelines bundles, named in lower case
ENCODERS = ("wavlm_base_plus", "wavlm_large", "hubert_base", "hubert_large", "wav2vec2_base")


@dataclass
class FeatureConfig:
    """How a waveform becomes the model's input; stored in every checkpoint."""

    kind: Literal[("logmel", "mfcc", "spectrogram", *ENCODERS)]
    sample_rate: int
    duration: float
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    n_mfcc: int
    f_min: float
    f_max: float
    log_floor: float
    level_norm: bool
    band_norm: bool
    encoder_weights: str | None

    def __post_init__(self):
        for key in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "n_mfcc"):
            _check(getattr(self, key) > 0, f"features.{key}", "> 0")
        _check(self.duration > 0, "features.duration", "> 0")
        _check(self.log_floor > 0, "features.log_floor", "> 0")
        _check(self.win_length <= self.n_fft, "features.win_length", "<= features.n_fft")
        _check(self.f_max <= self.sample_rate / 2, "features.f_max", "<= sample_rate / 2")
        _check(self.n_mfcc <= self.n_mels, "features.n_mfcc", "<= features.n_mels")

    @property
    def is_encoder(self) -> bool:
        return self.kind in ENCODERS

    @property
    def num_samples(self) -> int:
        return round(self.duration * self.sample_rate)

    @property
    def num_frames(self) -> int:
        return self.num_samples // self.hop_length + 1

    @property
    def num_bins(self) -> int:
        """Height of the feature image."""
        return {"logmel": self.n_mels, "mfcc": self.n_mfcc, "spectrogram": self.n_fft // 2 + 1}[
            self.kind
        ]


@dataclass
class SplitConfig:
    """`actor` and `kfold` hold speakers out; `random` leaks them and exists only for comparison."""

    strategy: Literal["actor", "kfold", "random"]
    seed: int
    test_actors: int
    val_actors: int
    k: int
    fold: int
    test_fraction: float
    val_fraction: float

    def __post_init__(self):
        _check(
            self.test_actors >= 2 and self.test_actors % 2 == 0, "split.test_actors", "even, >= 2"
        )
        _check(self.val_actors >= 0 and self.val_actors % 2 == 0, "split.val_actors", "even, >= 0")
        _check(self.k >= 2, "split.k", ">= 2")
        _check(0 <= self.fold < self.k, "split.fold", f"in [0, split.k={self.k})")
        for key in ("test_fraction", "val_fraction"):
            _check(0 < getattr(self, key) < 0.5, f"split.{key}", "in (0, 0.5)")


@dataclass
class ModelConfig:
    """Architecture and its size; `name` picks the class in `knd.models.networks`."""

    name: Literal["cnn", "resnet18", "acnt", "vgg", "sernet", "layer_head"]
    channels: list[int]
    dropout: float
    pretrained: bool
    use_transformer: bool
    d_model: int
    n_heads: int
    n_layers: int
    pooling: Literal["mean", "stats", "attention"]
    frequency: Literal["mean", "flatten"]
    members: int

    def __post_init__(self):
        _check(self.members >= 1, "model.members", ">= 1 (1 = a single network)")
        _check(len(self.channels) > 0 and min(self.channels) > 0, "model.channels", "positive")
        _check(0 <= self.dropout < 1, "model.dropout", "in [0, 1)")
        _check(self.d_model % self.n_heads == 0, "model.d_model", "divisible by model.n_heads")
        if self.frequency == "flatten" and self.name in ("cnn", "acnt", "layer_head"):
            raise ConfigError(
                f"model.frequency: flatten needs a network that keeps a frequency axis up to its "
                f"pooling (sernet, vgg, resnet18); {self.name} "
                + ("averages over it" if self.name == "cnn" else "pools a sequence without one")
                + ", so set model.frequency=mean"
            )


@dataclass
class AugmentConfig:
    """Training-split augmentation; every switch is independent, validation/test never see it."""

    gain_db: float
    noise_snr_db: list[float]
    noise_p: float
    time_shift: float
    polarity_p: float
    pitch_semitones: float
    pitch_p: float
    speed: list[float]
    freq_masks: int
    freq_mask_width: int
    time_masks: int
    time_mask_width: int
    mixup_alpha: float
    reverb_p: float
    rt60: list[float]
    drr_db: list[float]
    babble_p: float
    babble_snr_db: list[float]
    band_p: float
    tilt_p: float
    tilt_db: float

    def __post_init__(self):
        _check(self.tilt_db >= 0, "augment.tilt_db", ">= 0 dB per octave")
        keys = ("noise_p", "polarity_p", "pitch_p", "reverb_p", "babble_p", "band_p", "tilt_p")
        for key in keys:
            _check(0 <= getattr(self, key) <= 1, f"augment.{key}", "a probability in [0, 1]")
        for key in ("noise_snr_db", "drr_db", "babble_snr_db"):
            _check(len(getattr(self, key)) == 2, f"augment.{key}", "[low, high]")
        _check(len(self.speed) == 2 and min(self.speed) > 0, "augment.speed", "[low, high] > 0")
        _check(0 <= self.time_shift < 1, "augment.time_shift", "a fraction in [0, 1)")
        _check(len(self.rt60) == 2 and min(self.rt60) > 0, "augment.rt60", "[low, high] > 0 s")

    @property
    def waveform_enabled(self) -> bool:
        return bool(
            self.gain_db
            or self.noise_p
            or self.time_shift
            or self.polarity_p
            or (self.pitch_p and self.pitch_semitones)
            or self.speed != [1.0, 1.0]
            or self.reverb_p
            or self.babble_p
            or self.band_p
            or (self.tilt_p and self.tilt_db)
        )

    @property
    def masks_enabled(self) -> bool:
        return bool(
            (self.freq_masks and self.freq_mask_width) or (self.time_masks and self.time_mask_width)
        )


@dataclass
class TrainConfig:
    seed: int
    epochs: int
    batch_size: int
    optimizer: Literal["adam", "adamw", "sgd"]
    lr: float
    weight_decay: float
    scheduler: Literal["onecycle", "cosine", "plateau", "none"]
    label_smoothing: float
    grad_clip: float
    patience: int
    select: Literal["best", "last"]
    calibrate: bool
    amp: bool
    resume: bool
    num_threads: int
    speaker_adversary: float
    init_from: str | None
    freeze_encoder: bool

    def __post_init__(self):
        _check(self.epochs >= 1, "train.epochs", ">= 1")
        if self.freeze_encoder:
            _check(bool(self.init_from), "train.freeze_encoder", "false without train.init_from")
        _check(self.batch_size >= 1, "train.batch_size", ">= 1")
        _check(self.lr > 0, "train.lr", "> 0")
        _check(0 <= self.label_smoothing < 1, "train.label_smoothing", "in [0, 1)")
        _check(self.patience >= 0, "train.patience", ">= 0 (0 disables early stopping)")
        _check(self.speaker_adversary >= 0, "train.speaker_adversary", ">= 0 (0 = off)")

    @property
    def needs_validation(self) -> list[str]:
        """The settings that act on validation scores, as overrides."""
        settings = {
            "train.select=best": self.select == "best",
            "train.patience": bool(self.patience),
            "train.scheduler=plateau": self.scheduler == "plateau",
        }
        return [key for key, on in settings.items() if on]


@dataclass
class ReleaseConfig:
    start: Literal["scratch", "heldout"]
    epochs: int
    lr: float

    def __post_init__(self):
        _check(self.epochs >= 1, "release.epochs", ">= 1")
        _check(self.lr > 0, "release.lr", "> 0")


@dataclass
class WandbConfig:
    mode: Literal["offline", "online", "disabled"]
    project: str
    entity: str | None


@dataclass
class Config:
    data: DataConfig
    features: FeatureConfig
    split: SplitConfig
    model: ModelConfig
    augment: AugmentConfig
    train: TrainConfig
    release: ReleaseConfig
    wandb: WandbConfig

    def __post_init__(self):
        kind, name = self.features.kind, self.model.name
        if self.features.is_encoder and name != "layer_head":
            raise ConfigError(
                f"model.name: features.kind={kind} (a pretrained encoder) is trained as "
                f"model=layer_head (a head over its cached layers), not model={name}"
            )
        if name == "layer_head" and not self.features.is_encoder:
            raise ConfigError(
                "model.name: layer_head needs an encoder's layers "
                f"(features={', '.join(ENCODERS)}), not features.kind={kind}"
            )
        needs = self.train.needs_validation
        if self.split.strategy != "random" and not self.split.val_actors and needs:
            raise ConfigError(
                f"split.val_actors: 0 leaves no validation scores for {', '.join(needs)}; set "
                "split.val_actors=2 (or leave those at their defaults)"
            )
        if self.train.scheduler == "plateau" and self.release.start == "scratch":
            raise ConfigError(
                "train.scheduler: plateau lowers the rate when validation scores stall, and the "
                "release (release.start=scratch) trains on every actor with none left to "
                "validate on; use release.start=heldout, or train.scheduler=onecycle or cosine"
            )


def _check(ok: bool, key: str, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: must be {expected}")


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass `cls` from plain data, rejecting unknown, missing and mistyped keys."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"{prefix}{key}: unknown key{hint}; valid keys: {', '.join(names)}")
    if missing := [f"{prefix}{name}" for name in names if name not in data]:
        raise ConfigError(f"{', '.join(missing)}: missing")
    kwargs = {k: _coerce(hints[k], v, f"{prefix}{k}") for k, v in data.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key + ".")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        *first, last = [a for a in typing.get_args(tp) if a is not type(None)]
        for option in first:  # the first alternative the value fits
            try:
                return _coerce(option, value, key)
            except ConfigError:
                pass
        return _coerce(last, value, key)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (inner,) = typing.get_args(tp)
        return [_coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def load_config(path: str | Path = "params.yaml", overrides: Sequence[str] = ()) -> Config:
    """Read and validate the parameters file; every error names the file and the key.

    `overrides` (`key=value`, as `knd cv -S` takes them) change the file's values before
    validation, for commands that DVC does not run and so cannot override with `dvc exp run -S`.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: not found. Run from the project root, or run `dvc exp run` / "
            "`dvc repro` once so DVC composes it from conf/"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    source = " ".join([str(path), *(f"-S {o}" for o in overrides)])
    for assignment in overrides:
        _assign(raw, assignment, source)
    try:
        return from_dict(Config, raw)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def _assign(raw: Any, assignment: str, source: str) -> None:
    """Set `key.path=value` in the raw parameters, the value read as YAML (`10`, `[1, 2]`)."""
    key, equals, text = assignment.partition("=")
    if not equals or not key:
        raise ConfigError(f"{source}: {assignment!r} is not key=value (as in -S split.k=10)")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: {key}: {text!r} is not a YAML value ({err})") from None
    if isinstance(value, str) and EXPONENT.fullmatch(value):  # YAML 1.1 reads 1e-3 as text
        value = float(value)
    *sections, name = key.split(".")
    node = raw
    for section in sections:
        node = node.setdefault(section, {}) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        raise ConfigError(f"{source}: {key}: {'.'.join(sections)} is a value, not a section")
    if isinstance(node.get(name), dict) and not isinstance(value, dict):
        raise ConfigError(
            f"{source}: {key} is a section; set its keys (-S {key}.name=...), or compose another "
            f"config group into params.yaml with `dvc exp run -S {key}={text}`"
        )
    node[name] = value


def compose(conf_dir: str | Path, *overrides: str) -> dict[str, Any]:
    """`conf_dir` composed by Hydra exactly as DVC writes it to params.yaml (for tests, tools)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(Path(conf_dir).resolve()), version_base=None):
        return OmegaConf.to_container(hydra_compose("config", list(overrides)), resolve=True)


def compose_config(conf_dir: str | Path, *overrides: str) -> Config:
    """The validated `Config` of `conf_dir` composed with `overrides`: the defaults, for tools."""
    return from_dict(Config, compose(conf_dir, *overrides))


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
