"""W&B offline runs carry what the docs promise: resolved config, DVC experiment name, model
artifact, per-class table and confusion matrix.

Offline, W&B writes `files/media/...` for tables but keeps config, summary and artifacts only in
the binary `run-*.wandb` log (config.yaml and wandb-summary.json appear on sync). That log is a
LevelDB-style record log of `wandb_internal_pb2.Record` protobufs, read here in a few lines.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import wandb
from helpers.project import TINY, compose_config

from knd.config import to_dict
from knd.training.tracking import MODEL_ARTIFACT, Tracker, track_evaluation

LABELS = ["neutral", "calm", "happy"]
METRICS = {
    "per_class": {k: {"precision": 0.5, "recall": 0.25, "f1": 1 / 3} for k in LABELS},
    "confusion_matrix": [[2, 1, 0], [0, 3, 0], [1, 0, 2]],
}


def records(run_dir: Path) -> dict[str, list]:
    """The records of an offline run, by type ("run", "config", "history", "artifact", ...)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = (next(run_dir.glob("run-*.wandb"))).read_bytes()
    assert data[:4] == b":W&B"
    block, pos, chunk, out = 32768, 7, b"", {}
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer too short for a header: zero padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST piece of a record
            record = pb.Record.FromString(chunk)
            out.setdefault(record.WhichOneof("record_type"), []).append(record)
            chunk = b""
    return out


def items(updates) -> dict:
    return {
        "/".join([u.key] if u.key else list(u.nested_key)): json.loads(u.value_json)
        for u in updates
    }


@pytest.fixture
def wandb_env(tmp_path, monkeypatch) -> Path:
    """Offline W&B confined to tmp_path, inside a DVC experiment called `brisk-lark`."""
    for name in ("DIR", "DATA_DIR", "CACHE_DIR", "CONFIG_DIR"):  # runs, artifact staging, ...
        monkeypatch.setenv(f"WANDB_{name}", str(tmp_path / name.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-lark")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0" * 40)
    return tmp_path / "dir"


def test_offline_runs_hold_config_model_and_evaluation(wandb_env: Path):
    cfg = compose_config(*TINY, "wandb.mode=offline")
    checkpoint = wandb_env.parent / "model.pt"
    checkpoint.write_bytes(b"not really a checkpoint")

    tracker = Tracker(cfg, "train")
    for epoch in (1, 2):
        tracker.log({"epoch": epoch, "train_loss": 1 / epoch, "val_uar": 0.2 * epoch}, step=epoch)
    tracker.summary({"best_epoch": 2, "best_val_uar": 0.4})
    tracker.log_model(checkpoint, {"best_epoch": 2})
    tracker.finish()
    track_evaluation(cfg, {"uar": 0.25, "accuracy": 0.3}, METRICS, LABELS)
    wandb.teardown()  # the W&B service flushes its files when it stops, as at process exit

    runs = {}
    for run_dir in sorted((wandb_env / "wandb").glob("offline-run-*")):
        found = records(run_dir)
        runs[found["run"][0].run.job_type] = (run_dir, found)
    assert set(runs) == {"train", "evaluate"}

    for job, (_, found) in runs.items():
        run = found["run"][0].run
        assert (run.display_name, run.run_group) == (f"brisk-lark-{job}", "brisk-lark")
        assert {"brisk-lark", cfg.model.name, cfg.split.strategy} <= set(run.tags)
        config = items(run.config.update)
        for section, values in to_dict(cfg).items():
            assert config[section] == values  # the whole resolved config
        assert config["dvc"] == {"exp_name": "brisk-lark", "baseline_rev": "0" * 40}

    _, train = runs["train"]
    (model,) = [a.artifact for a in train["artifact"] if a.artifact.type == "model"]
    assert model.name == MODEL_ARTIFACT and {"latest", "brisk-lark"} <= set(model.aliases)
    assert json.loads(model.metadata)["best_epoch"] == 2
    (entry,) = model.manifest.contents
    assert (
        entry.path == "model.pt" and Path(entry.local_path).read_bytes() == checkpoint.read_bytes()
    )
    history = [items(h.history.item) for h in train["history"]]
    assert [h["val_uar"] for h in history] == [0.2, 0.4]

    run_dir, evaluate = runs["evaluate"]
    summary = {k: v for s in evaluate["summary"] for k, v in items(s.summary.update).items()}
    assert summary["test/uar"] == 0.25
    (table,) = (run_dir / "files" / "media" / "table" / "test").glob("per_class_*.table.json")
    assert json.loads(table.read_text())["data"][0] == ["neutral", 0.5, 0.25, 1 / 3]
    (cm,) = (run_dir / "files" / "media" / "table" / "test").glob("confusion_matrix_*.table.json")
    counts = {(a, p): n for a, p, n in json.loads(cm.read_text())["data"]}
    assert counts[("neutral", "calm")] == 1 and counts[("calm", "calm")] == 3
    assert "test/confusion_matrix" in json.dumps(
        [items(c.config.update) for c in evaluate["config"]]
    )


def test_environment_switches_it_off(wandb_env: Path, monkeypatch):
    """WANDB_MODE=disabled (CI) wins over `wandb.mode: offline` in params.yaml."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    tracker = Tracker(compose_config(*TINY, "wandb.mode=offline"), "train")
    tracker.log({"x": 1})
    tracker.log_model(wandb_env.parent / "missing.pt", {})
    tracker.finish()
    assert tracker.run is None and not (wandb_env / "wandb").exists()
