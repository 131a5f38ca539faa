"""Class sets: which names a model's outputs carry, given the emotion labels of the data.

Every corpus is read into knd's canonical emotion names (`EMOTIONS`, RAVDESS's eight); a label
with no counterpart, such as EmoDB's boredom, keeps its own name. `data.labels` then picks the
classes: the eight emotions, seven (calm folded into neutral, the usual convention since calm is
the only one RAVDESS adds to the basic emotions), gender x seven, or `found`, whatever the data
holds (canonical names first, in their order, then the others sorted).
"""

from __future__ import annotations

from collections.abc import Iterable

from knd.data.ravdess import EMOTIONS

LABEL_SETS = ("emotion8", "emotion7", "emotion_gender14", "found")
EMOTIONS7: tuple[str, ...] = tuple(e for e in EMOTIONS if e != "calm")
GENDERS = ("female", "male")


def label_names(label_set: str, found: Iterable[str] = EMOTIONS) -> list[str]:
    """The class names of a label set, in the order class indices refer to.

    `found`: the emotion labels of the data, needed by `found` alone.
    """
    if label_set == "emotion8":
        return list(EMOTIONS)
    if label_set == "emotion7":
        return list(EMOTIONS7)
    if label_set == "emotion_gender14":
        return sorted(f"{g}_{e}" for g in GENDERS for e in EMOTIONS7)
    if label_set == "found":
        found = set(found)
        return [e for e in EMOTIONS if e in found] + sorted(found - set(EMOTIONS))
    raise ValueError(f"unknown label set {label_set!r}; expected one of {', '.join(LABEL_SETS)}")


def label_of(emotion: str, gender: str, label_set: str) -> str | None:
    """The class of a clip under a label set; None when the set has no class for it.

    `gender` is "female", "male" or "" (unknown); only `emotion_gender14` needs it.
    """
    emotion7 = "neutral" if emotion == "calm" else emotion
    if label_set == "emotion8":
        return emotion if emotion in EMOTIONS else None
    if label_set == "emotion7":
        return emotion7 if emotion7 in EMOTIONS7 else None
    if label_set == "emotion_gender14":
        known = emotion7 in EMOTIONS7 and gender in GENDERS
        return f"{gender}_{emotion7}" if known else None
    if label_set == "found":
        return emotion
    raise ValueError(f"unknown label set {label_set!r}; expected one of {', '.join(LABEL_SETS)}")
