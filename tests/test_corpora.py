"""Corpus file-name schemes and `knd manifest`, on synthetic files named in each scheme."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from helpers.project import run_cli

from knd.data.corpora import SCHEMES, Clip, parse, scan
from knd.data.manifest import read_manifest
from knd.errors import KndError

CANONICAL = {"neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"}


@pytest.mark.parametrize(
    ("corpus", "name", "clip"),
    [
        ("ravdess", "Actor_12/03-01-05-01-02-01-12.wav", Clip("angry", "12", "female")),
        ("ravdess", "03-01-02-02-01-02-07.flac", Clip("calm", "07", "male")),
        ("crema-d", "1001_DFA_ANG_XX.wav", Clip("angry", "1001")),
        ("crema-d", "1091_IEO_DIS_LO.wav", Clip("disgust", "1091")),
        ("crema-d", "1050_TSI_FEA_HI.wav", Clip("fearful", "1050")),
        ("crema-d", "1002_WSI_HAP_MD.wav", Clip("happy", "1002")),
        ("crema-d", "1003_ITS_NEU_XX.wav", Clip("neutral", "1003")),
        ("crema-d", "1004_MTI_SAD_XX.wav", Clip("sad", "1004")),
        ("tess", "OAF_back_angry.wav", Clip("angry", "OAF", "female")),
        ("tess", "YAF_chair_ps.wav", Clip("surprised", "YAF", "female")),
        ("tess", "OAF_Fear/OAF_bean_fear.wav", Clip("fearful", "OAF", "female")),
        ("tess", "YAF_dog_disgust.wav", Clip("disgust", "YAF", "female")),
        ("tess", "YAF_home_happy.wav", Clip("happy", "YAF", "female")),
        ("tess", "OAF_jar_neutral.wav", Clip("neutral", "OAF", "female")),
        ("tess", "OAF_keen_sad.wav", Clip("sad", "OAF", "female")),
        ("savee", "DC_a01.wav", Clip("angry", "DC", "male")),
        ("savee", "JE/sa15.wav", Clip("sad", "JE", "male")),
        ("savee", "JK_su03.wav", Clip("surprised", "JK", "male")),
        ("savee", "KL/d02.wav", Clip("disgust", "KL", "male")),
        ("savee", "DC_f10.wav", Clip("fearful", "DC", "male")),
        ("savee", "DC_h01.wav", Clip("happy", "DC", "male")),
        ("savee", "DC_n30.wav", Clip("neutral", "DC", "male")),
        ("emodb", "03a01Fa.wav", Clip("happy", "03", "male")),
        ("emodb", "08b10Wb.wav", Clip("angry", "08", "female")),
        ("emodb", "09a02Lc.wav", Clip("boredom", "09", "female")),
        ("emodb", "10a04Ea.wav", Clip("disgust", "10", "male")),
        ("emodb", "16b03Aa.wav", Clip("fearful", "16", "female")),
        ("emodb", "11a05Ta.wav", Clip("sad", "11", "male")),
        ("emodb", "13a07Na.wav", Clip("neutral", "13", "female")),
    ],
)
def test_each_scheme_reads_label_speaker_and_gender(corpus, name, clip):
    assert parse(Path("corpus") / name, corpus) == clip


@pytest.mark.parametrize(
    ("corpus", "name", "reason"),
    [
        ("crema-d", "1001_DFA_ANG.wav", "expected actor_sentence_emotion_level"),
        ("crema-d", "0999_DFA_ANG_XX.wav", "actor '0999' is not one of 1001-1091"),
        ("crema-d", "1001_ABC_ANG_XX.wav", "sentence 'ABC' is not one of"),
        ("crema-d", "1001_DFA_CLM_XX.wav", "emotion 'CLM' is not one of ANG DIS FEA HAP NEU SAD"),
        ("crema-d", "1001_DFA_ANG_ZZ.wav", "level 'ZZ' is not one of LO MD HI XX"),
        ("tess", "MAF_back_angry.wav", "speaker OAF or YAF"),
        ("tess", "OAF_back_calm.wav", "emotion 'calm' is not one of"),
        ("savee", "XX_a01.wav", "speaker 'XX' (prefix or folder) is not one of DC JE JK KL"),
        ("savee", "elsewhere/a01.wav", "speaker 'elsewhere'"),
        ("savee", "DC_x01.wav", "emotion 'x' is not one of a d f h n sa su"),
        ("emodb", "03a01Fa1.wav", "expected speaker, text, emotion and version"),
        ("emodb", "04a01Fa.wav", "speaker 04 is not one of"),
        ("emodb", "03c01Fa.wav", "expected speaker"),
        ("emodb", "03a03Fa.wav", "text a03 is not one of"),
        ("emodb", "03a01Xa.wav", "emotion 'X' is not one of W L E A F T N"),
        ("ravdess", "03-01-09-01-01-01-01.wav", "emotion code 09 is not one of 01-08"),
        ("emodb", "03a01Fa.mp3", "not an audio file"),
    ],
)
def test_names_outside_the_scheme_say_what_is_wrong(corpus, name, reason):
    with pytest.raises(ValueError, match=f"'{Path(name).name}'") as err:
        parse(Path("corpus") / name, corpus)
    assert reason in str(err.value)


def test_every_scheme_maps_into_canonical_names_or_keeps_its_own():
    for corpus, names in {
        "crema-d": ["1001_DFA_ANG_XX", "1001_DFA_DIS_XX", "1001_DFA_NEU_XX"],
        "tess": ["OAF_a_angry", "OAF_a_ps", "OAF_a_fear"],
        "savee": ["DC_a01", "DC_su01", "DC_sa01"],
        "emodb": ["03a01Wa", "03a01Aa", "03a01Ta"],
    }.items():
        assert {parse(f"{n}.wav", corpus).label for n in names} <= CANONICAL
    assert parse("03a01La.wav", "emodb").label == "boredom"


def _touch(folder: Path, names: list[str]) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")  # the name is all a scheme reads


def test_knd_manifest_writes_a_manifest_relative_to_itself(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "emodb" / "wav"
    _touch(corpus, ["03a01Fa.wav", "03a01La.wav", "08b10Wb.wav", "readme.wav", "notes.txt"])
    out = tmp_path / "lists" / "emodb.csv"
    status, stdout, err = run_cli(
        monkeypatch, capsys, "manifest", str(corpus), "--corpus", "emodb", "--out", str(out)
    )
    assert status == 0, err
    assert stdout.strip() == f"{out}: 3 clips of 2 speakers (angry 1, boredom 1, happy 1)"
    assert "readme.wav" in err and "expected speaker, text, emotion and version" in err
    with out.open() as f:
        written = list(csv.DictReader(f))
    assert [r["path"] for r in written] == [
        "../emodb/wav/03a01Fa.wav",
        "../emodb/wav/03a01La.wav",
        "../emodb/wav/08b10Wb.wav",
    ]
    assert list(written[0]) == ["path", "label", "speaker", "corpus", "gender"]
    assert [(r["label"], r["speaker"], r["gender"]) for r in written] == [
        ("happy", "03", "male"),
        ("boredom", "03", "male"),
        ("angry", "08", "female"),
    ]
    rows = read_manifest(out)  # read back: paths resolve against the manifest's folder
    assert rows[0]["path"] == str((corpus / "03a01Fa.wav").resolve())


def test_knd_manifest_refuses_a_folder_of_another_corpus(tmp_path, monkeypatch, capsys):
    _touch(tmp_path, ["03a01Fa.wav"])
    status, _, err = run_cli(
        monkeypatch, capsys, "manifest", str(tmp_path), "--corpus", "tess", "--out", "x.csv"
    )
    assert status == 1 and "no file is named in the tess scheme" in err
    assert "Traceback" not in err


def test_scan_knows_every_scheme():
    assert sorted(SCHEMES) == ["crema-d", "emodb", "ravdess", "savee", "tess"]
    with pytest.raises(KndError, match="unknown corpus 'iemocap'"):
        scan(Path("."), "iemocap")
