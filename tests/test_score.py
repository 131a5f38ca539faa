"""`knd score`: metrics of a model on a labelled set, with the label sets matched in the open."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers.audio import RATE, voice
from helpers.models import LABELS, make_checkpoint
from helpers.project import run_cli

from knd.models.onnx_export import export_onnx
from knd.serving.predict import load_predictor
from knd.serving.score import label_maps

KEYS = {"n", "uar", "wa", "f1_macro", "per_class", "confusion_matrix", "labels"}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    checkpoint = make_checkpoint(folder / "model.pt")
    export_onnx(checkpoint, folder / "export.onnx")
    return {"pt": checkpoint, "onnx": folder / "export.onnx"}


def _emodb_like(folder: Path) -> list[dict]:
    """EmoDB-named clips (happy, angry, sad, neutral, boredom) of four speakers."""
    rows = []
    for i, speaker in enumerate(("03", "08", "10", "13")):
        for j, letter in enumerate("FWTNL"):
            path = folder / f"{speaker}a0{1 + j % 2}{letter}a.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, voice(1.5, f0=100 + 20 * j + 5 * i, seed=10 * i + j), RATE)
            rows.append({"path": path.name, "speaker": speaker})
    return rows


def _manifest(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _score_json(monkeypatch, capsys, manifest, model):
    return run_cli(
        monkeypatch, capsys, "score", str(manifest), "--model", str(model), "--format", "json"
    )


def test_label_maps_match_model_and_data_in_the_open():
    # an 8-emotion model on CREMA-D-like data: the model's calm counts as neutral
    predicted, actual = label_maps(LABELS, {"angry", "neutral", "sad", "boredom"})
    assert predicted("calm") == "neutral" and predicted("happy") == "happy"
    assert actual == {"angry": "angry", "neutral": "neutral", "sad": "sad"}  # boredom: unscorable
    # with calm in the data, calm stays calm
    predicted, actual = label_maps(LABELS, {"calm", "neutral"})
    assert predicted("calm") == "calm" and actual == {"calm": "calm", "neutral": "neutral"}
    # a 7-emotion model (no calm) on RAVDESS: the data's calm is scored as neutral
    seven = [label for label in LABELS if label != "calm"]
    predicted, actual = label_maps(seven, {"calm", "neutral", "sad"})
    assert actual == {"calm": "neutral", "neutral": "neutral", "sad": "sad"}
    # a gender x emotion model scores emotions
    predicted, actual = label_maps(["female_sad", "male_sad", "female_neutral"], {"sad", "calm"})
    assert predicted("male_sad") == "sad" and actual == {"sad": "sad", "calm": "neutral"}


@pytest.mark.parametrize("kind", ["pt", "onnx"])
def test_score_a_manifest(tmp_path, monkeypatch, capsys, models, kind):
    rows = _emodb_like(tmp_path / "wav")
    labels = {"F": "happy", "W": "anger", "T": "sad", "N": "neutral", "L": "boredom"}
    for row in rows:
        row["label"] = labels[row["path"][5]]
        row["path"] = f"wav/{row['path']}"
    manifest = _manifest(tmp_path / "set.csv", rows)
    status, out, err = _score_json(monkeypatch, capsys, manifest, models[kind])
    assert status == 0, err
    result = json.loads(out)
    assert set(result) >= KEYS
    assert result["n"] == 16 and result["unscorable"] == {"boredom": 4}
    assert result["label_map"]["predictions"] == {"calm": "neutral"}
    data_labels = ["neutral", "happy", "sad", "angry"]
    assert result["labels"][:4] == data_labels
    assert set(result["labels"][4:]) == {"fearful", "disgust", "surprised"}  # model-only columns
    cm = np.array(result["confusion_matrix"])
    assert cm.sum() == 16 and cm[4:].sum() == 0 and (cm[:4].sum(axis=1) == 4).all()

    # the same numbers from `knd predict`'s own labels, mapped by hand
    predictor = load_predictor(models[kind])
    files = [tmp_path / r["path"] for r in rows if r["label"] != "boredom"]
    truth = [r["label"].replace("anger", "angry") for r in rows if r["label"] != "boredom"]
    guessed = [
        max(p, key=p.get).replace("calm", "neutral")
        for p in predictor.predict([predictor.read(f) for f in files])
    ]
    recall = {
        c: np.mean([g == c for g, t in zip(guessed, truth, strict=True) if t == c])
        for c in data_labels
    }
    assert result["uar"] == pytest.approx(np.mean(list(recall.values())), abs=1e-4)
    assert result["wa"] == pytest.approx(
        np.mean([g == t for g, t in zip(guessed, truth, strict=True)]), abs=1e-4
    )
    assert {c: s["recall"] for c, s in result["per_class"].items()} == pytest.approx(
        recall, abs=1e-4
    )


def test_score_a_folder_by_its_naming_scheme_as_a_table(tmp_path, monkeypatch, capsys, models):
    _emodb_like(tmp_path)
    args = ("score", str(tmp_path), "--model", str(models["onnx"]))
    status, _, err = run_cli(monkeypatch, capsys, *args)
    assert status == 1 and "a folder needs --corpus" in err and "Traceback" not in err
    status, out, err = run_cli(monkeypatch, capsys, *args, "--corpus", "emodb")
    assert status == 0, err
    assert ": 16 clips scored" in out and "UAR " in out
    assert "not scored, the model has no such class: boredom 4" in out
    assert "the model's calm counts as neutral" in out
    assert "confusion matrix (rows: actual, columns: predicted)" in out
    lines = out.splitlines()
    header = lines[lines.index("confusion matrix (rows: actual, columns: predicted)") + 1]
    assert "neutral" in header.split() and "neutra" not in header.split()  # names whole


def test_several_corpora_get_their_own_metrics(tmp_path, monkeypatch, capsys, models):
    rows = []
    for corpus in ("one", "two"):
        for row in _emodb_like(tmp_path / corpus):
            row = {**row, "path": f"{corpus}/{row['path']}", "label": "sad", "corpus": corpus}
            rows.append(row)
    manifest = _manifest(tmp_path / "both.csv", rows)
    status, out, err = _score_json(monkeypatch, capsys, manifest, models["onnx"])
    assert status == 0, err
    result = json.loads(out)
    assert {k: v["n"] for k, v in result["per_corpus"].items()} == {"one": 20, "two": 20}
    assert result["n"] == 40 and result["uar"] == result["per_class"]["sad"]["recall"]


def test_nothing_scorable_is_a_clear_error(tmp_path, monkeypatch, capsys, models):
    (tmp_path / "a.wav").write_bytes(b"")
    manifest = _manifest(
        tmp_path / "m.csv", [{"path": "a.wav", "label": "boredom", "speaker": "1"}]
    )
    status, _, err = run_cli(
        monkeypatch, capsys, "score", str(manifest), "--model", str(models["pt"])
    )
    assert status == 1 and "none of its labels (boredom) is a class of" in err
