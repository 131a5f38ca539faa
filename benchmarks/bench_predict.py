"""Inference speed of both backends, as a user meets it; prints a markdown table, asserts nothing.

    python benchmarks/bench_predict.py [--model models/model.pt] [--requests 200] [--limit 1200]

Measures, for the checkpoint alone (PyTorch) and the checkpoint beside its `knd export` (what
`knd serve` and `knd predict` run by default once exported: ONNX Runtime; /health says so):
- service latency p50/p95 of `POST /predict` with a 4 s clip, as a 16 kHz WAV (the mirror's
  rate) and as a 48 kHz one (what phones and browsers send): `--requests` sequential requests to
  two `knd serve` subprocesses on 127.0.0.1, alternating between them so both backends meet the
  same background load (after 5 warm-up requests each), and their start-up times;
- `knd predict` throughput over the RAVDESS mirror clips (whole command, start-up included);
- cold start of `knd predict` on one file, and of `knd predict --help`.
Every command runs as a fresh `python -m knd.cli` process, the way users start it. Numbers on a
shared 2-core machine are noisy: compare backends within one run, not across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parents[1]
MIRROR = ROOT.parent / "shared" / "data" / "ravdess" / "Audio_Speech_Actors_16k_dev.zip"
KND = [sys.executable, "-m", "knd.cli"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "model.pt")
    parser.add_argument("--requests", type=int, default=200, help="Requests per backend.")
    parser.add_argument("--limit", type=int, default=1200, help="Mirror clips for throughput.")
    parser.add_argument("--repeats", type=int, default=3, help="Cold starts timed (median).")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="knd-bench-") as tmp:
        tmp = Path(tmp)
        given = args.model if args.model.is_file() else untrained_checkpoint(tmp / "given.pt")
        alone, exported = tmp / "alone" / "model.pt", tmp / "model.pt"
        alone.parent.mkdir()
        for copy in (alone, exported):
            shutil.copyfile(given, copy)
        run([*KND, "export", "--model", str(exported), "--out", str(tmp / "model.onnx")])
        clips = extract_mirror(tmp / "clips", args.limit)
        clip = four_second_clip(clips, tmp / "clip4s.wav")
        uploads = {
            "4 s clip, 16 kHz WAV": clip,
            "4 s clip, 48 kHz WAV": four_second_clip(clips, tmp / "clip4s-48k.wav", 48_000),
        }

        models = (alone, exported)
        rows: dict[str, list[str]] = {}
        with contextlib.ExitStack() as stack:
            servers = [stack.enter_context(serving(model)) for model in models]
            urls = [url for url, _, _ in servers]
            latencies = {
                name: service_latencies(urls, u, args.requests) for name, u in uploads.items()
            }
        add(rows, "backend (`GET /health`)", *(backend for _, _, backend in servers))
        for name, per_server in latencies.items():
            for seconds in per_server:
                p50, p95 = np.percentile(seconds, [50, 95]) * 1000
                add(rows, f"service latency p50, {name} (ms)", f"{p50:.1f}")
                add(rows, f"service latency p95, {name} (ms)", f"{p95:.1f}")
        for _, start_up, _ in servers:
            add(rows, "service start-up until /health answers (s)", f"{start_up:.2f}")
        if clips:
            for model in models:
                seconds = run([*KND, "predict", str(clips[0].parent), "--model", str(model)])
                measure = f"`knd predict` on {len(clips)} mirror clips, start-up included (clips/s)"
                add(rows, measure, f"{len(clips) / seconds:.1f}")
        cold = interleaved([[*KND, "predict", str(clip), "--model", str(m)] for m in models], args)
        add(rows, "`knd predict` on one file, cold (s)", *(f"{t:.2f}" for t in cold))
        (help_time,) = interleaved([[*KND, "predict", "--help"]], args)
        add(rows, "`knd predict --help` (s)", f"{help_time:.2f}", f"{help_time:.2f}")

    print(f"\nModel: {given if given == args.model else 'untrained default config'}")
    print("\n| measure | .pt alone | .pt beside its export (the default) |\n|---|---|---|")
    for measure, values in rows.items():
        print(f"| {measure} | {' | '.join(values)} |")


def add(rows: dict[str, list[str]], measure: str, *values: str) -> None:
    rows.setdefault(measure, []).extend(values)


def untrained_checkpoint(path: Path) -> Path:
    """The default configuration with random weights: same shapes and cost as a trained model."""
    import torch

    from knd.config import load_config
    from knd.data.labels import label_names
    from knd.models.classifier import Classifier

    print(f"no checkpoint given: timing an UNTRAINED default-config model ({path.name})")
    cfg = load_config(ROOT / "params.yaml")
    labels = label_names(cfg.data.labels)
    mean, std = torch.zeros(cfg.features.num_bins), torch.ones(cfg.features.num_bins)
    Classifier(cfg.model, cfg.features, labels, mean, std).save(path, history=[])
    return path


def extract_mirror(folder: Path, limit: int) -> list[Path]:
    if not MIRROR.is_file():
        print(f"{MIRROR} not found: skipping the throughput measure")
        return []
    folder.mkdir()
    with zipfile.ZipFile(MIRROR) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".wav"))[:limit]
        for name in names:
            (folder / Path(name).name).write_bytes(z.read(name))
    return sorted(folder.iterdir())


def four_second_clip(clips: list[Path], path: Path, rate: int = 16_000) -> Path:
    """A real clip cut or looped to 4.0 s (a tone-like stand-in without the mirror), 16-bit WAV.

    At another `rate` than the mirror's 16 kHz, upsampled by soxr's best filter (VHQ).
    """
    source = 16_000
    if clips:
        wave, source = sf.read(clips[len(clips) // 2], dtype="float32")
    else:
        t = np.arange(4 * source) / source
        wave = (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype("f4")
    wave = np.resize(wave, 4 * source) if len(wave) < 4 * source else wave[: 4 * source]
    sf.write(path, wave if rate == source else soxr.resample(wave, source, rate, "VHQ"), rate)
    return path


@contextlib.contextmanager
def serving(model: Path) -> Iterator[tuple[str, float, str]]:
    """A `knd serve` subprocess on a free port: its URL, seconds until /health answered, backend."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    server = subprocess.Popen(
        [*KND, "serve", "--model", str(model), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"knd serve --model {model} exited with {server.returncode}")
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health")
                break
            except httpx.TransportError:
                time.sleep(0.05)
        start_up = time.perf_counter() - started
        yield f"http://127.0.0.1:{port}", start_up, health.json()["backend"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def service_latencies(urls: list[str], clip: Path, requests: int) -> list[list[float]]:
    """Seconds per sequential `POST /predict`, alternating servers so both see the same load."""
    data = clip.read_bytes()
    latencies: list[list[float]] = [[] for _ in urls]
    with httpx.Client(timeout=60) as client:
        for i in range(5 + requests):  # 5 warm-up requests each
            for url, seconds in zip(urls, latencies, strict=True):
                begin = time.perf_counter()
                upload = {"file": ("clip.wav", io.BytesIO(data))}
                client.post(f"{url}/predict", files=upload).raise_for_status()
                if i >= 5:
                    seconds.append(time.perf_counter() - begin)
    return latencies


def interleaved(commands: list[list[str]], args: argparse.Namespace) -> list[float]:
    """Median wall-clock seconds of each command over `--repeats` alternating rounds."""
    rounds = [[run(command) for command in commands] for _ in range(args.repeats)]
    return [statistics.median(times) for times in zip(*rounds, strict=True)]


def run(command: list[str]) -> float:
    """Wall-clock seconds of a command; a failure stops the benchmark with its message."""
    begin = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return time.perf_counter() - begin


if __name__ == "__main__":
    main()
