"""`knd predict`: find audio files, pick the backend for a model file, render the results.

`load_predictor` chooses between `knd.serving.torch_backend` (a `.pt` checkpoint) and
`knd.serving.onnx_backend` (an `.onnx` export, no torch); both share `knd.serving.predictor`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from knd.audio import AUDIO_EXTENSIONS
from knd.errors import KndError
from knd.serving.predictor import Predictor, top_label

log = logging.getLogger(__name__)


def load_predictor(path: str | Path, batch_size: int = 32) -> Predictor:
    """The backend for a model file: `.pt` -> PyTorch, `.onnx` -> onnxruntime (no torch).

    A `.pt` checkpoint runs on its export instead when `knd export` left one beside it
    (`model.onnx` next to `model.pt`) made from this very file: the same probabilities (checked
    at export) at about half the latency, and no torch to import. Either choice is said on stderr.
    """
    path = Path(path)
    if not path.is_file():
        raise KndError(f"{path}: model not found; train one with `knd train` (or `knd export`)")
    if path.suffix == ".onnx":
        from knd.serving.onnx_backend import OnnxPredictor

        return OnnxPredictor(path, batch_size)
    if path.suffix == ".pt":
        from knd.serving.torch_backend import TorchPredictor

        return _export_of(path, batch_size) or TorchPredictor(path, batch_size)
    raise KndError(f"{path}: unknown model type; expected a .pt checkpoint or an .onnx export")


def _export_of(checkpoint: Path, batch_size: int) -> Predictor | None:
    """The ONNX export beside `checkpoint` if it was made from it; else None, with a notice."""
    export = checkpoint.with_suffix(".onnx")
    if not export.is_file():
        return None
    from knd.serving.onnx_backend import OnnxPredictor, file_sha256

    try:
        predictor = OnnxPredictor(export, batch_size)
    except KndError as err:
        reason = str(err).removeprefix(f"{export}: ")
    else:
        if predictor.checkpoint_sha256 == file_sha256(checkpoint):
            log.info("%s: running its ONNX export %s", checkpoint, export)
            return predictor
        reason = "not exported from this checkpoint; `knd export` updates it"
    log.warning("%s: ignoring %s (%s)", checkpoint, export, reason)
    return None


def result(path: str, probabilities: dict[str, float]) -> dict[str, Any]:
    """The JSON object both `knd predict --format json` and `POST /predict` return."""
    return {"path": path, "label": top_label(probabilities), "probabilities": probabilities}


def read_files(
    predictor: Predictor, files: Sequence[Path]
) -> Iterator[tuple[dict[str, Any], np.ndarray | None]]:
    """`({"path"}, wave)` per file, or `({"path", "error"}, None)` for one that cannot be read."""
    for path in files:
        try:
            if path.is_dir():
                raise KndError(f"{path}: no audio files ({' '.join(AUDIO_EXTENSIONS)})")
            yield {"path": str(path)}, predictor.read(path)
        except KndError as err:
            yield {"path": str(path), "error": str(err).removeprefix(f"{path}: ")}, None


def predict_files(
    predictor: Predictor, files: Sequence[Path], embeddings: bool = False
) -> Iterator[dict[str, Any]]:
    """One result (or `{"path", "error"}`) per file, in order; decodes `batch_size` at a time.

    `embeddings` adds each file's pooled embedding (the mean over its windows) as `embedding`.
    """
    for k in range(0, len(files), predictor.batch_size):
        read = list(read_files(predictor, files[k : k + predictor.batch_size]))
        waves = [wave for _, wave in read if wave is not None]
        probabilities, vectors = predictor.clip_outputs(waves, embeddings)
        n = 0
        for record, wave in read:
            if wave is None:
                yield record
                continue
            scores = dict(zip(predictor.labels, probabilities[n].tolist(), strict=True))
            out = result(record["path"], scores)
            yield out | {"embedding": vectors[n].tolist()} if embeddings else out
            n += 1


def format_results(records: list[dict[str, Any]], fmt: str, labels: list[str], top_k: int) -> str:
    """Render results as an aligned table (top-k probabilities), a JSON array or CSV."""
    if fmt == "json":
        return json.dumps(records, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, ["path", "label", *labels, "error"], lineterminator="\n")
        writer.writeheader()
        for r in records:
            writer.writerow(
                {"path": r["path"], "label": r.get("label", ""), "error": r.get("error", "")}
                | r.get("probabilities", {})
            )
        return out.getvalue().rstrip("\n")
    rows = [("path", "label", f"top-{top_k} probabilities")]
    for r in records:
        if "error" in r:
            rows.append((r["path"], "-", f"error: {r['error']}"))
        else:
            top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:top_k]
            rows.append((r["path"], r["label"], "  ".join(f"{k} {p:.3f}" for k, p in top)))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}".rstrip() for a, b, c in rows)


def format_timelines(records: list[dict[str, Any]], fmt: str, labels: list[str], top_k: int) -> str:
    """Render timelines as JSON, CSV (a row per segment, then a `summary` row of shares per
    file), or a table per file headed by its summary."""
    if fmt == "json":
        return json.dumps(records, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        columns = ["path", "start", "end", "label", *labels, "error"]
        writer = csv.DictWriter(out, columns, lineterminator="\n")
        writer.writeheader()
        for r in records:
            if "error" in r:
                writer.writerow({"path": r["path"], "error": r["error"]})
                continue
            for s in r["segments"]:
                row = {"path": r["path"], "start": f"{s['start']:.3f}", "end": f"{s['end']:.3f}"}
                writer.writerow(row | {"label": s["label"]} | s["probabilities"])
            writer.writerow({"path": r["path"], "label": "summary"} | r["summary"])
        return out.getvalue().rstrip("\n")
    lines = []
    for r in records:
        if "error" in r:
            lines += [f"{r['path']}: error: {r['error']}", ""]
            continue
        speech = sum(s["end"] - s["start"] for s in r["segments"])
        shares = sorted(((p, k) for k, p in r["summary"].items() if p > 0), reverse=True)
        mix = "  ".join(f"{k} {p:.0%}" for p, k in shares) or "no speech"
        lines.append(f"{r['path']}: {r['duration']:.1f} s, speech {speech:.1f} s: {mix}")
        for s in r["segments"]:
            top = sorted(s["probabilities"].items(), key=lambda kv: -kv[1])[:top_k]
            probabilities = "  ".join(f"{k} {p:.3f}" for k, p in top)
            lines.append(f"  {s['start']:8.2f} {s['end']:8.2f}  {s['label']:<10} {probabilities}")
        lines.append("")
    return "\n".join(lines).rstrip("\n")
