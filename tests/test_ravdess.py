from pathlib import Path

import pytest

from knd.data.ravdess import EMOTIONS, ClipInfo, parse_filename


def test_parses_every_field():
    info = parse_filename(Path("data/raw/Actor_12/03-01-06-02-02-01-12.wav"))
    assert info == ClipInfo(
        modality="audio-only",
        vocal_channel="speech",
        emotion="fearful",
        intensity="strong",
        statement=2,
        repetition=1,
        actor=12,
        gender="female",
    )


def test_emotion_codes_follow_the_corpus_order():
    names = [parse_filename(f"03-01-0{code}-01-01-01-01.wav").emotion for code in range(1, 9)]
    assert names == list(EMOTIONS) == [
        "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised",
    ]  # fmt: skip


@pytest.mark.parametrize("actor", range(1, 25))
def test_gender_from_actor_parity(actor):
    info = parse_filename(f"03-01-03-01-01-01-{actor:02d}.wav")
    assert info.gender == ("male" if actor % 2 else "female")


@pytest.mark.parametrize(
    ("name", "modality", "channel"),
    [
        ("01-01-02-01-01-01-01.wav", "full-AV", "speech"),
        ("02-02-02-01-01-01-01", "video-only", "song"),
    ],
)
def test_modality_and_channel_names(name, modality, channel):
    info = parse_filename(name)
    assert (info.modality, info.vocal_channel) == (modality, channel)


@pytest.mark.parametrize("ext", [".wav", ".WAV", ".flac", ".ogg", ".aif", ".AIFF"])
def test_any_audio_extension(ext):
    assert parse_filename(f"03-01-05-01-01-01-03{ext}").emotion == "angry"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("03-01-06-01-02.wav", "expected 7 two-digit fields separated by '-', got 5"),
        ("03-01-06-01-02-01-12-01.wav", "expected 7 two-digit fields separated by '-', got 8"),
        ("03_01_06_01_02_01_12.wav", "expected 7 two-digit fields separated by '-', got 1"),
        ("03-01-6-01-02-01-12.wav", "field 3 is '6', expected two digits"),
        ("03-01-06-01-02-01-1a.wav", "field 7 is '1a', expected two digits"),
        ("00-01-06-01-02-01-12.wav", "modality code 00 is not one of 01-03"),
        ("03-03-06-01-02-01-12.wav", "vocal channel code 03 is not one of 01-02"),
        ("03-01-09-01-02-01-12.wav", "emotion code 09 is not one of 01-08"),
        ("03-01-06-03-02-01-12.wav", "intensity code 03 is not one of 01-02"),
        ("03-01-06-01-03-01-12.wav", "statement 03 outside 01-02"),
        ("03-01-06-01-02-00-12.wav", "repetition 00 outside 01-02"),
        ("03-01-06-01-02-01-25.wav", "actor 25 outside 01-24"),
        ("03-01-06-01-02-01-00.wav", "actor 00 outside 01-24"),
        ("03-01-01-02-02-01-12.wav", "neutral (01) has no strong intensity (02)"),
        ("03-02-08-01-02-01-12.wav", "song (02) has no surprised (08)"),
        ("03-01-06-01-02-01-12.mp4", "extension '.mp4' is not one of .aif .aiff .flac .ogg .wav"),
    ],
)
def test_rejects_with_precise_reason(name, reason):
    with pytest.raises(ValueError) as err:
        parse_filename(f"some/dir/{name}")
    assert str(err.value) == f"{name!r}: {reason}"
