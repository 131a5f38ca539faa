"""Train/validation/test assignment.

Emotion models learn voices as eagerly as emotions, so a clip-level random split lets the test
set share speakers with training and overstates accuracy. The default holds whole speakers (RAVDESS
actors) out, balanced by gender when every speaker's gender is known; `random` exists only to
reproduce the leaky numbers of other projects.
"""

from __future__ import annotations

import itertools
import random

import pandas as pd

from knd.config import SplitConfig
from knd.errors import KndError

SPLITS = ("train", "val", "test")
Speaker = int | str


def assign_splits(meta: pd.DataFrame, cfg: SplitConfig) -> pd.Series:
    """Split name per row of `meta` (needs `speaker`, `gender` and `label` columns)."""
    if cfg.strategy == "random":
        return _random_split(meta, cfg)
    genders = speaker_genders(meta)
    test, val = (_speaker_split if cfg.strategy == "actor" else _kfold_split)(genders, cfg)
    return meta["speaker"].map(lambda s: "test" if s in test else "val" if s in val else "train")


def speaker_genders(meta: pd.DataFrame) -> dict[Speaker, str]:
    """Each speaker's gender ("" when unknown), as `meta` gives it."""
    gender = meta["gender"].fillna("").astype(str)
    return dict(zip(meta["speaker"].tolist(), gender.tolist(), strict=True))


def kfold_test_speakers(genders: dict[Speaker, str], k: int, seed: int) -> list[list[Speaker]]:
    """`k` disjoint speaker folds, each with as even a gender mix as possible."""
    folds: list[list[Speaker]] = [[] for _ in range(k)]
    for i, speaker in enumerate(itertools.chain(*_shuffled_by_gender(genders, seed))):
        folds[i % k].append(speaker)
    return [sorted(f) for f in folds]


def _shuffled_by_gender(genders: dict[Speaker, str], seed: int) -> list[list[Speaker]]:
    """Speakers shuffled within each gender (males, females); one group if any gender is unknown,
    since a balance that cannot be checked cannot be kept."""
    rng = random.Random(seed)
    if all(g in ("male", "female") for g in genders.values()):
        groups = [
            sorted(s for s, g in genders.items() if g == gender) for gender in ("male", "female")
        ]
    else:
        groups = [sorted(genders)]
    for group in groups:
        rng.shuffle(group)
    return groups


def _take_balanced(groups: list[list[Speaker]], n: int, what: str) -> set[Speaker]:
    share = n // len(groups)
    if any(len(g) < share for g in groups):
        balance = " balanced by gender" if len(groups) > 1 else ""
        raise KndError(
            f"split: cannot hold out {n} {what} speakers{balance} from "
            f"{' and '.join(str(len(g)) for g in groups)} speakers; lower split.{what}_actors"
        )
    taken = {s for g in groups for s in g[:share]}
    for group in groups:
        del group[:share]
    return taken


def _speaker_split(
    genders: dict[Speaker, str], cfg: SplitConfig
) -> tuple[set[Speaker], set[Speaker]]:
    groups = _shuffled_by_gender(genders, cfg.seed)
    test = _take_balanced(groups, cfg.test_actors, "test")
    val = _take_balanced(groups, cfg.val_actors, "val")
    if not any(groups):
        raise KndError("split: no speakers left for training; lower split.test_actors/val_actors")
    return test, val


def _kfold_split(
    genders: dict[Speaker, str], cfg: SplitConfig
) -> tuple[set[Speaker], set[Speaker]]:
    if len(genders) < cfg.k:
        raise KndError(
            f"split.k={cfg.k} folds need at least {cfg.k} speakers, found {len(genders)}"
        )
    test = set(kfold_test_speakers(genders, cfg.k, cfg.seed)[cfg.fold])
    rest = {s: g for s, g in genders.items() if s not in test}
    groups = _shuffled_by_gender(rest, cfg.seed + cfg.fold + 1)
    return test, _take_balanced(groups, cfg.val_actors, "val")


def _random_split(meta: pd.DataFrame, cfg: SplitConfig) -> pd.Series:
    """Clip-level split stratified by label. Leaky: the same speakers appear everywhere."""
    rng = random.Random(cfg.seed)
    out = pd.Series("train", index=meta.index)
    for _, group in meta.groupby("label", sort=True):
        idx = group.index.tolist()
        rng.shuffle(idx)
        n_test = round(len(idx) * cfg.test_fraction)
        n_val = round(len(idx) * cfg.val_fraction)
        out[idx[:n_test]] = "test"
        out[idx[n_test : n_test + n_val]] = "val"
    return out
