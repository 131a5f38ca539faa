"""`POST /timeline` on a 10-minute recording; prints a markdown table, asserts nothing.

    python benchmarks/bench_timeline.py [--model models/model.pt] [--requests 5]

The recording is RAVDESS mirror clips end to end (each with its pauses) up to 600 s, the longest
upload the service takes, as a 16 kHz 16-bit WAV (19.2 MB, under the default 20 MB limit). A
`knd serve` subprocess on 127.0.0.1 serves the checkpoint beside its `knd export` (ONNX, the
default); `--requests` sequential requests after one warm-up give the wall-clock time of the
whole request (upload, decoding, voice activity, scoring). The same steps are then timed in
this process, one by one, to show where the time goes. Numbers on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import soundfile as sf
from bench_predict import KND, ROOT, run, serving, untrained_checkpoint
from bench_stream import speech_audio

from knd.serving.predict import load_predictor
from knd.serving.timeline import speech_segments, split

SECONDS = 600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "model.pt")
    parser.add_argument("--requests", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="knd-bench-") as tmp:
        model, recording = Path(tmp) / "model.pt", Path(tmp) / "ten-minutes.wav"
        if args.model.is_file():
            shutil.copyfile(args.model, model)
        else:
            untrained_checkpoint(model)
        run([*KND, "export", "--model", str(model), "--out", str(model.with_suffix(".onnx"))])
        sf.write(recording, speech_audio(SECONDS), 16_000, subtype="PCM_16")
        data = recording.read_bytes()
        with serving(model) as (url, _, backend), httpx.Client(timeout=120) as client:
            times, answer = [], None
            for i in range(1 + args.requests):
                begin = time.perf_counter()
                response = client.post(f"{url}/timeline", files={"file": ("ten.wav", data)})
                response.raise_for_status()
                if i:
                    times.append(time.perf_counter() - begin)
                answer = response.json()
        steps = in_process(model, data)

    speech = sum(s["end"] - s["start"] for s in answer["segments"])
    print(f"\nModel: {args.model if args.model.is_file() else 'untrained default config'}")
    print(f"{answer['duration']:.0f} s recording, {len(data) / 1e6:.1f} MB WAV, backend {backend}")
    print(f"{len(answer['segments'])} segments, {speech:.0f} s of speech\n")
    print("| measure | seconds |\n|---|---|")
    print(f"| `POST /timeline`, median of {args.requests} | {statistics.median(times):.2f} |")
    print(f"| `POST /timeline`, slowest | {max(times):.2f} |")
    for step, seconds in steps.items():
        print(f"| in process: {step} | {seconds:.2f} |")


def in_process(model: Path, data: bytes) -> dict[str, float]:
    """Seconds of each step of `knd.serving.timeline.timeline`, done one by one."""
    predictor = load_predictor(model)
    clock = time.perf_counter()
    wave = predictor.read(data, "ten.wav")
    steps = {"decode": time.perf_counter() - clock}
    clock = time.perf_counter()
    segments = speech_segments(wave, predictor.sample_rate)
    steps["voice activity (WebRTC VAD)"] = time.perf_counter() - clock
    pieces = [p for s, e in segments for p in split(s, e, predictor.num_samples)]
    clock = time.perf_counter()
    predictor.clip_outputs([wave[s:e] for s, e in pieces], embeddings=False)
    steps[f"scoring {len(pieces)} pieces (ONNX)"] = time.perf_counter() - clock
    return steps


if __name__ == "__main__":
    main()
