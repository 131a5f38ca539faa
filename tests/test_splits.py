"""Splits: no actor in two splits for `actor` and `kfold`, deterministic from the seed."""

import dataclasses
import itertools

import pandas as pd
import pytest
from helpers.project import compose_config

from knd.data.splits import assign_splits, kfold_test_speakers
from knd.errors import KndError

ZENODO_ACTORS = list(range(1, 25))
MIRROR_ACTORS = [a for a in ZENODO_ACTORS if a not in (1, 11, 20, 21)]
# the actors of either archive the tests may be given (helpers.project.ARCHIVE)
either_archive = pytest.mark.parametrize("actors", [ZENODO_ACTORS, MIRROR_ACTORS], ids=["24", "20"])


def _gender(actor):
    return "male" if actor % 2 else "female"


def _meta(actors, clips=6):
    rows = [
        {"speaker": a, "gender": _gender(a), "label": f"e{c % 3}"}
        for a in actors
        for c in range(clips)
    ]
    return pd.DataFrame(rows)


def _check_disjoint(meta):
    sets = {s: set(meta.loc[meta["split"] == s, "speaker"]) for s in ("train", "val", "test")}
    for a, b in itertools.combinations(sets, 2):
        assert not sets[a] & sets[b], f"actors in both {a} and {b}: {sets[a] & sets[b]}"
    return sets


@either_archive
def test_actor_split_holds_out_whole_actors_balanced_by_gender(actors):
    meta = _meta(actors)
    meta["split"] = assign_splits(meta, compose_config("split.val_actors=2").split)
    sets = _check_disjoint(meta)
    assert len(sets["test"]) == 4 and len(sets["val"]) == 2
    assert sets["train"] == set(actors) - sets["test"] - sets["val"]
    for held_out in (sets["test"], sets["val"]):
        assert sum(a % 2 for a in held_out) == len(held_out) // 2


@either_archive
@pytest.mark.parametrize("strategy", ["actor", "kfold"])
def test_without_validation_actors_they_train_and_the_test_actors_stay(strategy, actors):
    meta = _meta(actors)
    cfg = compose_config(f"split={strategy}").split
    with_val = assign_splits(meta, dataclasses.replace(cfg, val_actors=2))
    without = assign_splits(meta, dataclasses.replace(cfg, val_actors=0))
    assert set(without) == {"train", "test"}
    assert without.eq("test").equals(with_val.eq("test"))


def test_actor_split_is_deterministic_and_seeded():
    cfg = compose_config().split
    meta = _meta(MIRROR_ACTORS)
    first = assign_splits(meta, cfg)
    assert first.equals(assign_splits(meta, cfg))
    assert not first.equals(assign_splits(meta, dataclasses.replace(cfg, seed=7)))


@either_archive
@pytest.mark.parametrize("fold", range(5))
def test_kfold_folds_are_disjoint_and_cover_every_actor(fold, actors):
    cfg = dataclasses.replace(compose_config("split=kfold").split, fold=fold)
    meta = _meta(actors)
    meta["split"] = assign_splits(meta, cfg)
    sets = _check_disjoint(meta)
    folds = kfold_test_speakers({a: _gender(a) for a in actors}, 5, cfg.seed)
    assert sets["test"] == set(folds[fold])
    assert sorted(itertools.chain(*folds)) == actors
    assert {len(f) for f in folds} <= {len(actors) // 5, -(-len(actors) // 5)}  # as even as can be


def test_random_split_is_clip_level_and_shares_actors():
    cfg = compose_config("split=random").split
    meta = _meta(MIRROR_ACTORS)
    meta["split"] = assign_splits(meta, cfg)
    assert set(meta.loc[meta["split"] == "test", "speaker"]) & set(
        meta.loc[meta["split"] == "train", "speaker"]
    )
    assert abs((meta["split"] == "test").mean() - cfg.test_fraction) < 0.05


def test_too_few_actors_is_a_clear_error():
    meta = _meta(actors=[2, 3, 4, 5])
    with pytest.raises(KndError, match="lower split"):
        assign_splits(meta, compose_config().split)


def test_speakers_of_unknown_gender_are_split_without_balancing():
    speakers = [f"spk{i}" for i in range(8)]
    rows = [{"speaker": s, "gender": "", "label": "e0"} for s in speakers for _ in range(3)]
    meta = pd.DataFrame(rows)
    meta["split"] = assign_splits(meta, compose_config("split.val_actors=2").split)
    sets = {s: set(meta.loc[meta["split"] == s, "speaker"]) for s in ("train", "val", "test")}
    assert len(sets["test"]) == 4 and len(sets["val"]) == 2 and len(sets["train"]) == 2
    assert set().union(*sets.values()) == set(speakers)
    assert not sets["test"] & sets["train"]
