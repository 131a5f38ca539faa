"""`knd score`: a model's metrics on a labelled set it did not train on (a manifest or a folder).

The model's classes and the data's labels rarely coincide, so they are matched first, in the
open: a `female_`/`male_` class counts for its emotion; the model's `calm` counts as `neutral`
when the data has no calm (most corpora fold it in); and the data's `calm` is scored as
`neutral` when the model has no calm (a 7-emotion model). A data label the model cannot output
at all (EmoDB's boredom) is not scored and is reported with its count, never dropped silently.
Model classes the data lacks stay in the confusion matrix as columns: predicting them is an
error. Works for `.pt` and `.onnx` models alike, and without torch for `.onnx`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from knd.data.corpora import scan
from knd.data.labels import GENDERS
from knd.data.manifest import read_manifest
from knd.data.ravdess import EMOTIONS
from knd.errors import KndError
from knd.metrics import classification_metrics
from knd.serving.predict import load_predictor, predict_files

log = logging.getLogger(__name__)


def labelled_clips(source: Path, corpus: str | None) -> list[dict[str, str]]:
    """Manifest rows of `source`: a manifest CSV, or a folder read by `corpus`'s naming scheme."""
    if source.is_dir():
        if corpus is None:
            raise KndError(f"{source}: a folder needs --corpus to read its labels from file names")
        rows, bad = scan(source, corpus)
        for path, reason in bad:
            log.warning("skipped %s: %s", path, reason)
        return rows
    if corpus is not None:
        log.warning("%s: a manifest names its labels; --corpus %s is ignored", source, corpus)
    return read_manifest(source)


def _emotion(label: str) -> str:
    gender, _, emotion = label.partition("_")
    return emotion if gender in GENDERS and emotion else label


def label_maps(model: list[str], data: set[str]) -> tuple[Callable[[str], str], dict[str, str]]:
    """(model class -> scored label, data label -> scored label for every scorable data label)."""
    outputs = {_emotion(m) for m in model}

    def predicted(label: str) -> str:
        label = _emotion(label)
        return "neutral" if label == "calm" and "calm" not in data and "neutral" in data else label

    scored = {predicted(m) for m in model}
    actual = {d: d for d in data if d in scored}
    if "calm" in data and "calm" not in outputs and "neutral" in scored:
        actual["calm"] = "neutral"
    return predicted, actual


def score(
    source: Path, model: Path, corpus: str | None = None, batch_size: int = 32
) -> dict[str, Any]:
    """Metrics of `model` on the labelled clips of `source`; see the module docstring."""
    predictor = load_predictor(model, batch_size)
    rows = labelled_clips(source, corpus)
    predicted, actual = label_maps(predictor.labels, {r["label"] for r in rows})
    unscorable = Counter(r["label"] for r in rows if r["label"] not in actual)
    rows = [r for r in rows if r["label"] in actual]
    if not rows:
        raise KndError(
            f"{source}: none of its labels ({', '.join(sorted(unscorable))}) is a class of "
            f"{model} ({', '.join(predictor.labels)})"
        )
    files = [Path(r["path"]) for r in rows]
    bar = dict(total=len(files), unit="clip", desc="score", disable=None)
    records = list(tqdm(predict_files(predictor, files), **bar))
    unreadable = {r["path"]: r["error"] for r in records if "error" in r}
    for path, error in unreadable.items():
        log.warning("skipped %s: %s", path, error)
    kept = [(row, rec) for row, rec in zip(rows, records, strict=True) if "error" not in rec]
    if not kept:
        raise KndError(f"{source}: none of the {len(rows)} scorable files could be read")
    data_labels = {actual[row["label"]] for row, _ in kept}
    outputs = {predicted(m) for m in predictor.labels}
    labels = [e for e in EMOTIONS if e in data_labels] + sorted(data_labels - set(EMOTIONS))
    labels += [e for e in EMOTIONS if e in outputs - data_labels]
    labels += sorted(outputs - data_labels - set(EMOTIONS))
    target = [labels.index(actual[row["label"]]) for row, _ in kept]
    preds = [labels.index(predicted(rec["label"])) for _, rec in kept]
    result = {
        "model": str(model),
        "data": str(source),
        **_summary(preds, target, labels),
        "label_map": {
            "predictions": {m: predicted(m) for m in predictor.labels if predicted(m) != m},
            "data": {d: s for d, s in actual.items() if d != s},
        },
        "unscorable": dict(sorted(unscorable.items())),
        "unreadable": len(unreadable),
    }
    corpora = sorted({row["corpus"] for row, _ in kept})
    if len(corpora) > 1:
        result["per_corpus"] = {}
        for name in corpora:
            part = [i for i, (row, _) in enumerate(kept) if row["corpus"] == name]
            summary = _summary([preds[i] for i in part], [target[i] for i in part], labels)
            result["per_corpus"][name] = {k: summary[k] for k in ("n", "uar", "wa", "f1_macro")}
    return result


def _summary(preds: list[int], target: list[int], labels: list[str]) -> dict[str, Any]:
    m = classification_metrics(np.array(preds, dtype=int), np.array(target, dtype=int), labels)
    counts = Counter(target)
    return {
        "n": len(target),
        "uar": round(m["uar"], 4),
        "wa": round(m["accuracy"], 4),
        "f1_macro": round(m["f1_macro"], 4),
        "per_class": {
            label: {"n": counts[i], **m["per_class"][label]}
            for i, label in enumerate(labels)
            if counts[i]
        },
        "confusion_matrix": m["confusion_matrix"],
        "labels": labels,
    }


def format_score(result: dict[str, Any], fmt: str) -> str:
    """The result as JSON, or as a readable report with the confusion matrix."""
    if fmt == "json":
        return json.dumps(result, indent=2)
    scored = f"{result['n']} clips scored"
    if result["unreadable"]:
        scored += f", {result['unreadable']} unreadable (see the warnings)"
    lines = [
        f"{result['model']} on {result['data']}: {scored}",
        f"UAR {result['uar']:.3f}   WA {result['wa']:.3f}   macro F1 {result['f1_macro']:.3f}",
    ]
    for model_class, label in result["label_map"]["predictions"].items():
        lines.append(f"the model's {model_class} counts as {label}")
    for data_label, label in result["label_map"]["data"].items():
        lines.append(f"the data's {data_label} counts as {label} (the model has no {data_label})")
    if result["unscorable"]:
        listed = ", ".join(f"{k} {v}" for k, v in result["unscorable"].items())
        lines.append(f"not scored, the model has no such class: {listed}")
    width = max(len(label) for label in result["labels"])
    lines += ["", f"{'class':<{width}}  {'n':>5}  recall  precision  f1"]
    for label, s in result["per_class"].items():
        lines.append(
            f"{label:<{width}}  {s['n']:>5}  {s['recall']:>6.3f}  {s['precision']:>9.3f}  "
            f"{s['f1']:.3f}"
        )
    for name, s in result.get("per_corpus", {}).items():
        lines.append(f"corpus {name}: n {s['n']}  UAR {s['uar']:.3f}  WA {s['wa']:.3f}")
    lines += ["", "confusion matrix (rows: actual, columns: predicted)"]
    lines.append(" " * (width + 2) + " ".join(f"{s:>{width}}" for s in result["labels"]))
    for label, row in zip(result["labels"], result["confusion_matrix"], strict=True):
        if any(row) or label in result["per_class"]:
            lines.append(f"{label:<{width}}  " + " ".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)
