import io
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from knd.audio import AudioError, _sinc_kernel, load_audio, read_audio, resample

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


def test_resampling_kernel_is_built_once_per_rate_pair():
    assert _sinc_kernel(48_000, RATE) is _sinc_kernel(48_000, RATE)


def broadband(seconds: float, rate: int) -> np.ndarray:
    """Noise plus tones up to near Nyquist: every part of the filter's response matters."""
    rng = np.random.default_rng(rate)
    t = np.arange(round(seconds * rate)) / rate
    tones = sum(np.sin(2 * np.pi * f * t) for f in (150, 3_000, 7_900, 0.45 * rate))
    return (0.1 * tones + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.mark.parametrize(
    ("orig", "new", "seconds"),
    [
        *[(rate, RATE, 1.3) for rate in (8_000, 11_025, 22_050, 24_000, 32_000, 44_100)],
        *[(rate, RATE, 1.3) for rate in (48_000, 88_200, 96_000, 192_000)],
        (44_100, RATE, 4.0),  # many phases, long enough for per-phase sums (the other path)
        (48_000, RATE, 0.002),  # shorter than the filter
        (44_100, RATE, 1 / 44_100),  # one sample
        (RATE, 22_050, 1.0),  # upsampling by an odd ratio
        (32 * 997, RATE, 0.5),  # the largest ratio allowed (997/500)
    ],
)
def test_numpy_resampling_is_torchaudios(orig, new, seconds):
    import torchaudio

    wave = broadband(seconds, orig)
    want = torchaudio.transforms.Resample(orig, new)(torch.from_numpy(wave)).numpy()
    got = resample(wave, orig, new)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


def test_resampling_to_the_same_rate_is_a_no_op():
    wave = broadband(0.5, RATE)
    assert resample(wave, RATE, RATE) is wave


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


@pytest.mark.parametrize("rate", [*COMMON_RATES, 32 * 997])  # 31904 Hz: ratio 997/500, allowed
def test_every_common_rate_is_read(rate):
    wave = read_audio(wav_bytes(tone(0.05, rate), rate=rate), RATE)
    assert wave.shape == (round(0.05 * RATE),)


@pytest.mark.parametrize(
    "rate",
    [16_001, 44_101, 47_999, 32 * 1_009, 999, 1, 384_001, 2**31 - 1],
    ids=["16001", "44101", "47999", "ratio-1009", "999", "1", "384001", "int32-max"],
)
def test_odd_sample_rates_are_refused_before_decoding(rate):
    """A tiny upload claiming 16001 Hz would need a 16000 x 16015 kernel (GBs, ~35 s)."""
    data = wav_bytes(np.full(64, 0.5, np.float32), rate=rate)
    built = _sinc_kernel.cache_info().misses
    start = time.perf_counter()
    for source, name in [(data, "odd.wav"), (io.BytesIO(data), "odd.wav")]:
        with pytest.raises(AudioError) as err:
            read_audio(source, RATE, name)
        assert str(err.value) == f"odd.wav: unsupported sample rate ({rate} Hz)"
        assert err.value.reason == "unsupported sample rate"
    assert _sinc_kernel.cache_info().misses == built  # no kernel was built
    assert time.perf_counter() - start < 5


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
