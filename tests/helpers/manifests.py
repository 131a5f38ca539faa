"""Manifests written on the spot: CSV rows, and small corpora of synthetic voices."""

from __future__ import annotations

import csv
from pathlib import Path

import soundfile as sf

from helpers.audio import RATE, voice


def write_manifest(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def voice_corpus(folder: Path, speakers: dict[str, str], labels: list[str], split=None) -> Path:
    """Audio under `folder/audio` and `folder/list.csv` naming it (relative paths).

    `speakers` maps each speaker to a gender ("" = unknown); `split(speaker)`, if given, fills a
    `split` column.
    """
    rows = []
    for i, (speaker, gender) in enumerate(speakers.items()):
        for j, label in enumerate(labels):
            name = f"audio/{speaker}_{label}.wav"
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            sf.write(folder / name, voice(1.2, f0=120 + 15 * j, seed=10 * i + j), RATE)
            row = {"path": name, "label": label, "speaker": speaker, "gender": gender}
            rows.append(row | ({"split": split(speaker)} if split else {}))
    return write_manifest(folder / "list.csv", rows)
