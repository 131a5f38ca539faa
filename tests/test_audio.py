import io
import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from knd.audio import MAX_RATE, MIN_RATE, AudioError, load_audio, read_audio, resample

RATE = 16_000
ROOT = Path(__file__).resolve().parents[1]


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


RESAMPLED_RATES = [8_000, 11_025, 16_001, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000, 192_000]
EDGE = RATE // 10  # 0.1 s at either end, where the filter starts up on the clip's edge


@pytest.mark.parametrize(
    ("orig", "freq"),
    [(o, f) for o in RESAMPLED_RATES for f in (100, 1_000, 3_000, 6_000) if f < 0.45 * o],
)
def test_a_passband_tone_keeps_its_amplitude_and_phase(orig, freq):
    """Sample by sample against the ideal tone at 16 kHz.

    1e-3 on an amplitude of 0.5 allows 0.02 dB and 0.002 rad, both inaudible; soxr's worst here
    is 1e-4 (6 kHz from 44.1 kHz), torchaudio's sinc filter's was 8e-3. A gain error, or a delay
    of half a sample at 16 kHz (0.01 at 100 Hz, 0.6 at 6 kHz), fails by far.
    """
    got = resample(tone(1.0, orig, freq), orig, RATE)
    want = tone(len(got) / RATE, RATE, freq)
    np.testing.assert_allclose(got[EDGE:-EDGE], want[EDGE:-EDGE], atol=1e-3, rtol=0)


@pytest.mark.parametrize("orig", [24_000, 44_100, 48_000, 96_000, 384_000])
@pytest.mark.parametrize("freq", [8_800, 10_000, 11_900])
def test_content_above_the_new_nyquist_is_removed(orig, freq):
    """Left in, it would alias (10 kHz to 6 kHz); -80 dB leaves no alias audible under speech.

    soxr: below -120 dB; torchaudio's sinc filter let 8.8 kHz through at -14 dB.
    """
    x = tone(1.0, orig, freq)
    got = resample(x, orig, RATE)[EDGE:-EDGE]
    assert np.sqrt(np.mean(got**2)) < 1e-4 * np.sqrt(np.mean(x**2))


@pytest.mark.parametrize(("orig", "new"), [(44_100, RATE), (48_000, RATE), (RATE, 22_050)])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 100, 4_410, 12_345, 4 * 44_100 + 1])
def test_output_length_is_the_duration_at_the_new_rate(orig, new, n):
    got = resample(np.ones(n, np.float32), orig, new)
    assert got.dtype == np.float32 and got.shape == (math.floor(n * new / orig + 0.5),)


def test_resampling_is_deterministic():
    wave = (0.1 * np.random.default_rng(0).standard_normal(44_100)).astype(np.float32)
    first = resample(wave, 44_100, RATE)
    resample(wave[:1000], 48_000, RATE)  # no state carried over between calls
    np.testing.assert_array_equal(resample(wave, 44_100, RATE), first)


def test_audio_at_the_model_rate_is_not_resampled(tmp_path):
    wave = tone(0.5, RATE)
    assert resample(wave, RATE, RATE) is wave
    path = write(tmp_path / "clip.wav", wave, subtype="FLOAT")
    np.testing.assert_array_equal(read_audio(path, RATE), wave)


def test_too_few_samples_to_make_one_at_the_model_rate(tmp_path):
    with pytest.raises(AudioError) as err:
        read_audio(wav_bytes(np.full(1, 0.5, np.float32), rate=48_000), RATE, "click.wav")
    assert str(err.value) == "click.wav: no samples (1 at 48000 Hz make none at 16000 Hz)"


def test_read_audio_is_numpy_and_load_audio_its_tensor(tmp_path):
    path = write(tmp_path / "clip.wav", tone(0.5, 44_100), 44_100, subtype="FLOAT")
    wave = read_audio(path, RATE)
    assert isinstance(wave, np.ndarray) and wave.dtype == np.float32 and wave.shape == (8000,)
    tensor = load_audio(path, RATE)
    assert tensor.dtype == torch.float32 and tensor.is_contiguous()
    np.testing.assert_array_equal(tensor.numpy(), wave)


def test_reading_audio_does_not_import_torch(tmp_path):
    path = write(tmp_path / "clip.flac", tone(0.5, 48_000), 48_000)
    code = (
        "import sys; from knd.audio import read_audio; "
        f"assert read_audio({str(path)!r}, {RATE}).shape == (8000,); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


COMMON_RATES = [8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 88_200]
COMMON_RATES += [96_000, 176_400, 192_000, 352_800, 384_000]
ODD_RATES = [MIN_RATE, 16_001, 44_101, 47_999, 32 * 1_009, 32 * 997]


@pytest.mark.parametrize("rate", COMMON_RATES + ODD_RATES)
def test_every_rate_in_range_is_read(rate):
    wave = read_audio(wav_bytes(tone(0.05, rate), rate=rate), RATE)
    assert wave.shape == (round(0.05 * RATE),)


@pytest.mark.parametrize(
    "rate", [MIN_RATE - 1, 1, MAX_RATE + 1, 2**31 - 1], ids=["999", "1", "384001", "int32-max"]
)
def test_sample_rates_out_of_range_are_refused_before_decoding(rate, monkeypatch):
    """The header alone decides: its samples are never read (1 Hz would make 16000 of each)."""
    data = wav_bytes(np.full(64, 0.5, np.float32), rate=rate)
    decoded = []
    monkeypatch.setattr(sf.SoundFile, "read", lambda *a, **kw: decoded.append(a))
    for source in (data, io.BytesIO(data)):
        with pytest.raises(AudioError) as err:
            read_audio(source, RATE, "odd.wav")
        assert str(err.value) == f"odd.wav: unsupported sample rate ({rate} Hz)"
        assert err.value.reason == "unsupported sample rate"
    assert decoded == []


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


def wav_bytes(data, subtype="PCM_16", rate=RATE) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, rate, format="WAV", subtype=subtype)
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
