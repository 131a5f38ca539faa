"""One long-clip policy: what knd reports is what `knd predict` says about the same files."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from helpers.project import TINY, compose_config, run_cli

from knd.data.processed import load_processed
from knd.serving.predictor import window_starts
from knd.training.evaluate import evaluate
from knd.training.train import train


@pytest.mark.slow
def test_predict_reproduces_the_evaluate_stage(processed, tmp_path, monkeypatch, capsys):
    cfg = compose_config(*TINY, "train.epochs=1")
    model = tmp_path / "model.pt"
    train(cfg, processed, model, tmp_path / "dvclive", tmp_path / "last.pt")
    evaluate(processed, model, tmp_path / "reports")
    reports = pd.read_csv(tmp_path / "reports" / "predictions.csv")

    data = load_processed(processed)
    test = data.indices("test")
    windows = [len(window_starts(len(data.clip(i)), cfg.features.num_samples)) for i in test]
    assert len(reports) == len(test) and max(windows) > 1, "no clip longer than the window"

    raw = processed.parent / "raw"  # where the `processed` fixture extracted the clips
    files = [str(raw / path) for path in reports["path"]]
    capsys.readouterr()  # what training and evaluation printed
    status, out, _ = run_cli(
        monkeypatch, capsys, "predict", *files, "--model", str(model), "--format", "csv"
    )
    predicted = pd.read_csv(io.StringIO(out))
    assert status == 0 and predicted["path"].tolist() == files
    assert predicted["label"].tolist() == reports["predicted"].tolist()
    for label in data.labels:
        assert predicted[label].to_numpy() == pytest.approx(reports[label].to_numpy(), abs=1e-5)
