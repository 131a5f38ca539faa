"""Checkpoints: a saved classifier loads to the same function, and a bad file says what is wrong."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers.models import TINY_CNN
from helpers.project import compose_config

import knd.models.classifier
from knd.config import ModelConfig
from knd.errors import KndError
from knd.models.classifier import CHECKPOINT_FORMAT, Classifier, read_checkpoint
from knd.models.networks import build_model

LABELS = ["neutral", "happy", "sad", "angry"]
FEATURES = compose_config("features.duration=1.0").features
MODELS = {
    "cnn": compose_config(*TINY_CNN).model,
    "sernet": compose_config("model=sernet", "model.channels=[8,16,16,32]").model,
}


def classifier(model: ModelConfig) -> Classifier:
    torch.manual_seed(0)
    mean, std = torch.randn(FEATURES.num_bins) - 6, torch.rand(FEATURES.num_bins) + 2
    return Classifier(model, FEATURES, LABELS, mean, std).eval()


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.pt"
    classifier(MODELS["cnn"]).save(path, history=[{"epoch": 1}])
    return path


@pytest.mark.parametrize("name", list(MODELS))
def test_save_and_load_give_the_same_model(tmp_path, name):
    model = classifier(MODELS[name])
    with torch.no_grad():  # train mode would move the batch-norm statistics
        model.train()(torch.randn(8, FEATURES.num_samples))
    model.eval().save(tmp_path / "model.pt", history=[{"epoch": 1}])
    loaded = Classifier.load(tmp_path / "model.pt")
    assert not loaded.training
    assert (loaded.model_cfg, loaded.feature_cfg, loaded.labels) == (
        model.model_cfg, model.feature_cfg, LABELS,
    )  # fmt: skip
    assert read_checkpoint(tmp_path / "model.pt")["history"] == [{"epoch": 1}]
    waves = torch.randn(3, FEATURES.num_samples, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(waves), model(waves), rtol=0, atol=0)
    assert not list(tmp_path.glob("*.tmp"))


def test_a_checkpoint_of_an_older_architecture_is_stale(saved, monkeypatch):
    """The code's cnn changed (wider second block) since the checkpoint was trained."""

    def newer_code(cfg, n_classes, n_bins):
        return build_model(dataclasses.replace(cfg, channels=[8, 24]), n_classes, n_bins)

    monkeypatch.setattr(knd.models.classifier, "build_model", newer_code)
    with pytest.raises(KndError) as err:
        Classifier.load(saved)
    message = str(err.value)
    assert message.startswith(f"{saved}: checkpoint does not match this version of knd's cnn (")
    assert "has shape [16, 8, 3, 3] in the checkpoint, [24, 8, 3, 3] in the code" in message
    assert message.endswith("; retrain with `knd train`")
    assert "\n" not in message  # one line, not torch's list of every mismatch


def test_missing_or_extra_weights_are_stale(saved):
    state = torch.load(saved, weights_only=True)
    first = next(k for k in state["state_dict"] if k.startswith("net."))
    state["state_dict"]["net.renamed.weight"] = state["state_dict"].pop(first)
    torch.save(state, saved)
    with pytest.raises(KndError, match=rf"knd's cnn \({first} missing from the checkpoint\)"):
        Classifier.load(saved)
    state["state_dict"][first] = state["state_dict"]["net.renamed.weight"]
    torch.save(state, saved)
    with pytest.raises(KndError, match=r"\(net\.renamed\.weight in the checkpoint is not in the"):
        Classifier.load(saved)


def test_a_checkpoint_of_another_format_is_refused(saved):
    """Format 1 files may lack `features.log_floor`, whose meaning changed: never reinterpreted."""
    state = torch.load(saved, weights_only=True)
    state["format"] = 1
    torch.save(state, saved)
    with pytest.raises(KndError) as err:
        Classifier.load(saved)
    assert str(err.value) == (
        f"{saved}: checkpoint format 1, but this knd reads format {CHECKPOINT_FORMAT}; "
        "retrain with `knd train`"
    )


@pytest.mark.parametrize(
    ("stored", "key"), [("feature_config", "log_floor"), ("model_config", "pooling")]
)
def test_a_stored_config_without_a_key_is_refused(saved, stored, key):
    """No code default stands in for a key the checkpoint lacks."""
    state = torch.load(saved, weights_only=True)
    del state[stored][key]
    torch.save(state, saved)
    section = {"feature_config": "features", "model_config": "model"}[stored]
    with pytest.raises(KndError) as err:
        Classifier.load(saved)
    message = str(err.value)
    assert message.startswith(f"{saved}: checkpoint does not match this version of knd's cnn (")
    assert f"({section}.{key}: missing)" in message


def test_a_config_this_version_no_longer_knows_is_stale(saved):
    state = torch.load(saved, weights_only=True)
    state["model_config"]["kernel"] = 5  # an option since removed
    torch.save(state, saved)
    with pytest.raises(KndError, match=r"model\.pt: checkpoint does not match .*kernel: unknown"):
        Classifier.load(saved)


def test_a_file_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a pickle, not a zip")
    with pytest.raises(KndError, match=r"junk\.pt: not a knd checkpoint"):
        Classifier.load(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")  # torch, but not knd's
    with pytest.raises(KndError, match=r"other\.pt: not a knd checkpoint \(no format number\)"):
        Classifier.load(tmp_path / "other.pt")


def test_a_missing_checkpoint(tmp_path):
    with pytest.raises(KndError, match=r"model\.pt: model checkpoint not found; train one"):
        Classifier.load(tmp_path / "model.pt")
