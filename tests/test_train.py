"""Training on a tiny real subset: repeatable, resumable, data-parallel, augmenting train only."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.project import TINY, compose_config, git_env, write_params

from knd.data.processed import load_processed
from knd.errors import KndError
from knd.metrics import scalars
from knd.models.classifier import Classifier
from knd.training.augment import Augmenter
from knd.training.evaluate import evaluate, evaluate_split
from knd.training.finetune import output_keys
from knd.training.release import release
from knd.training.train import Runtime, Trainer, fit, native_bfloat16, train


def _run(processed: Path, out: Path, *overrides: str) -> dict:
    cfg = compose_config(*TINY, *overrides)
    result = train(cfg, processed, out / "model.pt", out / "dvclive", out / "last.pt")
    evaluate(processed, out / "model.pt", out / "reports")
    return result


def _metrics(out: Path) -> str:
    return (out / "reports" / "metrics.json").read_text()


@pytest.mark.slow
def test_same_seed_gives_identical_metrics(processed, tmp_path):
    _run(processed, tmp_path / "a")
    _run(processed, tmp_path / "b")
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_checkpoint_is_self_contained(processed, tmp_path):
    _run(processed, tmp_path)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert {"state_dict", "model_config", "feature_config", "labels", "history"} <= set(state)
    assert state["feature_config"]["duration"] == 2.0
    assert len(state["labels"]) == 8 and len(state["history"]) == 2
    metrics = json.loads(_metrics(tmp_path))
    assert {"accuracy", "uar", "f1_macro", "f1_weighted"} <= set(metrics)
    assert metrics["split"] == "actor" and "warning" not in metrics


@pytest.mark.slow
@pytest.mark.parametrize("select", ["best", "last"])
def test_checkpoint_holds_the_selected_epoch(processed, tmp_path, select):
    result = _run(processed, tmp_path, f"train.select={select}", "train.epochs=3")
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    history = saved["history"]
    best = 1 + max(range(3), key=lambda i: history[i]["val_uar"])  # the first of equals
    want = best if select == "best" else 3
    assert result["selected_epoch"] == want and saved["validation"] == history[want - 1]
    val = scalars(
        evaluate_split(Classifier.load(tmp_path / "model.pt"), load_processed(processed), "val")
    )
    assert val["uar"] == pytest.approx(history[want - 1]["val_uar"], abs=1e-5)


@pytest.mark.slow
def test_random_split_metrics_say_they_are_leaky(subset_zip, tmp_path):
    from knd.data.download import download_and_extract
    from knd.data.make_dataset import make_dataset

    raw = download_and_extract(str(subset_zip), None, tmp_path / "raw", tmp_path / "dl")
    make_dataset(compose_config(*TINY, "split=random"), raw, tmp_path / "processed")
    _run(tmp_path / "processed", tmp_path, "train.epochs=1")
    assert "LEAKY" in json.loads(_metrics(tmp_path))["warning"]


@pytest.mark.slow
def test_augmentation_touches_training_batches_only(processed, tmp_path, monkeypatch):
    seen, calls = [], {"waveform": 0, "spectrogram": 0, "mixup": 0}
    original_inputs = Trainer.inputs

    def inputs(self, index, gen):
        seen.append(index)
        return original_inputs(self, index, gen)

    def counting(name):
        method = getattr(Augmenter, name)

        def wrapper(self, *args):
            calls[name] += 1
            return method(self, *args)

        return wrapper

    monkeypatch.setattr(Trainer, "inputs", inputs)
    for name in calls:
        monkeypatch.setattr(Augmenter, name, counting(name))
    _run(processed, tmp_path)
    train_index = set(load_processed(processed).indices("train").tolist())
    assert seen and all(set(i.tolist()) <= train_index for i in seen)
    assert calls == {name: len(seen) for name in calls}


def test_ensemble_members_train_on_batches_of_their_own(processed, tmp_path, monkeypatch):
    seen = []
    original_inputs = Trainer.inputs

    def inputs(self, index, gen):
        seen.append(index)
        return original_inputs(self, index, gen)

    monkeypatch.setattr(Trainer, "inputs", inputs)
    _run(processed, tmp_path, "model.members=2")
    first, second = seen[0::2], seen[1::2]  # each step: member 0's batch, then member 1's
    assert len(first) == len(second) > 0
    assert not any(torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU's mixed precision")
@pytest.mark.parametrize(
    ("native", "amp", "trains_in"),
    [
        (True, True, torch.bfloat16),
        (False, True, torch.float32),  # no AMX: float32, as before
        (True, False, torch.float32),
    ],
)
def test_a_cpu_trains_in_bfloat16_only_with_it_in_hardware(
    processed, monkeypatch, native, amp, trains_in
):
    monkeypatch.setattr("knd.training.train.native_bfloat16", lambda: native)
    cfg = compose_config(*TINY, f"train.amp={str(amp).lower()}")
    trainer = Trainer(cfg, load_processed(processed), Runtime.setup(cfg))
    seen = []
    trainer.model.net.register_forward_hook(lambda net, args, out: seen.append(out.dtype))
    trainer.train_epoch()
    assert set(seen) == {trains_in}
    assert {p.dtype for p in trainer.model.net.parameters()} == {torch.float32}
    seen.clear()
    trainer.validate()
    assert set(seen) == {torch.float32}  # scored as `predict` and the ONNX export score


def test_an_ensemble_with_a_speaker_adversary_is_refused(processed, tmp_path):
    cfg = compose_config(*TINY, "model.members=2", "train.speaker_adversary=0.1")
    with pytest.raises(KndError, match=r"needs model\.members=1"):
        train(cfg, processed, tmp_path / "model.pt", None, tmp_path / "last.pt")
    assert not any(tmp_path.iterdir())


def _project(tmp_path: Path, processed: Path, *overrides: str) -> Path:
    """A working directory laid out like the project, for `knd train` subprocesses."""
    (tmp_path / "data").mkdir(parents=True)
    (tmp_path / "data" / "processed").symlink_to(processed)
    write_params(tmp_path / "params.yaml", *TINY, *overrides)
    return tmp_path


def _knd(*args: str) -> list[str]:
    return [sys.executable, "-m", "knd.cli", *args]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(processed, tmp_path):
    reference = _project(tmp_path / "ref", processed, "train.epochs=4")
    subprocess.run(_knd("train"), cwd=reference, env=git_env(), check=True, capture_output=True)

    run = _project(tmp_path / "run", processed, "train.epochs=4")
    state = run / "models" / "checkpoints" / "last.pt"
    proc = subprocess.Popen(_knd("train"), cwd=run, env=git_env(), stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "training finished before it could be killed"
    assert not (run / "models" / "heldout.pt").exists()

    write_params(run / "params.yaml", *TINY, "train.epochs=4", "train.resume=true")
    done = subprocess.run(_knd("train"), cwd=run, env=git_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resume: continuing after epoch" in done.stderr  # the log, on stderr
    a = torch.load(reference / "models" / "heldout.pt", weights_only=True)
    b = torch.load(run / "models" / "heldout.pt", weights_only=True)
    assert a["history"] == b["history"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


@pytest.mark.slow
@pytest.mark.parametrize("members", [1, 2])
def test_distributed_data_parallel_with_gloo(processed, tmp_path, members):
    run = _project(
        tmp_path, processed, "train.epochs=1", "train.num_threads=1", f"model.members={members}"
    )
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "knd.cli", "train"]
    env = git_env() | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=run, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("epoch   1/1") == 1, "only rank 0 validates and logs (on stderr)"
    assert (run / "models" / "heldout.pt").is_file()
    assert os.path.getsize(run / "models" / "heldout.pt") > 10_000


@pytest.mark.slow
def test_plateau_scheduler_keeps_the_ranks_in_step(processed, tmp_path):
    """Only rank 0 validates, but every rank must step its plateau scheduler on that UAR.

    A rate this small leaves the weights still, but BatchNorm's running statistics settle over
    the first epochs and can still lift the validation UAR; after them it stays flat, so the
    plateau (patience 3) halves the rate well before epoch 12, and the last epochs train with it.
    """
    overrides = ("train.scheduler=plateau", "train.lr=1e-6", "train.epochs=12", "augment=none")
    run = _project(tmp_path, processed, *overrides, "release.start=heldout", "train.num_threads=1")
    torchrun = Path(sys.executable).parent / "torchrun"
    probe = Path(__file__).parent / "helpers" / "ddp_probe.py"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(probe), str(tmp_path)]
    env = git_env() | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=run, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["lr"] < 1e-6, "the plateau never reduced the rate: this run tests nothing"
    assert rank1["lr"] == rank0["lr"]
    assert rank0["weights"].keys() == rank1["weights"].keys()
    assert all(torch.equal(rank0["weights"][k], rank1["weights"][k]) for k in rank0["weights"])


def _release(processed: Path, out: Path, *overrides: str) -> dict:
    """The release of `_run`'s held-out model in `out`, as `knd release` makes it."""
    cfg = compose_config(*TINY, *overrides)
    model, state = out / "release.pt", out / "release_last.pt"
    release(cfg, processed, out / "model.pt", out / "reports" / "metrics.json", model, state)
    return torch.load(model, weights_only=True)


@pytest.mark.slow
def test_release_trains_on_every_actor_and_carries_the_held_out_numbers(processed, tmp_path):
    _run(processed, tmp_path)  # the held-out model and its reports
    heldout = torch.load(tmp_path / "model.pt", weights_only=True)
    assert float(heldout["state_dict"]["temperature"]) == 1.0, "measured, never fitted on itself"
    assert heldout["trained_with"] == {
        "torch": str(torch.__version__),
        "device": "cpu",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": 2,  # TINY's train.num_threads
        "processes": 1,
        "mixed_precision": native_bfloat16(),  # TINY keeps train.amp
    }
    temperature = json.loads(_metrics(tmp_path))["temperature"]  # fitted on the test actors
    assert temperature != 1.0
    released = _release(processed, tmp_path, "train.calibrate=true", "release.start=scratch")
    everyone = sorted(set(load_processed(processed).meta["speaker"]))
    assert released["trained_on_actors"] == everyone
    assert set(heldout["trained_on_actors"]) < set(everyone)  # test and val actors held out
    assert released["heldout"]["trained_on_actors"] == heldout["trained_on_actors"]
    assert released["heldout"]["metrics"] == json.loads(_metrics(tmp_path))
    assert float(released["state_dict"]["temperature"]) == pytest.approx(temperature)
    assert len(released["history"]) == 2 and "val_uar" not in released["history"][-1]


@pytest.mark.slow
def test_a_release_from_the_held_out_model_continues_it_on_every_actor(processed, tmp_path):
    _run(processed, tmp_path)
    heldout = torch.load(tmp_path / "model.pt", weights_only=True)
    released = _release(
        processed,
        tmp_path,
        "release.start=heldout",
        "release.epochs=3",
        "train.epochs=5",
        "release.lr=0.0007",
    )
    assert released["trained_on_actors"] == sorted(set(load_processed(processed).meta["speaker"]))
    assert released["init_from"]["path"] == str(tmp_path / "model.pt")
    assert released["init_from"]["output_layer"] == "kept"
    assert len(released["history"]) == 3, "release.epochs, not train.epochs"
    assert released["train_config"]["lr"] == 0.0007, "release.lr, not train.lr"
    before, after = heldout["state_dict"], released["state_dict"]
    for key in ("mean", "std"):  # the normalisation the weights learnt with
        assert torch.equal(after[key], before[key])
    moved = [k for k in before if k.endswith("weight") and not torch.equal(after[k], before[k])]
    assert moved, "the held-out weights were not trained on"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("start", "validated", "epochs", "scheduler"),
    [
        ("heldout", ("train.scheduler=plateau",), 2, "none"),  # release.epochs at release.lr
        ("scratch", (), 3, "onecycle"),  # train.epochs, none stopped early
    ],
)
def test_a_release_follows_a_held_out_model_that_used_its_validation_actors(
    processed, tmp_path, start, validated, epochs, scheduler
):
    """`select=best`, `patience` and `plateau` act on validation scores; the release has none."""
    validated = ("train.select=best", "train.patience=1", "train.epochs=3", *validated)
    validated = (*validated, f"release.start={start}")  # a plateau needs the continuation
    _run(processed, tmp_path, *validated)
    released = _release(processed, tmp_path, *validated)
    settings = {k: released["train_config"][k] for k in ("select", "patience", "scheduler")}
    assert settings == {"select": "last", "patience": 0, "scheduler": scheduler}
    assert len(released["history"]) == epochs
    if start == "heldout":
        assert {row["lr"] for row in released["history"]} == {0.0005}, "release.lr held"


@pytest.mark.slow
def test_a_release_keeps_a_frozen_encoder_frozen(processed, tmp_path):
    _run(processed, tmp_path)  # the held-out model the release continues
    heldout = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    frozen = (f"train.init_from={tmp_path / 'model.pt'}", "train.freeze_encoder=true")
    released = _release(processed, tmp_path, *frozen, "release.epochs=1")["state_dict"]
    moved = {
        k for k in heldout if k.startswith("net.") and not torch.equal(released[k], heldout[k])
    }
    assert moved and moved <= set(output_keys(Classifier.load(tmp_path / "release.pt")))


def test_without_validation_actors_only_the_last_epoch_can_be_kept(processed, tmp_path):
    data = load_processed(processed)
    everyone = dataclasses.replace(data, meta=data.meta.assign(split="train"))
    for setting in ("train.select=best", "train.patience=3", "train.scheduler=plateau"):
        with pytest.raises(KndError, match="no validation actors"):
            cfg = compose_config(*TINY, setting, "release.start=heldout")  # plateau needs it
            fit(cfg, everyone, tmp_path / "m.pt", None, tmp_path / "s")
