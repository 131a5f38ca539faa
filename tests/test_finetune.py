"""Fine-tuning (`train.init_from`, `train.freeze_encoder`): what is kept, new, and learns."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient
from helpers.audio import RATE, voice
from helpers.manifests import voice_corpus, write_manifest
from helpers.models import LABELS, TINY_CNN, make_checkpoint
from helpers.project import SUBSET_ACTORS, TINY, archive, compose_config, run_cli

from knd.config import ConfigError
from knd.data.download import fetch_data
from knd.data.make_dataset import make_dataset
from knd.data.processed import load_processed
from knd.errors import KndError
from knd.models.classifier import Classifier
from knd.serving.predict import load_predictor
from knd.serving.serve import create_app
from knd.training.evaluate import evaluate
from knd.training.finetune import output_keys, start_from
from knd.training.release import release
from knd.training.train import fit, train

FOUR = ["neutral", "happy", "sad", "angry"]
ENSEMBLE = ("model=sernet", "model.channels=[8,16]", "model.members=2")


def _model(labels: list[str], *overrides: str) -> Classifier:
    """A fresh model for `labels`, its normalisation unlike `make_checkpoint`'s."""
    cfg = compose_config("features.duration=2.0", *(overrides or TINY_CNN))
    bins = cfg.features.num_bins
    return Classifier(cfg.model, cfg.features, labels, torch.zeros(bins), torch.ones(bins))


def _logits(model: Classifier) -> torch.Tensor:
    wave = torch.from_numpy(voice(2.0)).unsqueeze(0)
    with torch.no_grad():
        return model.eval()(wave)


@pytest.mark.parametrize("overrides", [TINY_CNN, ENSEMBLE], ids=["cnn", "ensemble"])
def test_new_labels_get_a_new_output_layer_and_keep_everything_else(tmp_path, overrides):
    source = Classifier.load(make_checkpoint(tmp_path / "source.pt", *overrides))
    model = _model(FOUR, *overrides)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    record = start_from(model, tmp_path / "source.pt", freeze_encoder=False)

    head = output_keys(model)
    assert len(head) == 2 * (2 if overrides == ENSEMBLE else 1)  # weight and bias per member
    assert all(k.endswith((".weight", ".bias")) for k in head)
    after, before = model.state_dict(), source.state_dict()
    for key in head:
        assert after[key].shape[0] == 4 and torch.equal(after[key], fresh[key])
    kept = [k for k in after if k not in head and k != "temperature"]
    assert all(torch.equal(after[k], before[k]) for k in kept)
    assert float(after["mean"].mean()) == -6.0 and float(after["std"].mean()) == 3.0
    assert record | {"path": None} == {
        "path": None,
        "labels": LABELS,
        "output_layer": "new",
        "frozen_encoder": False,
        "trained_on_actors": None,
    }


def test_the_same_labels_in_another_order_keep_the_output_layer_reordered(tmp_path):
    path = make_checkpoint(tmp_path / "source.pt")
    source = Classifier.load(path)
    same = _model(LABELS)
    assert start_from(same, path, False)["output_layer"] == "kept"
    assert torch.equal(_logits(same), _logits(source))

    shuffled = [LABELS[i] for i in (3, 0, 7, 1, 6, 2, 5, 4)]
    model = _model(shuffled)
    assert start_from(model, path, False)["output_layer"] == "reordered"
    order = [LABELS.index(label) for label in shuffled]
    assert torch.allclose(_logits(model), _logits(source)[:, order])


def test_a_checkpoint_unlike_the_composed_config_is_refused_naming_the_keys(tmp_path):
    path = make_checkpoint(tmp_path / "source.pt")
    with pytest.raises(KndError, match=r"models/nowhere\.pt not found"):
        start_from(_model(FOUR), Path("models/nowhere.pt"), False)
    torch.save({"format": 1}, tmp_path / "old.pt")
    with pytest.raises(KndError, match=r"^train\.init_from: .*old\.pt: checkpoint format 1, but"):
        start_from(_model(FOUR), tmp_path / "old.pt", False)
    with pytest.raises(KndError) as err:
        start_from(_model(FOUR, "model=cnn", "model.channels=[8,16,32]"), path, False)
    assert str(err.value) == (
        f"train.init_from: {path} was trained with other model settings; fine-tuning must use "
        "the checkpoint's: set model.channels=[8,16] (this run has model.channels=[8,16,32])"
    )
    cfg = compose_config("features.duration=2.0", "features.n_mels=48", *TINY_CNN)
    other = Classifier(cfg.model, cfg.features, FOUR, torch.zeros(48), torch.ones(48))
    with pytest.raises(KndError, match=r"features\.n_mels=40 \(this run has features\.n_mels=48"):
        start_from(other, path, False)
    with pytest.raises(ConfigError, match=r"train\.freeze_encoder: must be false without"):
        compose_config("train.freeze_encoder=true")


def _voices(tmp_path: Path, *overrides: str):
    """The composed config and `data/processed` of a 4-label manifest of synthetic voices."""
    speakers = {s: "" for s in "abcdef"}
    split = {"e": "val", "f": "test"}.get
    manifest = voice_corpus(tmp_path / "voices", speakers, FOUR, lambda s: split(s, "train"))
    cfg = compose_config(
        *TINY,
        *TINY_CNN,
        "augment=none",
        "data=manifest",
        f"data.manifest={manifest}",
        "train.batch_size=4",
        *overrides,
    )
    fetch_data(cfg.data, tmp_path / "raw")
    make_dataset(cfg, tmp_path / "raw", tmp_path / "processed")
    return cfg, load_processed(tmp_path / "processed")


@pytest.mark.parametrize("frozen", [True, False])
def test_a_frozen_encoder_keeps_its_weights_and_batchnorm_statistics(tmp_path, frozen):
    source = make_checkpoint(tmp_path / "source.pt")
    init = (f"train.init_from={source}", f"train.freeze_encoder={str(frozen).lower()}")
    cfg, data = _voices(tmp_path, *init)
    fit(cfg, data, tmp_path / "model.pt", None, tmp_path / "last.pt")

    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    before = torch.load(source, weights_only=True)["state_dict"]
    after = saved["state_dict"]
    head = output_keys(Classifier.load(tmp_path / "model.pt"))
    encoder = [k for k in after if k.startswith("net.") and k not in head]
    statistics = [k for k in encoder if "running_" in k]
    assert statistics and head
    unchanged = [k for k in encoder if torch.equal(after[k], before[k])]
    if frozen:
        assert unchanged == encoder
    else:  # the control: the same run unfrozen moves weights and statistics alike
        assert not set(statistics) & set(unchanged)
        assert len(unchanged) < len(encoder) - len(statistics)
    assert saved["labels"] == FOUR
    assert saved["init_from"] | {"path": None} == {
        "path": None,
        "labels": LABELS,
        "output_layer": "new",
        "frozen_encoder": frozen,
        "trained_on_actors": None,
    }
    assert saved["train_config"]["init_from"] == str(source)


def _four_label_mirror(folder: Path) -> Path:
    """A manifest of mirror clips, relabelled to `FOUR` (other emotions left out)."""
    codes = {"01": "neutral", "03": "happy", "04": "sad", "05": "angry"}
    rows = []
    folder.mkdir()
    with zipfile.ZipFile(archive()) as z:
        for name in sorted(z.namelist()):
            parts = Path(name).stem.split("-")
            if len(parts) != 7 or parts[2] not in codes or int(parts[6]) not in SUBSET_ACTORS:
                continue
            if parts[4] != "01":  # one of the two statements
                continue
            (folder / Path(name).name).write_bytes(z.read(name))
            rows.append({"path": Path(name).name, "label": codes[parts[2]], "speaker": parts[6]})
    return write_manifest(folder / "four.csv", rows)


@pytest.mark.slow
def test_fine_tune_a_ravdess_model_to_four_labels_then_predict_serve_export(
    processed, tmp_path, monkeypatch, capsys
):
    # a RAVDESS model (8 emotions): one epoch of the tiny recipe on the subset's actors
    source = tmp_path / "ravdess.pt"
    train(compose_config(*TINY, "train.epochs=1"), processed, source, None, tmp_path / "s.pt")
    ravdess = torch.load(source, weights_only=True)
    assert ravdess["labels"] == LABELS

    manifest = _four_label_mirror(tmp_path / "mirror")
    cfg = compose_config(
        *TINY,
        "data=manifest",
        f"data.manifest={manifest}",
        f"train.init_from={source}",
        "train.epochs=1",
    )
    fetch_data(cfg.data, tmp_path / "raw")
    data_dir = tmp_path / "processed"
    make_dataset(cfg, tmp_path / "raw", data_dir)
    heldout, release_model = tmp_path / "heldout.pt", tmp_path / "model.pt"
    train(cfg, data_dir, heldout, None, tmp_path / "last.pt")
    evaluate(data_dir, heldout, tmp_path / "reports")
    release(
        cfg, data_dir, heldout, tmp_path / "reports/metrics.json", release_model, tmp_path / "r.pt"
    )

    released = torch.load(release_model, weights_only=True)
    assert released["labels"] == FOUR
    assert released["init_from"]["path"] == str(source)  # the release repeats the fine-tuning
    assert released["heldout"]["init_from"]["labels"] == LABELS  # which started from RAVDESS's
    assert released["heldout"]["init_from"]["trained_on_actors"] == ravdess["trained_on_actors"]
    for key in ("mean", "std"):  # the checkpoint's normalisation, not the new data's
        assert torch.equal(released["state_dict"][key], ravdess["state_dict"][key])

    clip = tmp_path / "clip.wav"
    sf.write(clip, voice(3.0), RATE)
    status, out, _ = run_cli(
        monkeypatch, capsys, "predict", str(clip), "--model", str(release_model), "--format", "json"
    )
    assert status == 0 and list(json.loads(out)[0]["probabilities"]) == FOUR

    with TestClient(create_app(release_model)) as client:
        assert client.get("/health").json()["labels"] == FOUR
        files = {"file": ("clip.wav", clip.read_bytes(), "audio/wav")}
        body = client.post("/predict", files=files).json()
        assert list(body["probabilities"]) == FOUR and body["label"] in FOUR

    onnx = tmp_path / "model.onnx"
    status, _, _ = run_cli(
        monkeypatch, capsys, "export", "--model", str(release_model), "--out", str(onnx)
    )
    assert status == 0 and load_predictor(onnx).labels == FOUR
    status, out, _ = run_cli(
        monkeypatch, capsys, "predict", str(clip), "--model", str(onnx), "--format", "json"
    )
    assert status == 0 and list(json.loads(out)[0]["probabilities"]) == FOUR
