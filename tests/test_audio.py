import io
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from knd.audio import AudioError, _resampler, load_audio

RATE = 16_000


def tone(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path, data, rate=RATE, **kw):
    sf.write(path, data, rate, **kw)
    return path


def peak_hz(wave: torch.Tensor, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave.numpy()))
    return np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()]


@pytest.mark.parametrize(
    ("ext", "fmt", "subtype", "atol"),
    [
        ("wav", "WAV", "PCM_U8", 1e-2),
        ("wav", "WAV", "PCM_16", 1e-4),
        ("wav", "WAV", "PCM_24", 1e-6),
        ("wav", "WAV", "PCM_32", 1e-6),
        ("wav", "WAV", "FLOAT", 0),
        ("flac", "FLAC", "PCM_16", 1e-4),
        ("ogg", "OGG", "VORBIS", None),  # lossy: check length and pitch only
        ("aiff", "AIFF", "PCM_16", 1e-4),
    ],
)
def test_formats_load_to_mono_float32(tmp_path, ext, fmt, subtype, atol):
    x = tone(0.5, RATE)
    path = write(tmp_path / f"clip.{ext}", x, format=fmt, subtype=subtype)
    wave = load_audio(path, RATE)
    assert wave.dtype == torch.float32 and wave.shape == (len(x),)
    if atol is None:
        assert peak_hz(wave, RATE) == pytest.approx(440, abs=2)
    else:
        np.testing.assert_allclose(wave.numpy(), x, atol=atol)


@pytest.mark.parametrize(
    ("rate", "seconds"), [(48_000, 1.0), (96_000, 0.5), (8_000, 1.0), (44_100, 0.5)]
)
def test_resamples_to_target_rate(tmp_path, rate, seconds):
    path = write(tmp_path / "clip.wav", tone(seconds, rate), rate, subtype="FLOAT")
    wave = load_audio(path, RATE)
    assert wave.shape == (round(seconds * RATE),)
    assert peak_hz(wave, RATE) == pytest.approx(440, abs=2)


def test_resampler_is_built_once_per_rate_pair():
    assert _resampler(48_000, RATE) is _resampler(48_000, RATE)


@pytest.mark.parametrize("channels", [2, 6])
def test_channels_are_averaged(tmp_path, channels):
    x = tone(0.25, RATE)
    weights = np.arange(1, channels + 1, dtype=np.float32) / channels  # e.g. left x/2, right x
    path = write(tmp_path / "multi.wav", np.outer(x, weights), subtype="FLOAT")
    wave = load_audio(path, RATE)
    np.testing.assert_allclose(wave.numpy(), x * weights.mean(), atol=1e-6)


def test_opposite_channels_cancel_to_silence(tmp_path):
    x = tone(0.25, RATE)
    path = write(tmp_path / "phase.wav", np.stack([x, -x], axis=1), subtype="FLOAT")
    with pytest.raises(AudioError) as err:
        load_audio(path, RATE)
    assert err.value.reason == "silent"


def test_bytes_and_file_objects(tmp_path):
    x = tone(0.25, 48_000)
    content = write(tmp_path / "up.flac", x, 48_000).read_bytes()
    expected = load_audio(tmp_path / "up.flac", RATE)
    assert len(expected) == 4000
    for source in (content, bytearray(content), io.BytesIO(content)):
        assert torch.equal(load_audio(source, RATE), expected)
    with open(tmp_path / "up.flac", "rb") as f:
        assert torch.equal(load_audio(f, RATE), expected)


def test_content_decides_not_the_extension(tmp_path):
    path = write(tmp_path / "really_flac.wav", tone(0.25, RATE), format="FLAC")
    assert load_audio(path, RATE).shape == (4000,)


def wav_bytes(data, subtype="PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, RATE, format="WAV", subtype=subtype)
    return buf.getvalue()


def flac_bytes(data) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, RATE, format="FLAC")
    return buf.getvalue()


SECOND = tone(1.0, RATE)
WITH_NAN = SECOND.copy()
WITH_NAN[100] = np.nan
WITH_INF = SECOND.copy()
WITH_INF[-1] = np.inf


@pytest.mark.parametrize(
    ("content", "reason", "detail"),
    [
        pytest.param(b"", "empty file", "", id="0-byte"),
        pytest.param(b"plain text, no RIFF", "not audio", "Format not recognised", id="text"),
        pytest.param(wav_bytes(np.zeros(0, np.float32)), "no samples", "", id="zero-frames"),
        # libsndfile shortens a cut WAV without an error; only its log tells, so check that.
        pytest.param(
            wav_bytes(SECOND)[:16_022], "truncated", "claims 32000 data bytes", id="wav-half"
        ),
        pytest.param(wav_bytes(SECOND)[:44], "truncated", "file holds 0", id="wav-header-only"),
        pytest.param(flac_bytes(SECOND)[:2_000], "truncated", "lost sync", id="flac-cut"),
        pytest.param(wav_bytes(WITH_NAN, "FLOAT"), "non-finite samples", "", id="nan"),
        pytest.param(wav_bytes(WITH_INF, "FLOAT"), "non-finite samples", "", id="inf"),
        pytest.param(wav_bytes(np.zeros(RATE, np.float32)), "silent", "peak below", id="zeros"),
        pytest.param(wav_bytes(np.full(RATE, 5e-5, np.float32), "FLOAT"), "silent", "", id="hiss"),
    ],
)
def test_bad_input_gives_reason_and_file_name(tmp_path, content, reason, detail):
    path = tmp_path / "bad-03-01-06.wav"
    path.write_bytes(content)
    sources = [
        (path, None, str(path)),
        (content, None, "<upload>"),
        (io.BytesIO(content), "up.wav", "up.wav"),
    ]
    for source, name, shown in sources:
        with pytest.raises(AudioError) as err:
            load_audio(source, RATE, name=name)
        assert err.value.reason == reason
        assert err.value.path == shown
        assert str(err.value).startswith(f"{shown}: {reason}")
        assert detail in err.value.detail


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"nowhere\.wav: not found$") as err:
        load_audio(tmp_path / "nowhere.wav", RATE)
    assert err.value.reason == "not found"


def test_error_message_and_pickling():
    err = AudioError("a.wav", "not audio", "Format not recognised.")
    assert str(err) == "a.wav: not audio (Format not recognised.)"
    assert str(AudioError("a.wav", "silent")) == "a.wav: silent"
    copy = pickle.loads(pickle.dumps(err))  # crosses process pools in make_dataset
    assert (copy.path, copy.reason, copy.detail, str(copy)) == (
        err.path, err.reason, err.detail, str(err),
    )  # fmt: skip
