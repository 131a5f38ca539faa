"""Manifests: a labelled dataset as a CSV file, the one form knd reads any corpus in.

Columns `path,label,speaker`, and optionally `split` (train/val/test, followed as given),
`corpus` (per-corpus metrics; several corpora in one dataset) and `gender` (female/male, so
speaker splits can balance it). Paths are relative to the manifest's folder (or absolute).
Labels are read into knd's canonical emotion names where one matches (`anger` -> `angry`);
others keep their own name. Plain `csv`, no pandas: `knd score` reads manifests without the
training extra.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from knd.errors import KndError
from knd.files import replacing

COLUMNS = ("path", "label", "speaker")
OPTIONAL = ("split", "corpus", "gender")
SPLITS = ("train", "val", "test")
GENDERS = ("female", "male")
MANIFEST_FILE = "manifest.csv"  # in data/raw when the data source is a manifest
SYNONYMS = {
    "anger": "angry",
    "fear": "fearful",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "surprise": "surprised",
    "disgusted": "disgust",
}


def canonical(label: str) -> str:
    """A label in knd's emotion names when it has one (`Anger` -> `angry`), else as given."""
    label = label.strip().lower()
    return SYNONYMS.get(label, label)


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    """The rows of one manifest, every column present (optional ones "" when absent).

    Paths come back absolute. Any malformed row fails the whole file, naming file and line.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    except FileNotFoundError:
        raise KndError(f"{path}: manifest not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise KndError(f"{path}: not a readable CSV manifest ({err})") from None
    if missing := [c for c in COLUMNS if c not in columns]:
        raise KndError(
            f"{path}: missing column {', '.join(missing)}; a manifest has the columns "
            f"{','.join(COLUMNS)} and optionally {','.join(OPTIONAL)}"
        )
    if not rows:
        raise KndError(f"{path}: the manifest lists no files")
    root = path.resolve().parent
    for line, row in enumerate(rows, 2):
        _check_row(row, columns, f"{path}, line {line}")
        row["path"] = os.path.normpath(root / row["path"])  # an absolute path stays as it is
        row["label"] = canonical(row["label"])
        for column in OPTIONAL:
            row.setdefault(column, "")
    return [{c: row[c] for c in (*COLUMNS, *OPTIONAL)} for row in rows]


def _check_row(row: dict[str, str], columns: list[str], where: str) -> None:
    for column in COLUMNS:
        if not row.get(column):
            raise KndError(f"{where}: empty {column}")
    if "split" in columns and row["split"] not in SPLITS:
        raise KndError(
            f"{where}: split {row['split']!r} is not one of {', '.join(SPLITS)} "
            "(with a split column, every row needs one)"
        )
    if row.get("gender", "") not in ("", *GENDERS):
        raise KndError(f"{where}: gender {row['gender']!r} is not one of {', '.join(GENDERS)}")


def read_manifests(paths: Iterable[str | Path]) -> list[dict[str, str]]:
    """Several manifests as one dataset. A manifest without a `corpus` column is named by its file
    (`crema.csv` -> crema), or by its folder when several files share a name (`tess/list.csv`).

    Following the `split` column is all or nothing: every manifest has one, or none does.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise KndError("no manifest given: set data.manifest=[PATH,...]")
    stems = [p.stem for p in paths]
    rows = []
    for path in paths:
        name = path.stem if stems.count(path.stem) == 1 else path.resolve().parent.name
        part = read_manifest(path)
        for row in part:
            row["corpus"] = row["corpus"] or (name if len(paths) > 1 else "")
        rows += part
    if len({bool(r["split"]) for r in rows}) > 1:
        raise KndError(
            f"{', '.join(map(str, paths))}: some manifests have a split column and some do not; "
            "give every one a split column or none"
        )
    return rows


def write_manifest(rows: list[dict[str, str]], out: str | Path) -> Path:
    """Write rows (absolute paths) as a manifest whose paths are relative to its folder.

    Optional columns are written only when some row fills them. Written whole or not at all.
    """
    out = Path(out)
    root = out.resolve().parent
    columns = [*COLUMNS, *(c for c in OPTIONAL if any(r.get(c) for r in rows))]
    with replacing(out) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "path": Path(os.path.relpath(row["path"], root)).as_posix()})
    return out
