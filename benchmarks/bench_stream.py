"""Live analysis under load: concurrent `/stream` clients; prints a markdown table, asserts nothing.

    python benchmarks/bench_stream.py [--model models/model.pt] [--streams 8] [--seconds 30]
                                      [--with-timeline]

A `knd serve` subprocess on 127.0.0.1 serves the checkpoint beside its `knd export` (ONNX, the
default). `--streams` WebSocket clients each send real speech (RAVDESS mirror clips end to end,
pauses included) as 0.1 s messages of 16 kHz int16 PCM, paced in real time for `--seconds` and
started 0.1 s / streams apart, as microphones would. An update's latency is the time from
sending the message that completed its 0.5 s of audio to receiving the answer; the table gives
its p50, p95 and max over every update of every stream, and how many updates arrived. With
`--with-timeline`, one more client posts a 10-minute recording to `POST /timeline` again and
again meanwhile (each request waits for the previous one). Bounded: fixed streams, fixed
duration. Numbers on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
import websockets
from bench_predict import KND, MIRROR, ROOT, run, serving, untrained_checkpoint

RATE, CHUNK, HOP = 16_000, 0.1, 0.5  # the page's message length, the server's STREAM_HOP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "model.pt")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0, help="Audio sent per stream.")
    parser.add_argument(
        "--with-timeline", action="store_true", help="POST /timeline (10 min) meanwhile."
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="knd-bench-") as tmp:
        model = Path(tmp) / "model.pt"
        if args.model.is_file():
            shutil.copyfile(args.model, model)
        else:
            untrained_checkpoint(model)
        run([*KND, "export", "--model", str(model), "--out", str(model.with_suffix(".onnx"))])
        speech = speech_audio(args.seconds)
        recording = wav_bytes(speech_audio(600)) if args.with_timeline else None
        with serving(model) as (url, _, backend):
            latencies, counts, timelines = asyncio.run(load(url, speech, args.streams, recording))

    p50, p95, worst = np.percentile(latencies, [50, 95, 100]) * 1000
    expected = args.streams * int(args.seconds / HOP)
    print(f"\nModel: {args.model if args.model.is_file() else 'untrained default config'}")
    print(f"{args.streams} streams x {args.seconds:g} s of speech, backend {backend}")
    if recording:
        print(f"meanwhile {timelines} `POST /timeline` requests of a 10-minute recording")
    print()
    print("| measure | value |\n|---|---|")
    print(f"| updates received (expected) | {len(latencies)} ({expected}) |")
    print(f"| updates per stream, min-max | {min(counts)}-{max(counts)} |")
    print(f"| update latency p50 (ms) | {p50:.1f} |")
    print(f"| update latency p95 (ms) | {p95:.1f} |")
    print(f"| update latency max (ms) | {worst:.1f} |")


def speech_audio(seconds: float) -> np.ndarray:
    """`seconds` of mirror clips end to end as int16 (a voice stand-in without the mirror)."""
    need = round(seconds * RATE)
    if MIRROR.is_file():
        with zipfile.ZipFile(MIRROR) as z:
            names = sorted(n for n in z.namelist() if n.endswith(".wav"))
            waves, total = [], 0
            for name in names[:: max(1, len(names) // 200)]:
                wave, rate = sf.read(z.open(name), dtype="int16")
                assert rate == RATE, f"{name}: {rate} Hz"
                waves.append(wave)
                total += len(wave)
                if total >= need:
                    break
        return np.concatenate(waves)[:need]
    print(f"{MIRROR} not found: streaming a synthetic tone instead of speech")
    t = np.arange(need) / RATE
    return (8000 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype("<i2")


def wav_bytes(wave: np.ndarray) -> bytes:
    out = io.BytesIO()
    sf.write(out, wave, RATE, format="WAV", subtype="PCM_16")
    return out.getvalue()


async def load(
    url: str, speech: np.ndarray, streams: int, recording: bytes | None
) -> tuple[list[float], list[int], int]:
    """Every update latency, updates per stream, and timeline requests answered meanwhile."""
    ws_url = url.replace("http", "ws") + "/stream"
    done = asyncio.Event()
    timelines = asyncio.create_task(post_timelines(url, recording, done))
    results = await asyncio.gather(
        *(one_stream(ws_url, speech, k * CHUNK / streams) for k in range(streams))
    )
    done.set()
    latencies = [x for per_stream in results for x in per_stream]
    return latencies, [len(r) for r in results], await timelines


async def post_timelines(url: str, recording: bytes | None, done: asyncio.Event) -> int:
    """`POST /timeline` one after another until `done`; how many were answered."""
    answered = 0
    if recording is None:
        return answered
    async with httpx.AsyncClient(timeout=120) as client:
        while not done.is_set():
            files = {"file": ("ten-minutes.wav", recording)}
            (await client.post(f"{url}/timeline", files=files)).raise_for_status()
            answered += 1
    return answered


async def one_stream(url: str, speech: np.ndarray, delay: float) -> list[float]:
    """Send `speech` in real time; latency of each answer after the message that completed it."""
    step = round(CHUNK * RATE)
    chunks = [speech[k : k + step].astype("<i2").tobytes() for k in range(0, len(speech), step)]
    sent: list[float] = []
    latencies: list[float] = []
    await asyncio.sleep(delay)
    async with websockets.connect(url, max_size=None) as ws:

        async def receive() -> None:
            async for message in ws:
                answer = json.loads(message)
                completed = round(answer["t"] / CHUNK) - 1  # index of the message that made it due
                latencies.append(time.perf_counter() - sent[completed])
                if len(latencies) == int(len(speech) / RATE / HOP):
                    return

        receiver = asyncio.create_task(receive())
        start = time.perf_counter()
        for k, chunk in enumerate(chunks):
            await asyncio.sleep(max(0.0, start + k * CHUNK - time.perf_counter()))
            sent.append(time.perf_counter())
            await ws.send(chunk)
        try:
            await asyncio.wait_for(receiver, timeout=10)
        except TimeoutError:
            print(f"a stream got {len(latencies)} updates, then none for 10 s", file=sys.stderr)
    return latencies


if __name__ == "__main__":
    main()
