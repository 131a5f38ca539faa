"""Stage `robustness`: test-split UAR and WA under recording conditions the model never met.

A model that scores well on RAVDESS can fail on other corpora (louder, other microphones and
rooms). This stage measures how far each condition alone moves the score: the held-out actors'
clips are read from `data/raw` as `knd predict` reads them (`Predictor.read`), transformed by one
condition of `knd.data.conditions`, and classified by `Predictor.predict`, so the same windowing
applies and a `.pt` checkpoint and an `.onnx` export are measured alike.

Every draw is seeded by (SEED, condition, clip): a rerun gives the same numbers, whatever the
batch size.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from knd.data.conditions import (
    add_noise,
    babble,
    change_level,
    crop,
    pad_silence,
    reverberate,
    room_impulse_response,
    telephone,
    tilt,
)
from knd.data.processed import METADATA_FILE
from knd.errors import KndError
from knd.files import replacing
from knd.metrics import classification_metrics
from knd.paths import HELD_OUT_MODEL
from knd.serving.predict import load_predictor
from knd.serving.predictor import Predictor, top_label

log = logging.getLogger(__name__)

SEED = 0
BABBLE_TALKERS = 4  # clips of other held-out actors summed into one babble noise
ROOMS = 6  # rooms drawn per reverberation time; each clip is played in one of them


@dataclass(frozen=True)
class Condition:
    name: str
    family: str
    value: float | None = None  # gain (dB), SNR (dB), RT60 (s), tilt (dB/octave) or length (s)


# The conditions of the robustness issue, each applied alone to every test clip.
CONDITIONS = (
    Condition("clean", "clean"),
    *(Condition(f"level {g:+d} dB", "level", g) for g in (-20, -10, 10, 20)),
    *(Condition(f"white noise {s} dB SNR", "white", s) for s in (20, 10, 5)),
    *(Condition(f"babble {s} dB SNR", "babble", s) for s in (20, 10, 5)),
    *(Condition(f"reverb RT60 {t} s", "reverb", t) for t in (0.3, 0.8)),
    Condition("telephone 300-3400 Hz", "telephone"),
    Condition("telephone + mu-law", "telephone mu-law"),
    *(Condition(f"microphone {s:+d} dB/octave", "tilt", s) for s in (-3, 3)),
    Condition("silence 0-2 s each side", "silence", 2.0),
    Condition("crop 1.5 s", "crop", 1.5),
)

# The conditions a model should shrug off (at most 5 UAR points lost), and the telephone band
# (at most 10): the bounds knd's recipes are held to.
MILD = (
    "level -10 dB",
    "level +10 dB",
    "white noise 20 dB SNR",
    "babble 20 dB SNR",
    "reverb RT60 0.3 s",
    "silence 0-2 s each side",
)
TELEPHONE = "telephone 300-3400 Hz"


def apply(
    condition: Condition,
    wave: np.ndarray,
    rate: int,
    rng: np.random.Generator,
    talkers: list[np.ndarray],
    rooms: list[np.ndarray],
) -> np.ndarray:
    """`wave` under `condition`; `talkers` feed babble, `rooms` are impulse responses."""
    match condition.family:
        case "clean":
            return wave
        case "level":
            return change_level(wave, condition.value)
        case "white":
            return add_noise(wave, condition.value, rng)
        case "babble":
            return add_noise(wave, condition.value, rng, babble(talkers, len(wave), rng))
        case "reverb":
            return reverberate(wave, rooms[rng.integers(len(rooms))])
        case "telephone" | "telephone mu-law":
            return telephone(wave, rate, mu_law=condition.family == "telephone mu-law")
        case "tilt":
            return tilt(wave, rate, condition.value)
        case "silence":
            return pad_silence(wave, rate, condition.value, rng)
        case "crop":
            return crop(wave, rate, condition.value)
    raise ValueError(f"unknown condition family {condition.family!r}")


def held_out_clips(data_dir: Path, raw_dir: Path) -> pd.DataFrame:
    """The test split's rows of `metadata.csv`, with every file present in `raw_dir`."""
    path = data_dir / METADATA_FILE
    if not path.is_file():
        raise KndError(f"{path}: not found; run `knd make-dataset` first")
    return select_held_out(pd.read_csv(path), raw_dir, path)


def select_held_out(meta: pd.DataFrame, raw_dir: Path, source: Path) -> pd.DataFrame:
    """The rows of `meta` (read from `source`) in the test split, every file in `raw_dir`."""
    clips = meta[meta["split"] == "test"].reset_index(drop=True)
    if clips.empty:
        raise KndError(f"{source}: no clips in the test split; check the split settings")
    if clips["speaker"].nunique() < 2:
        raise KndError(f"{source}: babble needs test clips of at least 2 speakers, got 1")
    missing = [p for p in clips["path"] if not (raw_dir / p).is_file()]
    if missing:
        raise KndError(
            f"{raw_dir / missing[0]}: not found ({len(missing)} of {len(clips)} test clips "
            "missing); run `knd download`"
        )
    return clips


def score_clips(predictor: Predictor, clips: pd.DataFrame, raw_dir: Path) -> dict[str, dict]:
    """`score` on `clips`, read from `raw_dir` as `knd predict` reads them."""
    waves = [predictor.read(raw_dir / p) for p in tqdm(clips["path"], desc="read", disable=None)]
    return score(predictor, clips, waves)


def score(
    predictor: Predictor,
    clips: pd.DataFrame,
    waves: list[np.ndarray],
    conditions: tuple[Condition, ...] = CONDITIONS,
) -> dict[str, dict]:
    """UAR, WA, their drops from clean, and the share of clips reaching full scale (±1.0).

    Only the level conditions clip there; noise or a filter may take a clip already at full scale
    slightly past it, and the model is given those samples as they are.
    """
    unknown = sorted(set(clips["label"]) - set(predictor.labels))
    if unknown:
        raise KndError(
            f"test labels {unknown} are not among the model's {predictor.labels}; "
            "retrain after changing data.labels (`knd train`)"
        )
    target = torch.tensor([predictor.labels.index(x) for x in clips["label"]])
    actors = clips["speaker"].to_numpy()
    rate, size = predictor.sample_rate, predictor.batch_size
    bar = tqdm(total=len(conditions) * len(waves), unit="clip", disable=None)
    results = {}
    for k, condition in enumerate(conditions):
        bar.set_description(condition.name)
        rooms = []
        if condition.family == "reverb":
            room_rng = np.random.default_rng((SEED, k))
            rooms = [room_impulse_response(rate, condition.value, room_rng) for _ in range(ROOMS)]
        predicted, clipped = [], 0
        for start in range(0, len(waves), size):
            batch = []
            for i in range(start, min(start + size, len(waves))):
                rng = np.random.default_rng((SEED, k, i))
                talkers = []
                if condition.family == "babble":
                    others = np.flatnonzero(actors != actors[i])
                    talkers = [waves[j] for j in rng.choice(others, BABBLE_TALKERS, replace=False)]
                batch.append(apply(condition, waves[i], rate, rng, talkers, rooms))
            clipped += sum(bool(np.abs(w).max() >= 1.0) for w in batch)
            for probabilities in predictor.predict(batch):
                predicted.append(predictor.labels.index(top_label(probabilities)))
            bar.update(len(batch))
        metrics = classification_metrics(torch.tensor(predicted), target, predictor.labels)
        results[condition.name] = {
            "uar": round(metrics["uar"], 4),
            "wa": round(metrics["accuracy"], 4),
            "clipped": round(clipped / len(waves), 4),
        }
    bar.close()
    clean = results["clean"]
    for row in results.values():
        row["uar_drop"] = round(clean["uar"] - row["uar"], 4)
        row["wa_drop"] = round(clean["wa"] - row["wa"], 4)
    return results


def table(results: dict[str, dict]) -> str:
    """The results as aligned text, one condition a line; a drop is clean minus condition."""
    width = max(map(len, results))
    lines = [f"{'condition':<{width}}     UAR    drop      WA    drop  full scale"]
    for name, r in results.items():
        lines.append(
            f"{name:<{width}}  {r['uar']:6.3f}  {r['uar_drop']:6.3f}  {r['wa']:6.3f}  "
            f"{r['wa_drop']:6.3f}  {r['clipped']:10.0%}"
        )
    return "\n".join(lines)


def figure(results: dict[str, dict], n_classes: int, out: Path) -> None:
    """UAR per condition as bars against the clean UAR and chance, conditions top to bottom."""
    names = list(results)
    uar = [results[n]["uar"] for n in names]
    families = [c.family.split()[0] for c in CONDITIONS if c.name in results]
    colours = {f: plt.cm.tab10(i) for i, f in enumerate(dict.fromkeys(families))}
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(names) + 1.2))
    ax.barh(names, uar, color=[colours[f] for f in families])
    for y, value in enumerate(uar):
        ax.text(value + 0.005, y, f"{value:.2f}", va="center", fontsize=8)
    ax.axvline(results["clean"]["uar"], color="black", ls="--", lw=1, label="clean")
    ax.axvline(1 / n_classes, color="red", ls=":", lw=1, label="chance")
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="test UAR", title="Test UAR under recording conditions")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110, format="png")
    plt.close(fig)


def robustness(
    model_path: Path = HELD_OUT_MODEL,
    data_dir: Path = Path("data/processed"),
    raw_dir: Path = Path("data/raw"),
    out: Path = Path("reports/robustness.json"),
    figure_path: Path = Path("reports/robustness.png"),
    batch_size: int = 32,
) -> dict:
    """Score the test clips under every condition; write the JSON and the figure, print a table."""
    predictor = load_predictor(model_path, batch_size)
    clips = held_out_clips(data_dir, raw_dir)
    results = score_clips(predictor, clips, raw_dir)
    report = {
        "model": str(model_path),
        "clips": len(clips),
        "actors": sorted(clips["speaker"].unique().tolist()),
        "seed": SEED,
        "conditions": results,
    }
    # Both renamed into place only once both are written: never one new and one stale.
    with replacing(out) as tmp_json, replacing(figure_path) as tmp_png:
        tmp_json.write_text(json.dumps(report, indent=2) + "\n")
        figure(results, len(predictor.labels), tmp_png)
    log.info("UAR and WA under each condition:\n%s", table(results))
    log.info("wrote %s and %s", out, figure_path)
    return report
