"""ONNX export and the torch-free backend: same numbers as the checkpoint, no torch imported."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient
from helpers.audio import RATE, mirror_clips, voice
from helpers.models import LABELS, TINY_CNN, make_checkpoint
from helpers.project import ROOT, compose_config, run_cli

from knd.config import FeatureConfig, from_dict
from knd.errors import KndError
from knd.models.features import FrontEnd
from knd.models.onnx_export import DftFrontEnd, export_onnx
from knd.serving.predict import load_predictor
from knd.serving.serve import create_app
from knd.serving.torch_backend import TorchPredictor

MODELS = {
    "cnn": TINY_CNN,
    "sernet": ("model=sernet", "model.channels=[8,16,16,32]"),
    "ensemble": ("model=sernet", "model.channels=[8,16,16,32]", "model.members=2"),
    "sernet-context": (
        "model=sernet",
        "model.channels=[8,16,16,32]",
        "model.use_transformer=true",
        "model.n_layers=1",
    ),
    "absolute-level": (
        "model=sernet",
        "model.channels=[8,16,16,32]",
        "features.level_norm=false",
        "features.log_floor=1e-7",
    ),
}


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request, tmp_path_factory):
    """(checkpoint, its ONNX export) for each architecture and for an ensemble.

    The export is not named after the checkpoint, so `load_predictor(checkpoint)` runs PyTorch.
    """
    folder = tmp_path_factory.mktemp(request.param)
    checkpoint = make_checkpoint(folder / "model.pt", *MODELS[request.param])
    export_onnx(checkpoint, folder / "export.onnx")
    return checkpoint, folder / "export.onnx"


def test_onnx_agrees_with_pytorch_on_real_clips(exported):
    checkpoint, exported_model = exported
    clips = mirror_clips(12)
    torch_backend, onnx_backend = load_predictor(checkpoint), load_predictor(exported_model)
    waves = [torch_backend.read(data, name) for name, data in clips.items()]
    waves.append(np.concatenate(waves[:3]))  # one long clip: several windows
    want = [list(p.values()) for p in torch_backend.predict(waves)]
    got = [list(p.values()) for p in onnx_backend.predict(waves)]
    assert (torch_backend.backend, onnx_backend.backend) == ("torch", "onnx")
    assert onnx_backend.labels == LABELS
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_onnx_embeddings_agree_with_pytorch(exported):
    """The second output: each clip's pooled embedding (mean over its windows), both backends."""
    checkpoint, exported_model = exported
    torch_backend, onnx_backend = load_predictor(checkpoint), load_predictor(exported_model)
    waves = [torch_backend.read(data, name) for name, data in mirror_clips(6).items()]
    waves.append(np.concatenate(waves[:3]))
    want_p, want = torch_backend.clip_outputs(waves, embeddings=True)
    got_p, got = onnx_backend.clip_outputs(waves, embeddings=True)
    np.testing.assert_allclose(got_p, torch_backend.probabilities(waves), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(want_p, torch_backend.probabilities(waves))
    assert got.shape == want.shape and got.shape[0] == len(waves) and got.shape[1] >= 8
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max(), rtol=0)


def test_an_export_without_the_embedding_output_predicts_but_refuses_embeddings(tmp_path):
    """Exports made before the second output: still a model, and a clear way to get embeddings."""
    path = tmp_path / "old.onnx"
    export_onnx(make_checkpoint(tmp_path / "model.pt"), path)
    model = onnx.load(path)
    del model.graph.output[1]
    onnx.save(model, path)
    predictor = load_predictor(path)
    wave = voice(3.0)
    want = load_predictor(tmp_path / "model.pt").predict([wave])[0]
    assert predictor.predict([wave])[0] == pytest.approx(want, abs=1e-4)
    with pytest.raises(KndError) as err:
        predictor.clip_outputs([wave], embeddings=True)
    assert str(err.value) == (
        f"{path}: this export has no 'embedding' output (made by an older knd); "
        "re-export it with `knd export` for embeddings"
    )


def test_onnx_file_is_self_contained(exported):
    checkpoint, exported_model = exported
    model = onnx.load(exported_model)
    meta = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert meta["knd.labels"] == LABELS
    assert meta["knd.checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert from_dict(FeatureConfig, meta["knd.feature_config"]).num_samples == 2 * RATE
    (waveform,), (probabilities, embedding) = model.graph.input, model.graph.output
    dims = [d.dim_param or d.dim_value for d in waveform.type.tensor_type.shape.dim]
    assert (waveform.name, dims) == ("waveform", ["batch", 2 * RATE])
    assert probabilities.name == "probabilities" and embedding.name == "embedding"
    assert embedding.type.tensor_type.shape.dim[0].dim_param == "batch"


@pytest.mark.parametrize(
    "overrides",
    [
        (),
        (
            "features=mfcc",
            "features.n_fft=512",
            "features.win_length=400",
            "features.hop_length=160",
        ),
        ("features=spectrogram", "features.duration=1.0"),
    ],
    ids=["logmel", "mfcc-short-window", "spectrogram"],
)
def test_dft_front_end_matches_torch_stft(overrides):
    """The one replaced step, to float32 rounding; the rest of `forward` is inherited."""
    cfg = compose_config(*overrides).features
    waves = torch.from_numpy(np.stack([voice(cfg.duration), voice(cfg.duration, f0=260)]))
    with torch.no_grad():
        want = FrontEnd(cfg).power_spectrogram(waves)
        got = DftFrontEnd(cfg).power_spectrogram(waves)
        assert DftFrontEnd(cfg)(waves).shape == FrontEnd(cfg)(waves).shape
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * want.max().item())


# --- a checkpoint runs on the export beside it, while that was made from it ------------------


def test_a_checkpoint_runs_on_its_own_export_beside_it(tmp_path, caplog):
    checkpoint, export = tmp_path / "model.pt", tmp_path / "model.onnx"
    export_onnx(make_checkpoint(checkpoint, *MODELS["sernet"]), export)
    with caplog.at_level("INFO", logger="knd"):
        predictor = load_predictor(checkpoint)
    assert predictor.backend == "onnx"
    assert caplog.messages == [f"{checkpoint}: running its ONNX export {export}"]
    waves = [predictor.read(data, name) for name, data in mirror_clips(6).items()]
    got = [list(p.values()) for p in predictor.predict(waves)]
    want = [list(p.values()) for p in TorchPredictor(checkpoint).predict(waves)]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    with TestClient(create_app(checkpoint)) as client:
        assert client.get("/health").json()["backend"] == "onnx"
    code = (  # the default `knd serve` (models/model.pt beside its export) needs no torch
        "import sys; from knd.serving.predict import load_predictor; "
        f"assert load_predictor({str(checkpoint)!r}).backend == 'onnx'; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("stale", ["other-checkpoint", "no-hash", "junk"])
def test_a_stale_or_broken_export_beside_the_checkpoint_is_ignored(tmp_path, caplog, stale):
    """PyTorch runs, and one line says why, when the export beside the checkpoint is stale.

    Stale: made from another checkpoint (retrained since; here another architecture too), made
    before exports recorded their checkpoint's hash, or no export at all.
    """
    checkpoint = make_checkpoint(tmp_path / "model.pt")
    export = tmp_path / "model.onnx"
    if stale == "junk":
        export.write_bytes(b"junk")
    else:
        export_onnx(make_checkpoint(tmp_path / "old.pt", *MODELS["sernet"]), export)
    if stale == "no-hash":
        shutil.copy(tmp_path / "old.pt", checkpoint)
        model = onnx.load(export)
        kept = [p for p in model.metadata_props if p.key != "knd.checkpoint_sha256"]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
        onnx.save(model, export)
    with caplog.at_level("INFO", logger="knd"):
        predictor = load_predictor(checkpoint)
    assert predictor.backend == "torch"
    (line,) = caplog.messages
    reason = "not a loadable ONNX model" if stale == "junk" else "not exported from this checkpoint"
    assert line.startswith(f"{checkpoint}: ignoring {export} ({reason}")


def test_export_command_and_a_bad_checkpoint(monkeypatch, capsys, tmp_path):
    checkpoint = make_checkpoint(tmp_path / "model.pt")
    status, out, _ = run_cli(
        monkeypatch, capsys, "export", "--model", str(checkpoint), "--out", str(tmp_path / "m.onnx")
    )
    assert status == 0 and "max probability difference" in out and (tmp_path / "m.onnx").is_file()
    (tmp_path / "junk.pt").write_bytes(b"junk")
    status, _, err = run_cli(monkeypatch, capsys, "export", "--model", str(tmp_path / "junk.pt"))
    assert status == 1 and "junk.pt: not a knd checkpoint" in err


def test_an_export_that_fails_parity_leaves_the_previous_one(monkeypatch, tmp_path):
    checkpoint = make_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the previous export")
    monkeypatch.setattr("knd.models.onnx_export.TOLERANCE", -1.0)  # any difference fails
    with pytest.raises(KndError, match=r"model\.onnx: export differs from .*model\.pt by"):
        export_onnx(checkpoint, out)
    assert out.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.pt"]


def test_a_foreign_onnx_file_is_refused_with_a_reason(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(KndError, match=r"junk\.onnx: not a loadable ONNX model"):
        load_predictor(tmp_path / "junk.onnx")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["waveform"], ["probabilities"])],
        "bare",
        [onnx.helper.make_tensor_value_info("waveform", onnx.TensorProto.FLOAT, [1, 8])],
        [onnx.helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, [1, 8])],
    )
    onnx.save(onnx.helper.make_model(graph), tmp_path / "bare.onnx")
    with pytest.raises(KndError, match=r"bare\.onnx: ONNX model without knd metadata"):
        load_predictor(tmp_path / "bare.onnx")


def test_an_export_whose_feature_config_lacks_a_key_is_refused(tmp_path):
    """No code default stands in for a key the export lacks (here the one whose meaning changed)."""
    path = tmp_path / "model.onnx"
    export_onnx(make_checkpoint(tmp_path / "model.pt"), path)
    model = onnx.load(path)
    (meta,) = [p for p in model.metadata_props if p.key == "knd.feature_config"]
    meta.value = json.dumps({k: v for k, v in json.loads(meta.value).items() if k != "log_floor"})
    onnx.save(model, path)
    with pytest.raises(KndError) as err:
        load_predictor(path)
    assert str(err.value).startswith(f"{path}: ") and "log_floor: missing" in str(err.value)


# --- audio: one reader for both backends --------------------------------------------------------


def _wav(wave: np.ndarray, rate: int, subtype: str = "FLOAT") -> bytes:
    out = io.BytesIO()
    sf.write(out, wave, rate, format="WAV", subtype=subtype)
    return out.getvalue()


def test_both_backends_read_audio_alike(exported, tmp_path):
    """Same samples and the same messages: both are `knd.audio.read_audio`."""
    checkpoint, exported_model = exported
    torch_backend, onnx_backend = load_predictor(checkpoint), load_predictor(exported_model)
    stereo = np.stack([voice(1.0, 44_100), voice(1.0, 44_100, f0=210)], axis=1)
    good = {"mono.wav": _wav(voice(1.0), RATE, "PCM_16"), "stereo44k.wav": _wav(stereo, 44_100)}
    for name, data in good.items():
        wave = onnx_backend.read(data, name)
        assert wave.dtype == np.float32 and wave.shape == (RATE,)
        np.testing.assert_array_equal(wave, torch_backend.read(data, name))
    bad = {
        "garbage.wav": b"definitely not audio",
        "empty.wav": b"",
        "silent.wav": _wav(np.zeros(1000, np.float32), RATE),
        "truncated.wav": _wav(voice(1.0), RATE, "PCM_16")[:5000],
        "nan.wav": _wav(np.full(100, np.nan, np.float32), RATE),
        "odd-rate.wav": _wav(voice(0.5, 999), 999),
    }
    for name, data in [*bad.items(), ("missing.wav", tmp_path / "missing.wav")]:
        with pytest.raises(KndError) as want:
            torch_backend.read(data, name)
        with pytest.raises(KndError) as got:
            onnx_backend.read(data, name)
        assert str(got.value) == str(want.value) and str(got.value).startswith(f"{name}: ")


def test_onnx_backend_never_imports_torch(exported, tmp_path):
    """Predict, serve and the CLI on an ONNX model in a fresh interpreter without torch."""
    _, exported_model = exported
    clip = tmp_path / "clip.flac"
    sf.write(clip, np.stack([voice(3.0, 44_100)] * 2, axis=1), 44_100)
    code = textwrap.dedent(
        f"""
        import contextlib, io, json, sys
        from fastapi.testclient import TestClient
        from knd.cli import main
        from knd.serving.predict import load_predictor
        from knd.serving.serve import create_app

        predictor = load_predictor({str(exported_model)!r})
        (probabilities,) = predictor.predict([predictor.read({str(clip)!r})])
        with TestClient(create_app({str(exported_model)!r})) as client:
            assert client.get("/health").json()["backend"] == "onnx"
            answer = client.post("/predict", files={{"file": open({str(clip)!r}, "rb")}})
            assert answer.json()["probabilities"] == probabilities, answer.text
            answer = client.post("/timeline", files={{"file": open({str(clip)!r}, "rb")}})
            assert answer.json()["segments"], answer.text
        sys.argv = ["knd", "predict", {str(clip)!r}, "--model", {str(exported_model)!r},
                    "--format", "json"]
        def knd_json():
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                try:
                    main()
                except SystemExit as exit_:
                    assert not exit_.code, exit_.code
            return json.loads(out.getvalue())
        assert knd_json()[0]["probabilities"] == probabilities
        sys.argv += ["--timeline", "--embeddings"]
        assert knd_json()[0]["segments"][0]["embedding"]
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if "torch" in m)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
