"""Feature extraction speed: knd's front end vs the reference notebooks' per-file librosa loop.

Both start from wav files on disk and end with log-mel (and MFCC) arrays for every clip.
Prints clips/s for each and the ratio. Usage:

    python benchmarks/bench_features.py [--zip PATH_TO_RAVDESS_ZIP] [--limit N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import zipfile
from pathlib import Path

import torch

from knd.audio import audio_files
from knd.config import compose_config
from knd.data.make_dataset import decode_all
from knd.data.processed import INT16_SCALE
from knd.models.features import FrontEnd, extract, fix_length

ROOT = Path(__file__).resolve().parents[1]
MIRROR = ROOT.parent / "shared/data/ravdess/Audio_Speech_Actors_16k_dev.zip"


def knd_features(paths: list[Path]) -> torch.Tensor:
    cfg = compose_config(ROOT / "conf").features
    workers = os.cpu_count() or 1
    decoded = decode_all(paths, cfg.sample_rate, workers)
    crops = [fix_length(torch.from_numpy(d), cfg.num_samples) for d in decoded]
    audio = torch.stack(crops).float() / INT16_SCALE
    torch.set_num_threads(workers)
    logmel = extract(FrontEnd(cfg), audio)
    mfcc_cfg = compose_config(ROOT / "conf", "features=mfcc").features
    return logmel, extract(FrontEnd(mfcc_cfg), audio)


def librosa_loop(paths: list[Path]) -> list:
    import librosa

    out = []
    for path in paths:
        y, sr = librosa.load(path, sr=22050)
        mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_mels=128))
        out.append((mel, librosa.feature.mfcc(y=y, sr=sr, n_mfcc=40)))
    return out


def timed(fn, paths) -> float:
    start = time.perf_counter()
    fn(paths)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, default=MIRROR)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N clips")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(args.zip) as archive:
            archive.extractall(tmp)
        paths = audio_files(Path(tmp))
        paths = paths[: args.limit] if args.limit else paths
        knd_s = timed(knd_features, paths)
        librosa_s = timed(librosa_loop, paths)
    n = len(paths)
    print(f"\nfeature extraction, {n} clips from {args.zip.name}, {os.cpu_count()} CPU cores\n")
    rows = [
        ("knd (2 decode workers + batched torch log-mel & MFCC)", knd_s),
        ("librosa loop (load sr=22050, melspectrogram, mfcc)", librosa_s),
    ]
    print("| pipeline | seconds | clips/s |\n|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {n / seconds:.0f} |")
    print(f"\nknd is {librosa_s / knd_s:.1f}x the librosa loop")


if __name__ == "__main__":
    main()
