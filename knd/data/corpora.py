"""File-name schemes of public emotional speech corpora: a folder of one -> manifest rows.

Each scheme reads the emotion, the speaker and (where the corpus says) the gender from a file
name alone, into knd's canonical emotion names; a label with no counterpart keeps its own name
(EmoDB's boredom). What each scheme encodes, as its publishers describe it:

- `ravdess`: `03-01-05-01-02-01-12.wav`, modality-channel-emotion-intensity-statement-repetition-
  actor; odd actors are male (Livingstone & Russo 2018, https://zenodo.org/records/1188976).
  Parsed by `knd.data.ravdess`.
- `crema-d`: `1001_DFA_ANG_XX.wav`, actor (1001-1091), sentence (12 codes), emotion (ANG DIS FEA
  HAP NEU SAD), level (LO MD HI XX); gender is in a side table, not the name
  (https://github.com/CheyneyComputerScience/CREMA-D).
- `tess`: `OAF_back_angry.wav`, speaker (OAF older, YAF younger actress), word, emotion (angry
  disgust fear happy neutral ps=pleasant surprise sad) (Dupuis & Pichora-Fuller 2010,
  https://tspace.library.utoronto.ca/handle/1807/24487).
- `savee`: `DC_a01.wav`, or `a01.wav` in a folder `DC`; speakers DC JE JK KL (all male), emotion
  prefix a d f h n sa su, sentence number (Haq & Jackson 2009, the corpus's Info.txt).
- `emodb`: `03a01Fa.wav`, speaker (2 digits), text code (a01...b10), emotion letter (W Ärger,
  L Langeweile, E Ekel, A Angst, F Freude, T Trauer, N neutral), version letter
  (Burkhardt et al. 2005, http://emodb.bilderbar.info/docu/).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from knd.audio import AUDIO_EXTENSIONS, audio_files
from knd.data import ravdess
from knd.data.manifest import write_manifest
from knd.errors import KndError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clip:
    """What a file name says: canonical label, speaker, gender ("" when the name does not say)."""

    label: str
    speaker: str
    gender: str = ""


def _ravdess(path: Path) -> Clip:
    info = ravdess.parse_filename(path)
    return Clip(info.emotion, f"{info.actor:02d}", info.gender)


CREMA_EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
CREMA_SENTENCES = {
    "IEO",
    "TIE",
    "IOM",
    "IWW",
    "TAI",
    "MTI",
    "IWL",
    "ITH",
    "DFA",
    "ITS",
    "TSI",
    "WSI",
}
CREMA_LEVELS = {"LO", "MD", "HI", "XX"}


def _crema_d(path: Path) -> Clip:
    fields = path.stem.split("_")
    if len(fields) != 4:
        raise ValueError("expected actor_sentence_emotion_level, e.g. 1001_DFA_ANG_XX")
    actor, sentence, emotion, level = fields
    if not (actor.isdigit() and 1001 <= int(actor) <= 1091):
        raise ValueError(f"actor {actor!r} is not one of 1001-1091")
    if sentence not in CREMA_SENTENCES:
        raise ValueError(f"sentence {sentence!r} is not one of {' '.join(sorted(CREMA_SENTENCES))}")
    if level not in CREMA_LEVELS:
        raise ValueError(f"level {level!r} is not one of LO MD HI XX")
    return Clip(_code(emotion, CREMA_EMOTIONS), actor)


TESS_EMOTIONS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fearful",
    "happy": "happy",
    "neutral": "neutral",
    "ps": "surprised",
    "sad": "sad",
}


def _tess(path: Path) -> Clip:
    fields = path.stem.split("_")
    if len(fields) < 3 or fields[0].upper() not in ("OAF", "YAF"):
        raise ValueError(
            "expected speaker_word_emotion with speaker OAF or YAF, e.g. OAF_back_angry"
        )
    return Clip(_code(fields[-1].lower(), TESS_EMOTIONS), fields[0].upper(), "female")


SAVEE_EMOTIONS = {
    "a": "angry",
    "d": "disgust",
    "f": "fearful",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": "surprised",
}
SAVEE_SPEAKERS = ("DC", "JE", "JK", "KL")
SAVEE_NAME = re.compile(r"(?:(?P<speaker>[A-Z]{2})_)?(?P<emotion>[a-z]{1,2})(?P<sentence>\d{2})")


def _savee(path: Path) -> Clip:
    match = SAVEE_NAME.fullmatch(path.stem)
    if not match:
        raise ValueError("expected [speaker_]emotion+sentence, e.g. DC_a01 or DC/a01")
    speaker = match["speaker"] or path.parent.name
    if speaker not in SAVEE_SPEAKERS:
        raise ValueError(f"speaker {speaker!r} (prefix or folder) is not one of DC JE JK KL")
    return Clip(_code(match["emotion"], SAVEE_EMOTIONS), speaker, "male")


EMODB_EMOTIONS = {
    "W": "angry",  # Ärger
    "L": "boredom",  # Langeweile: no canonical counterpart
    "E": "disgust",  # Ekel
    "A": "fearful",  # Angst
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "N": "neutral",
}
EMODB_SPEAKERS = {
    "03": "male",
    "08": "female",
    "09": "female",
    "10": "male",
    "11": "male",
    "12": "male",
    "13": "female",
    "14": "female",
    "15": "male",
    "16": "female",
}
EMODB_TEXTS = {"a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10"}
EMODB_NAME = re.compile(r"(?P<speaker>\d\d)(?P<text>[ab]\d\d)(?P<emotion>[A-Z])[a-z]")


def _emodb(path: Path) -> Clip:
    match = EMODB_NAME.fullmatch(path.stem)
    if not match:
        raise ValueError("expected speaker, text, emotion and version, e.g. 03a01Fa")
    speaker = match["speaker"]
    if speaker not in EMODB_SPEAKERS:
        raise ValueError(f"speaker {speaker} is not one of {' '.join(EMODB_SPEAKERS)}")
    if match["text"] not in EMODB_TEXTS:
        raise ValueError(f"text {match['text']} is not one of {' '.join(sorted(EMODB_TEXTS))}")
    return Clip(_code(match["emotion"], EMODB_EMOTIONS), speaker, EMODB_SPEAKERS[speaker])


def _code(code: str, names: dict[str, str]) -> str:
    if code not in names:
        raise ValueError(f"emotion {code!r} is not one of {' '.join(names)}")
    return names[code]


SCHEMES: dict[str, Callable[[Path], Clip]] = {
    "ravdess": _ravdess,
    "crema-d": _crema_d,
    "tess": _tess,
    "savee": _savee,
    "emodb": _emodb,
}


def parse(path: str | Path, corpus: str) -> Clip:
    """What `path`'s name says under `corpus`'s scheme; ValueError naming the file and the fault."""
    path = Path(path)
    if corpus not in SCHEMES:
        raise KndError(f"unknown corpus {corpus!r}; expected one of {', '.join(SCHEMES)}")
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise ValueError(f"{path.name!r}: not an audio file ({' '.join(AUDIO_EXTENSIONS)})")
    try:
        return SCHEMES[corpus](path)
    except ValueError as err:
        message = str(err)
        raise ValueError(message if path.name in message else f"{path.name!r}: {message}") from None


def scan(folder: Path, corpus: str) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    """Manifest rows (absolute paths) of the audio under `folder`, and (path, reason) per file
    whose name does not follow the scheme."""
    if corpus not in SCHEMES:
        raise KndError(f"unknown corpus {corpus!r}; expected one of {', '.join(SCHEMES)}")
    paths = audio_files(folder)
    if not paths:
        raise KndError(f"{folder}: no audio files found ({' '.join(AUDIO_EXTENSIONS)})")
    rows, bad = [], []
    for path in paths:
        try:
            clip = parse(path, corpus)
        except ValueError as err:
            bad.append((str(path), str(err)))
            continue
        rows.append(
            {
                "path": str(path.resolve()),
                "label": clip.label,
                "speaker": clip.speaker,
                "corpus": corpus,
                "gender": clip.gender,
            }
        )
    return rows, bad


def write_corpus_manifest(folder: Path, corpus: str, out: Path) -> list[dict[str, str]]:
    """`knd manifest`: the manifest of a corpus folder; files outside the scheme are reported."""
    rows, bad = scan(folder, corpus)
    for path, reason in bad:
        log.warning("skipped %s: %s", path, reason)
    if not rows:
        raise KndError(f"{folder}: no file is named in the {corpus} scheme; check --corpus")
    write_manifest(rows, out)
    return rows
