"""Stage `make_dataset`: raw audio folder -> one tensor file, a metadata table and a summary.

The clips are manifest rows (`knd.data.manifest`): the `manifest.csv` that `download` left for a
manifest source, else the folder read by `data.corpus`'s file-name scheme. Speakers are split as
`split` says, unless the manifest gives a `split` column, which is followed.

Every clip is decoded once (in worker processes, both cores), made mono at the configured rate and
kept whole as 16-bit audio: evaluation scores whole clips, in windows, as `knd predict` does, and
training augments waveforms. Beside it go the features of each clip's centre crop at
`features.duration`, what training sees without waveform augmentation; with a pretrained encoder
(`features=wavlm_base_plus` etc.) the hidden states of its every layer, and the encoder itself.
Bad files are reported and skipped, never guessed at; the outputs appear all at once or not at all.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from knd.audio import AudioError, read_audio
from knd.config import Config, DataConfig, to_dict
from knd.data import corpora
from knd.data.labels import label_names, label_of
from knd.data.manifest import MANIFEST_FILE, read_manifest
from knd.data.processed import INT16_SCALE, save_processed, to_int16
from knd.data.splits import assign_splits
from knd.errors import KndError
from knd.models.encoders import EncoderFrontEnd, encode, load_encoder
from knd.models.features import FrontEnd, band_stats, extract, fix_length

log = logging.getLogger(__name__)


@dataclass
class Skipped:
    path: str
    reason: str
    detail: str = ""


def _decode(args: tuple[str, int]) -> np.ndarray | AudioError:
    path, sample_rate = args
    try:
        return to_int16(read_audio(path, sample_rate))
    except AudioError as err:
        return err


def decode_all(paths: list[Path], sample_rate: int, workers: int) -> list:
    """Decode whole clips in parallel; each result is int16 samples or the file's AudioError."""
    jobs = [(str(p), sample_rate) for p in paths]
    bar = dict(total=len(jobs), desc="decode", unit="clip", disable=None)
    if workers <= 1:
        return [_decode(j) for j in tqdm(jobs, **bar)]
    with ProcessPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(_decode, jobs, chunksize=16), **bar))


def make_dataset(
    cfg: Config, raw_dir: Path = Path("data/raw"), out_dir: Path = Path("data/processed")
) -> dict:
    # before decoding: missing weights fail at once
    encoder = load_encoder(cfg.features) if cfg.features.is_encoder else None
    clips, skipped = read_clips(cfg.data, raw_dir)
    files = len(clips) + len(skipped)
    rows, keep = [], []
    for clip in clips:
        label = label_of(clip["label"], clip["gender"], cfg.data.labels)
        if label is None:
            detail = f"{clip['label']!r} (gender {clip['gender'] or 'unknown'}) has no class"
            skipped.append(Skipped(clip["path"], "label outside data.labels", detail))
            continue
        path = Path(clip["path"])
        shown = (
            path.relative_to(raw_dir.resolve()) if path.is_relative_to(raw_dir.resolve()) else path
        )
        rows.append({**clip, "path": str(shown), "emotion": clip["label"], "label": label})
        keep.append(path)

    workers = min(os.cpu_count() or 1, 8)
    decoded = decode_all(keep, cfg.features.sample_rate, workers)
    good = [i for i, d in enumerate(decoded) if not isinstance(d, AudioError)]
    skipped += [Skipped(d.path, d.reason, d.detail) for d in decoded if isinstance(d, AudioError)]
    summary = _summary(files, len(good), skipped)
    _log_summary(summary)
    _check_usable(summary, cfg.data.max_skipped_fraction)

    meta = _speakers(pd.DataFrame([rows[i] for i in good]).reset_index(drop=True))
    given = (meta["split"] != "").all()
    meta["split"] = meta["split"] if given else assign_splits(meta, cfg.split)
    strategy = "manifest" if given else cfg.split.strategy
    if given:
        _warn_shared_speakers(meta)
    clips = [torch.from_numpy(decoded[i]) for i in good]
    offsets = torch.from_numpy(np.cumsum([0, *map(len, clips)]))
    labels = label_names(cfg.data.labels, meta["label"])
    target = torch.tensor([labels.index(x) for x in meta["label"]])

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    crops = torch.stack([fix_length(c, cfg.features.num_samples) for c in clips])
    if encoder is None:
        features = extract(FrontEnd(cfg.features), crops.float() / INT16_SCALE)
    else:
        features = encode(EncoderFrontEnd(encoder), crops.float() / INT16_SCALE)
    train = torch.from_numpy(np.flatnonzero(meta["split"].to_numpy() == "train"))
    mean, std = band_stats(features, train)
    data = {
        "audio": torch.cat(clips),
        "offsets": offsets,
        "features": features,
        "target": target,
        "labels": labels,
        "mean": mean,
        "std": std,
        "feature_config": to_dict(cfg.features),
        "encoder": encoder,
        "split_strategy": strategy,
    }
    save_processed(out_dir, data, meta, summary)
    counts = meta.groupby("split")["speaker"].agg(["count", "nunique"])
    log.info(
        "splits (%s): %s",
        strategy,
        ", ".join(
            f"{name} {r['count']} clips of {r['nunique']} speakers" for name, r in counts.iterrows()
        ),
    )
    return summary


def read_clips(data: DataConfig, raw_dir: Path) -> tuple[list[dict[str, str]], list[Skipped]]:
    """Manifest rows of `raw_dir` (its `manifest.csv`, else its files by `data.corpus`'s scheme),
    and the files whose names the scheme could not read."""
    if (raw_dir / MANIFEST_FILE).is_file():
        return read_manifest(raw_dir / MANIFEST_FILE), []
    if not raw_dir.is_dir():
        raise KndError(f"{raw_dir}: no audio files found; run `knd download` first")
    rows, bad = corpora.scan(raw_dir, data.corpus)
    return [{**r, "split": ""} for r in rows], [Skipped(p, "bad file name", e) for p, e in bad]


def _speakers(meta: pd.DataFrame) -> pd.DataFrame:
    """Speaker ids as the metadata table reads back: numbers when all are digits; prefixed by the
    corpus when several corpora could share an id."""
    if meta["corpus"].nunique() > 1:
        return meta.assign(speaker=meta["corpus"] + "/" + meta["speaker"])
    if meta["speaker"].str.isdigit().all():
        return meta.assign(speaker=meta["speaker"].astype(int))
    return meta


def _warn_shared_speakers(meta: pd.DataFrame) -> None:
    test = set(meta.loc[meta["split"] == "test", "speaker"])
    if shared := test & set(meta.loc[meta["split"] != "test", "speaker"]):
        log.warning(
            "the manifest's split puts %d test speakers in training or validation too (%s): "
            "test scores will not be speaker-independent",
            len(shared),
            ", ".join(map(str, sorted(shared, key=str)[:5])),
        )


def _summary(total: int, kept: int, skipped: list[Skipped]) -> dict:
    return {
        "files": total,
        "kept": kept,
        "skipped": len(skipped),
        "skipped_by_reason": dict(Counter(s.reason for s in skipped).most_common()),
        "skipped_files": [vars(s) for s in skipped],
    }


def _log_summary(summary: dict) -> None:
    log.info("%d files: %d kept, %d skipped", summary["files"], summary["kept"], summary["skipped"])
    for s in summary["skipped_files"]:
        detail = f" ({s['detail']})" if s["detail"] else ""
        log.warning("skipped %s: %s%s", s["path"], s["reason"], detail)


def _check_usable(summary: dict, max_skipped_fraction: float) -> None:
    if summary["kept"] == 0:
        raise KndError("make_dataset: no usable audio left; see the skipped files above")
    share = summary["skipped"] / summary["files"]
    if share > max_skipped_fraction:
        raise KndError(
            f"make_dataset: {share:.1%} of the files were skipped, above "
            f"data.max_skipped_fraction={max_skipped_fraction:.1%}; fix the data or raise the limit"
        )
