"""Train/validation/test assignment.

Emotion models learn voices as eagerly as emotions, so a clip-level random split lets the test
set share speakers with training and overstates accuracy. The default holds whole actors out,
balanced by gender; `random` exists only to reproduce the leaky numbers of other projects.
"""

from __future__ import annotations

import random

import pandas as pd

from knd.config import SplitConfig
from knd.errors import KndError

SPLITS = ("train", "val", "test")


def assign_splits(meta: pd.DataFrame, cfg: SplitConfig) -> pd.Series:
    """Split name per row of `meta` (needs `actor` and `label` columns)."""
    if cfg.strategy == "random":
        return _random_split(meta, cfg)
    test, val = (_actor_split if cfg.strategy == "actor" else _kfold_split)(meta, cfg)
    return meta["actor"].map(lambda a: "test" if a in test else "val" if a in val else "train")


def kfold_test_actors(actors: list[int], k: int, seed: int) -> list[list[int]]:
    """`k` disjoint actor folds, each with as even a gender mix as possible."""
    males, females = _shuffled_by_gender(actors, seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for i, actor in enumerate(males + females):
        folds[i % k].append(actor)
    return [sorted(f) for f in folds]


def _shuffled_by_gender(actors: list[int], seed: int) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    males = sorted(a for a in set(actors) if a % 2 == 1)
    females = sorted(a for a in set(actors) if a % 2 == 0)
    rng.shuffle(males)
    rng.shuffle(females)
    return males, females


def _take_balanced(males: list[int], females: list[int], n: int, what: str) -> set[int]:
    half = n // 2
    if len(males) < half or len(females) < half:
        raise KndError(
            f"split: cannot hold out {n} {what} actors balanced by gender from "
            f"{len(males)} male and {len(females)} female actors; lower split.{what}_actors"
        )
    taken = set(males[:half] + females[:half])
    del males[:half], females[:half]
    return taken


def _actor_split(meta: pd.DataFrame, cfg: SplitConfig) -> tuple[set[int], set[int]]:
    males, females = _shuffled_by_gender(meta["actor"].tolist(), cfg.seed)
    test = _take_balanced(males, females, cfg.test_actors, "test")
    val = _take_balanced(males, females, cfg.val_actors, "val")
    if not males and not females:
        raise KndError("split: no actors left for training; lower split.test_actors/val_actors")
    return test, val


def _kfold_split(meta: pd.DataFrame, cfg: SplitConfig) -> tuple[set[int], set[int]]:
    actors = sorted(set(meta["actor"]))
    if len(actors) < cfg.k:
        raise KndError(f"split.k={cfg.k} folds need at least {cfg.k} actors, found {len(actors)}")
    folds = kfold_test_actors(actors, cfg.k, cfg.seed)
    test = set(folds[cfg.fold])
    rest = [a for a in actors if a not in test]
    males, females = _shuffled_by_gender(rest, cfg.seed + cfg.fold + 1)
    return test, _take_balanced(males, females, cfg.val_actors, "val")


def _random_split(meta: pd.DataFrame, cfg: SplitConfig) -> pd.Series:
    """Clip-level split stratified by label. Leaky: the same actors appear everywhere."""
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
