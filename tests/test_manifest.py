"""Manifests: the CSV format, `data=manifest` through download and make_dataset, several corpora."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest
from helpers.manifests import voice_corpus, write_manifest
from helpers.project import TINY, compose_config

from knd.data.download import fetch_data
from knd.data.make_dataset import make_dataset
from knd.data.manifest import MANIFEST_FILE, read_manifest, read_manifests
from knd.data.processed import load_processed
from knd.errors import KndError
from knd.models.classifier import Classifier
from knd.training.evaluate import evaluate


def test_paths_are_relative_to_the_manifest_and_labels_canonical(tmp_path):
    rows = [
        {"path": "a.wav", "label": "Anger", "speaker": "s1"},
        {"path": "/x/b.wav", "label": "boredom", "speaker": "s2"},
    ]
    manifest = write_manifest(tmp_path / "sub" / "m.csv", rows)
    rows = read_manifest(manifest)
    assert rows[0] == {
        "path": str(tmp_path / "sub" / "a.wav"),
        "label": "angry",
        "speaker": "s1",
        "split": "",
        "corpus": "",
        "gender": "",
    }
    assert rows[1]["path"] == "/x/b.wav" and rows[1]["label"] == "boredom"


@pytest.mark.parametrize(
    ("rows", "columns", "message"),
    [
        ([{"path": "a.wav", "label": "sad"}], None, "missing column speaker"),
        ([{"path": "a.wav", "label": "", "speaker": "s"}], None, "line 2: empty label"),
        (
            [{"path": "a.wav", "label": "sad", "speaker": "s", "split": "dev"}],
            None,
            "line 2: split 'dev' is not one of train, val, test",
        ),
        (
            [{"path": "a.wav", "label": "sad", "speaker": "s", "gender": "f"}],
            None,
            "line 2: gender 'f' is not one of female, male",
        ),
        ([], ["path", "label", "speaker"], "lists no files"),
    ],
)
def test_malformed_manifests_fail_naming_file_and_line(tmp_path, rows, columns, message):
    path = tmp_path / "bad.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(KndError, match=message) as err:
        read_manifest(path)
    assert str(err.value).startswith(str(path))


def test_combining_takes_the_corpus_from_the_file_name_and_refuses_mixed_splits(tmp_path):
    a = write_manifest(tmp_path / "crema.csv", [{"path": "a.wav", "label": "sad", "speaker": "1"}])
    b = write_manifest(tmp_path / "tess.csv", [{"path": "b.wav", "label": "sad", "speaker": "1"}])
    assert [r["corpus"] for r in read_manifests([a, b])] == ["crema", "tess"]
    assert [r["corpus"] for r in read_manifests([a])] == [""]
    c = write_manifest(
        tmp_path / "c.csv", [{"path": "c.wav", "label": "sad", "speaker": "1", "split": "test"}]
    )
    with pytest.raises(KndError, match="some manifests have a split column and some do not"):
        read_manifests([a, c])


def test_two_corpora_become_one_dataset_split_by_speaker(tmp_path):
    speakers = {"03": "male", "08": "female", "10": "male", "09": "female"}
    emo = voice_corpus(tmp_path / "emo", speakers, ["angry", "boredom", "neutral"])
    tess = voice_corpus(tmp_path / "tess", {"OAF": "female", "YAF": "female"}, ["angry", "neutral"])
    cfg = compose_config(*TINY, "data=manifest", f"data.manifest=[{emo},{tess}]")
    raw, out = tmp_path / "data" / "raw", tmp_path / "data" / "processed"
    fetch_data(cfg.data, raw)
    assert sorted(p.name for p in raw.iterdir()) == [MANIFEST_FILE]
    summary = make_dataset(cfg, raw, out)
    data = load_processed(out)

    assert summary["kept"] == 4 * 3 + 2 * 2 and summary["skipped"] == 0
    assert data.labels == ["neutral", "angry", "boredom"]  # `found`: canonical order, then others
    meta = data.meta
    assert set(meta["corpus"]) == {"emo", "tess"}
    assert set(meta["speaker"]) == {"emo/03", "emo/08", "emo/10", "emo/09", "tess/OAF", "tess/YAF"}
    splits = meta.groupby("speaker")["split"].nunique()
    assert (splits == 1).all(), "a speaker in two splits"
    assert meta.groupby("split")["speaker"].nunique().to_dict() == {"test": 2, "train": 2, "val": 2}
    assert data.split_strategy == "actor"
    clip = meta.iloc[0]
    assert Path(clip["path"]).is_absolute() and Path(clip["path"]).is_file()

    # evaluate reports each corpus's test clips apart (an untrained model on the found labels)
    model = tmp_path / "model.pt"
    Classifier(cfg.model, cfg.features, data.labels, data.mean, data.std).save(model, history=[])
    metrics = evaluate(out, model, tmp_path / "reports")
    test = meta[meta["split"] == "test"]
    assert metrics["per_corpus"].keys() == set(test["corpus"]) == {"emo", "tess"}
    clips = {k: v["test_clips"] for k, v in metrics["per_corpus"].items()}
    assert clips == test.groupby("corpus").size().to_dict()


def test_a_split_column_is_followed(tmp_path, caplog):
    split = {"a": "train", "b": "train", "c": "val", "d": "test"}.get
    manifest = voice_corpus(tmp_path, {s: "" for s in "abcd"}, ["sad", "happy"], split=split)
    cfg = compose_config(*TINY, "data=manifest", f"data.manifest={manifest}")
    fetch_data(cfg.data, tmp_path / "raw")
    make_dataset(cfg, tmp_path / "raw", tmp_path / "processed")
    data = load_processed(tmp_path / "processed")
    assert data.split_strategy == "manifest"
    assert dict(zip(data.meta["speaker"], data.meta["split"], strict=True)) == {
        s: split(s) for s in "abcd"
    }
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_labels_outside_the_class_set_are_skipped_and_counted(tmp_path):
    speakers = {"03": "male", "08": "female", "10": "male", "09": "female", "11": "male", "13": ""}
    manifest = voice_corpus(tmp_path, speakers, ["angry", "boredom"])
    cfg = compose_config(
        *TINY,
        "data=manifest",
        f"data.manifest={manifest}",
        "data.labels=emotion7",
        "data.max_skipped_fraction=0.5",
    )
    fetch_data(cfg.data, tmp_path / "raw")
    summary = make_dataset(cfg, tmp_path / "raw", tmp_path / "processed")
    assert summary["skipped_by_reason"] == {"label outside data.labels": 6}
    data = load_processed(tmp_path / "processed")
    assert set(data.meta["label"]) == {"angry"} and len(data.labels) == 7
    assert pd.api.types.is_integer_dtype(data.meta["speaker"])  # digits read back as numbers
