"""Training speed of every model on this machine's CPU (or GPU), with the default pipeline.

Times real training steps (augmentation, front end, forward, backward, optimiser) on synthetic
clips of the default shape and prints seconds per epoch of 840 clips (14 training actors) and
clips/s. Usage:

    python benchmarks/bench_train.py [--models cnn sernet ...] [--batches 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import pandas as pd
import torch

from knd.config import Config, compose_config, to_dict
from knd.data.processed import INT16_SCALE, Processed
from knd.models.features import FrontEnd, band_stats, extract
from knd.models.networks import MODELS, count_parameters
from knd.training.train import Runtime, Trainer

CLIPS_PER_EPOCH = 840


def config(model: str) -> Config:
    conf = Path(__file__).resolve().parents[1] / "conf"
    return compose_config(conf, f"model={model}")


def synthetic(cfg: Config, clips: int) -> Processed:
    gen = torch.Generator().manual_seed(0)
    size = cfg.features.num_samples
    audio = (torch.randn(clips * size, generator=gen) * 3000).to(torch.int16)
    features = extract(FrontEnd(cfg.features), audio.reshape(clips, size).float() / INT16_SCALE)
    mean, std = band_stats(features)
    meta = pd.DataFrame({"split": ["train"] * (clips - 8) + ["val"] * 8, "speaker": 0})
    return Processed(
        audio=audio,
        offsets=torch.arange(clips + 1) * size,
        features=features,
        target=torch.arange(clips) % 8,
        labels=[f"c{i}" for i in range(8)],
        mean=mean,
        std=std,
        feature_config=to_dict(cfg.features),
        encoder=None,
        split_strategy="actor",
        meta=meta,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batches", type=int, default=8, help="timed batches per model")
    args = parser.parse_args()
    rows = []
    for name in args.models:
        cfg = config(name)
        bs = cfg.train.batch_size
        cfg = dataclasses.replace(cfg, wandb=dataclasses.replace(cfg.wandb, mode="disabled"))
        data = synthetic(cfg, bs * (args.batches + 1) + 8)
        trainer = Trainer(cfg, data, Runtime.setup(cfg))
        trainer.steps = 1
        trainer.train_epoch()  # warm-up: allocator, kernels
        trainer.steps = args.batches
        start = time.perf_counter()
        trainer.train_epoch()
        per_clip = (time.perf_counter() - start) / (args.batches * bs)
        params = count_parameters(trainer.model.net) / 1e6
        rows.append((name, params, per_clip * CLIPS_PER_EPOCH, 1 / per_clip))
    device = "CUDA" if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    print(f"\ntraining speed ({device}, default augmentation and batch size)\n")
    print("| model | params (M) | s/epoch (840 clips) | clips/s |\n|---|---|---|---|")
    for name, params, epoch_s, clips_s in rows:
        print(f"| {name} | {params:.2f} | {epoch_s:.1f} | {clips_s:.0f} |")


if __name__ == "__main__":
    main()
