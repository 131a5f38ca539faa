"""RAVDESS metadata, read from the file name alone.

Every RAVDESS clip is named `MM-VV-EE-II-SS-RR-AA.ext` (e.g. `03-01-06-01-02-01-12.wav`), so the
labels need no side table: parsing the name is the single source of truth, and a name that does
not describe a real RAVDESS clip is rejected with the exact field at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from knd.audio import AUDIO_EXTENSIONS

EMOTIONS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)
MODALITIES = ("full-AV", "video-only", "audio-only")
VOCAL_CHANNELS = ("speech", "song")
INTENSITIES = ("normal", "strong")
N_ACTORS = 24

# Song was recorded for a subset of emotions only.
SONG_EMOTIONS = frozenset({"neutral", "calm", "happy", "sad", "angry", "fearful"})


@dataclass(frozen=True)
class ClipInfo:
    """What a RAVDESS file name says about its clip."""

    modality: str
    vocal_channel: str
    emotion: str
    intensity: str
    statement: int
    repetition: int
    actor: int
    gender: str


def _number(field: str, value: str, high: int) -> int:
    number = int(value)
    if not 1 <= number <= high:
        raise ValueError(f"{field} {value} outside 01-{high:02d}")
    return number


def _name(field: str, value: str, names: tuple[str, ...]) -> str:
    if not 1 <= int(value) <= len(names):
        raise ValueError(f"{field} code {value} is not one of 01-{len(names):02d}")
    return names[int(value) - 1]


def parse_filename(name: str | Path) -> ClipInfo:
    """Parse a RAVDESS file name (directories ignored); raise ValueError saying what is wrong."""
    path = Path(name)
    try:
        if path.suffix and path.suffix.lower() not in AUDIO_EXTENSIONS:
            raise ValueError(
                f"extension {path.suffix!r} is not one of {' '.join(AUDIO_EXTENSIONS)}"
            )
        fields = path.stem.split("-")
        if len(fields) != 7:
            raise ValueError(f"expected 7 two-digit fields separated by '-', got {len(fields)}")
        for i, field in enumerate(fields, 1):
            if not (len(field) == 2 and field.isascii() and field.isdigit()):
                raise ValueError(f"field {i} is {field!r}, expected two digits")
        mod, voc, emo, inten, stmt, rep, actor = fields
        info = ClipInfo(
            modality=_name("modality", mod, MODALITIES),
            vocal_channel=_name("vocal channel", voc, VOCAL_CHANNELS),
            emotion=_name("emotion", emo, EMOTIONS),
            intensity=_name("intensity", inten, INTENSITIES),
            statement=_number("statement", stmt, 2),
            repetition=_number("repetition", rep, 2),
            actor=_number("actor", actor, N_ACTORS),
            gender="male" if int(actor) % 2 else "female",
        )
        if info.emotion == "neutral" and info.intensity == "strong":
            raise ValueError("neutral (01) has no strong intensity (02)")
        if info.vocal_channel == "song" and info.emotion not in SONG_EMOTIONS:
            raise ValueError(f"song (02) has no {info.emotion} ({emo})")
    except ValueError as e:
        raise ValueError(f"{path.name!r}: {e}") from None
    return info
