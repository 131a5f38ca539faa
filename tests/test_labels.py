"""Class sets over canonical emotion labels: RAVDESS's three, and `found` for any corpus."""

import pytest

from knd.data.labels import EMOTIONS7, LABEL_SETS, label_names, label_of
from knd.data.ravdess import EMOTIONS


def test_emotion7_merges_calm_into_neutral():
    assert label_names("emotion7") == [e for e in EMOTIONS if e != "calm"] == list(EMOTIONS7)
    assert label_of("calm", "female", "emotion8") == "calm"
    assert label_of("calm", "female", "emotion7") == "neutral"


def test_emotion_gender14():
    names = label_names("emotion_gender14")
    assert len(names) == len(set(names)) == 14
    assert names == sorted(names)
    assert {n.split("_")[0] for n in names} == {"female", "male"}
    assert label_of("calm", "male", "emotion_gender14") == "male_neutral"
    assert label_of("happy", "female", "emotion_gender14") == "female_happy"
    assert label_of("happy", "", "emotion_gender14") is None  # gender unknown: no class


@pytest.mark.parametrize("label_set", LABEL_SETS)
def test_label_of_is_always_a_label_name(label_set):
    names = label_names(label_set)
    seen = {label_of(e, g, label_set) for e in EMOTIONS for g in ("female", "male")}
    assert seen == set(names)


def test_found_keeps_labels_without_a_counterpart_after_the_canonical_ones():
    found = ["sad", "boredom", "angry", "neutral", "angry"]
    assert label_names("found", found) == ["neutral", "sad", "angry", "boredom"]
    assert label_of("boredom", "", "found") == "boredom"
    assert label_of("boredom", "male", "emotion8") is None
    assert label_of("boredom", "male", "emotion7") is None


def test_unknown_label_set_lists_valid_ones():
    for call in (lambda: label_names("emotion6"), lambda: label_of("sad", "", "emotion6")):
        with pytest.raises(ValueError, match="emotion8, emotion7, emotion_gender14, found"):
            call()
