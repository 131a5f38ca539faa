"""Configuration: conf/ composes into params.yaml and every bad key or value fails clearly."""

import subprocess
from pathlib import Path

import pytest
import yaml
from helpers.project import ROOT, compose_config, compose_dict

from knd.config import ConfigError, load_config


def _committed_params() -> str:
    """params.yaml as committed: `dvc exp run -S ...` rewrites the working copy on purpose."""
    try:
        return subprocess.run(
            ["git", "show", "HEAD:params.yaml"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        return (ROOT / "params.yaml").read_text()


def test_params_yaml_is_the_composition_of_conf():
    committed = yaml.safe_load(_committed_params())
    assert committed == compose_dict(), "params.yaml is stale: run `dvc exp run` or recompose conf/"


@pytest.mark.parametrize("model", ["cnn", "resnet18", "acnt", "vgg", "sernet"])
def test_every_model_group_composes_and_validates(model):
    cfg = compose_config(f"model={model}")
    assert cfg.model.name == model


def test_cnn_is_trained_with_adam_and_the_default_with_adamw():
    assert compose_config("model=cnn").train.optimizer == "adam"
    assert compose_config().train.optimizer == "adamw"


def _changed(*overrides: str) -> dict:
    """`{section.key: value}` where conf/ composed with `overrides` differs from the defaults."""
    default, changed = compose_dict(), compose_dict(*overrides)
    return {
        f"{section}.{key}": value
        for section, values in changed.items()
        for key, value in values.items()
        if default[section][key] != value
    }


@pytest.mark.parametrize(
    ("option", "kind"),
    [
        ("features=mfcc", {"features.kind": "mfcc"}),
        ("features=spectrogram", {"features.kind": "spectrogram"}),
        ("split=kfold", {"split.strategy": "kfold"}),
        ("split=random", {"split.strategy": "random"}),
    ],
)
def test_feature_and_split_options_change_only_the_kind(option, kind):
    compose_config(option)  # valid
    assert _changed(option) == kind


def test_augment_none_switches_every_augmentation_off():
    off = compose_config("augment=none").augment
    assert not off.waveform_enabled
    assert off.freq_masks == off.time_masks == off.mixup_alpha == 0
    assert {key.split(".")[0] for key in _changed("augment=none")} == {"augment"}


def _write(tmp_path: Path, **changes) -> Path:
    data = compose_dict()
    for key, value in changes.items():
        section, name = key.split("__")
        data[section][name] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, train__epoch=3))
    msg = str(err.value)
    assert "params.yaml" in msg and "train.epoch" in msg and "did you mean 'train.epochs'" in msg


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"model__name": "transformer9000"}, "model.name: 'transformer9000' is not one of"),
        ({"train__epochs": 0}, "train.epochs: must be >= 1"),
        ({"train__lr": "fast"}, "train.lr: expected float"),
        ({"split__strategy": "speaker"}, "split.strategy: 'speaker' is not one of actor, kfold"),
        ({"split__fold": 7}, "split.fold: must be in [0, split.k=5)"),
        ({"features__win_length": 4096}, "features.win_length: must be <= features.n_fft"),
        ({"augment__noise_p": 2.0}, "augment.noise_p: must be a probability"),
        ({"augment__drr_db": [-15.0]}, "augment.drr_db: must be [low, high]"),
        ({"release__lr": 0.0}, "release.lr: must be > 0"),
        ({"model__channels": "32,64"}, "model.channels: expected a list"),
        (
            {"train__select": "best"},
            "split.val_actors: 0 leaves no validation scores for train.sel",
        ),
        (
            {"train__patience": 3, "train__scheduler": "plateau"},
            "no validation scores for train.patience, train.scheduler=plateau; set split",
        ),
        (
            {"model__name": "acnt", "model__frequency": "flatten"},
            "model.frequency: flatten needs a network that keeps a frequency axis up to its "
            "pooling (sernet, vgg, resnet18); acnt pools a sequence without one",
        ),
        (
            {"model__name": "cnn", "model__frequency": "flatten"},
            "cnn averages over it, so set model.frequency=mean",
        ),
        (
            {"train__scheduler": "plateau", "split__val_actors": 2, "release__start": "scratch"},
            "train.scheduler: plateau lowers the rate when validation scores stall, and the "
            "release (release.start=scratch)",
        ),
    ],
)
def test_bad_values_fail_with_a_clear_message(tmp_path, change, expected):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, **change))
    assert expected in str(err.value)


def test_validation_actors_allow_what_needs_their_scores(tmp_path):
    cfg = load_config(_write(tmp_path, train__select="best", split__val_actors=2))
    assert cfg.train.select == "best" and cfg.split.val_actors == 2


def test_a_missing_key_names_file_and_key(tmp_path):
    """No code default stands in: conf/ is the one source of defaults."""
    data = compose_dict()
    del data["features"]["log_floor"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: features.log_floor: missing"


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_overrides_change_values_before_validation(tmp_path):
    path = _write(tmp_path)
    cfg = load_config(path, ["split.k=10", "augment.speed=[0.8, 1.2]", "wandb.entity=me"])
    assert (cfg.split.k, cfg.augment.speed, cfg.wandb.entity) == (10, [0.8, 1.2], "me")
    assert load_config(path) == load_config(path, [])  # the file itself is left alone


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("split.k", "'split.k' is not key=value (as in -S split.k=10)"),
        ("split.k=1", "-S split.k=1: split.k: must be >= 2"),
        ("split.kk=10", "split.kk: unknown key (did you mean 'split.k'?)"),
        ("spilt.k=10", "spilt: unknown key (did you mean 'split'?)"),
        ("train.lr.max=1", "train.lr.max: train.lr is a value, not a section"),
        ("model=resnet18", "model is a section; set its keys (-S model.name=...), or compose"),
        ("train.lr=[0.1", "train.lr: '[0.1' is not a YAML value"),
    ],
)
def test_a_bad_override_names_itself_and_the_reason(tmp_path, override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path), [override])
    assert str(err.value).startswith(f"{tmp_path / 'params.yaml'} -S {override}: ")
    assert expected in str(err.value)
