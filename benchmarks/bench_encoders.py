"""Pretrained encoders' cost: forward time per 4 s clip, parameters, the make_dataset cache, and
the layer head's training step on the cached states.

The real architectures are built with random weights (no download needed: the time of a forward
pass does not depend on the weights' values), through knd's own `EncoderFrontEnd`, and run on
4 s windows of the offline mirror's clips. The head (`model=layer_head`) trains on batches of
`train.batch_size` such states. Prints a markdown table. Usage:

    python benchmarks/bench_encoders.py [--encoders wavlm_base_plus ...] [--clips 8] [--batch 4]
"""

from __future__ import annotations

import argparse
import os
import time
import zipfile
from pathlib import Path

import torch

from knd.audio import read_audio
from knd.config import ENCODERS, compose_config
from knd.models.encoders import BUILDERS, EncoderFrontEnd, bundle
from knd.models.features import fix_length
from knd.models.networks import build_model

ROOT = Path(__file__).resolve().parents[1]
MIRROR = ROOT.parent / "shared/data/ravdess/Audio_Speech_Actors_16k_dev.zip"
RAVDESS_CLIPS = 1440


def clips(count: int, num_samples: int) -> torch.Tensor:
    """The first `count` clips of the mirror, centre-cropped as make_dataset does."""
    waves = []
    with zipfile.ZipFile(MIRROR) as archive:
        for name in sorted(n for n in archive.namelist() if n.endswith(".wav"))[:count]:
            path = Path("/tmp") / Path(name).name
            path.write_bytes(archive.read(name))
            waves.append(fix_length(torch.from_numpy(read_audio(path, 16000)), num_samples))
            path.unlink()
    return torch.stack(waves)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=ENCODERS)
    parser.add_argument("--clips", type=int, default=8, help="timed clips per encoder")
    parser.add_argument("--batch", type=int, default=4, help="clips per forward pass")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    cfg = compose_config(ROOT / "conf", "features=wavlm_base_plus", "model=layer_head")
    num_samples = cfg.features.num_samples
    waves = clips(args.clips, num_samples)
    print(
        f"{args.clips} clips of {num_samples / 16000:g} s, batches of {args.batch}, "
        f"{torch.get_num_threads()} CPU threads\n"
    )
    print(
        "| encoder | parameters | layers x dims | CPU s/clip | cache/clip | RAVDESS cache "
        "| head: CPU s/1000 clips |"
    )
    print("|---|---|---|---|---|---|---|")
    for kind in args.encoders:
        b = bundle(kind)
        spec = {"builder": BUILDERS[b._model_type], "params": b._params, "normalize": False}
        torch.manual_seed(0)
        front_end = EncoderFrontEnd(spec)
        with torch.inference_mode():
            front_end(waves[:1])  # warm-up
            start = time.perf_counter()
            states = torch.cat([front_end(batch) for batch in waves.split(args.batch)])
            per_clip = (time.perf_counter() - start) / len(waves)
        size = states[0].numel() * 2  # float16
        params = sum(p.numel() for p in front_end.parameters())
        layers, _, dims = states.shape[1:]
        head_per_clip = head_step(cfg, states)
        print(
            f"| {kind} | {params / 1e6:.1f} M | {layers} x {dims} | {per_clip:.2f} | "
            f"{size / 1e6:.1f} MB | {size * RAVDESS_CLIPS / 1e9:.1f} GB | "
            f"{head_per_clip * 1000:.1f} |"
        )


def head_step(cfg, states: torch.Tensor, steps: int = 5) -> float:
    """Seconds per clip of the head's forward and backward pass on a batch of cached states."""
    batch = cfg.train.batch_size
    x = states.repeat(batch // len(states) + 1, 1, 1, 1)[:batch].half().float()
    head = build_model(cfg.model, 8, *states.shape[1::2])
    optimizer = torch.optim.AdamW(head.parameters())
    target = torch.arange(batch) % 8
    start = time.perf_counter()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(head(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / (steps * batch)


if __name__ == "__main__":
    main()
