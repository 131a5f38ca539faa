"""The HTTP service through FastAPI's TestClient: every answer, good or bad, is deliberate."""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from helpers.audio import RATE, mirror_clips, voice
from helpers.models import LABELS, TINY_CNN, make_checkpoint

from knd.serving.predict import load_predictor
from knd.serving.serve import MB, STREAM_RATE, create_app
from knd.serving.timeline import timeline

LIMIT = 1 * MB


def encode(wave: np.ndarray, rate: int = RATE, fmt: str = "WAV") -> bytes:
    out = io.BytesIO()
    sf.write(out, wave, rate, format=fmt)
    return out.getvalue()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="module")
def client(checkpoint):
    with TestClient(create_app(checkpoint, max_upload_bytes=LIMIT)) as client:
        yield client


def post(client, data: bytes, name: str = "clip.wav"):
    return client.post("/predict", files={"file": (name, data, "application/octet-stream")})


def test_health_names_the_model_labels_and_backend(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "model": "model.pt",
        "labels": LABELS,
        "backend": "torch",
    }


def test_predict_a_wav(client):
    response = post(client, encode(voice(3.0)), "hello.wav")
    assert response.status_code == 200
    body = response.json()
    assert body["path"] == "hello.wav" and list(body["probabilities"]) == LABELS
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert sum(body["probabilities"].values()) == pytest.approx(1)


def test_predict_a_real_clip_like_the_predictor(client, checkpoint):
    (name, data), *_ = mirror_clips(1).items()
    response = post(client, data, name)
    predictor = load_predictor(checkpoint)
    wave = predictor.read(data, name)
    assert response.status_code == 200
    assert response.json()["probabilities"] == pytest.approx(predictor.predict([wave])[0], abs=1e-6)
    assert response.json()["path"] == name


def test_predict_a_stereo_44k_flac(client, checkpoint):
    """Both channels mixed and resampled: the answer of the mono mix the reader makes itself."""
    left, right = voice(2.5, 44_100), voice(2.5, 44_100, f0=200)
    response = post(client, encode(np.stack([left, right], axis=1), 44_100, "FLAC"), "s.flac")
    assert response.status_code == 200 and response.json()["path"] == "s.flac"
    predictor = load_predictor(checkpoint)
    mono = predictor.read(encode((left + right) / 2, 44_100, "FLAC"), "mono.flac")
    want = predictor.predict([mono])[0]
    got = response.json()["probabilities"]
    np.testing.assert_allclose(list(got.values()), list(want.values()), atol=1e-4)
    one_channel = predictor.predict([predictor.read(encode(left, 44_100, "FLAC"), "l.flac")])[0]
    assert np.abs(np.subtract(list(one_channel.values()), list(got.values()))).max() > 1e-3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"certainly not audio", "garbage.wav: not audio"),
        (b"", "garbage.wav: empty file"),
        (encode(np.zeros(RATE, np.float32)), "garbage.wav: silent"),
        (encode(voice(2.0))[:3000], "garbage.wav: truncated"),
    ],
    ids=["garbage", "empty", "silent", "truncated"],
)
def test_unusable_audio_is_422_with_the_reason(client, data, message):
    response = post(client, data, "garbage.wav")
    assert response.status_code == 422 and response.json()["detail"].startswith(message)


def test_a_sample_rate_no_recording_has_is_422(client):
    response = post(client, encode(voice(0.5, 999), 999), "odd.wav")
    assert response.status_code == 422
    assert response.json()["detail"] == "odd.wav: unsupported sample rate (999 Hz)"


def test_hours_of_compressed_audio_are_422_before_decoding(client):
    """Constant FLAC compresses ~7000x: a small upload could otherwise decode to gigabytes."""
    buffer = io.BytesIO()
    sf.write(buffer, np.full(RATE * 700, 0.25, np.float32), RATE, format="FLAC")
    assert len(buffer.getvalue()) < 2_000_000
    response = post(client, buffer.getvalue(), "long.flac")
    assert response.status_code == 422
    assert response.json()["detail"] == "long.flac: too long (700 s, limit 600 s)"


def test_no_file_is_422(client):
    for response in (
        client.post("/predict"),
        client.post("/predict", files={"other": ("x.wav", b"abc")}),
        client.post("/predict", content=encode(voice(1.0)), headers={"content-type": "audio/wav"}),
    ):
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "file"]


def test_too_large_is_413_from_content_length(client):
    response = post(client, b"\0" * (LIMIT + 1))
    assert response.status_code == 413 and response.json() == {
        "detail": "upload larger than the 1 MB limit"
    }


def test_too_large_is_413_while_reading_a_body_of_unknown_length(client):
    """Chunked upload, no Content-Length: the body is counted as it arrives."""
    boundary = "knd-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()

    def chunks():
        yield head
        for _ in range(2 * LIMIT // 65536):
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/predict",
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413 and "1 MB limit" in response.json()["detail"]


def test_a_small_enough_body_is_not_refused(client):
    data = encode(voice(10.0))  # 320 kB
    assert len(data) < LIMIT and post(client, data).status_code == 200


def test_concurrent_requests_get_their_own_answers(client):
    uploads = [
        (f"clip{i}.wav", encode(voice(1.0 + i / 2, f0=120 + 20 * i, seed=i))) for i in range(8)
    ]
    alone = [post(client, data, name).json() for name, data in uploads]
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(lambda u: post(client, u[1], u[0]), uploads))
    assert all(r.status_code == 200 for r in together)
    for a, b in zip(alone, together, strict=True):
        assert b.json()["path"] == a["path"]
        assert b.json()["probabilities"] == pytest.approx(a["probabilities"], abs=1e-6)


def test_page_and_openapi(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="file"' in page.text and "MediaRecorder" in page.text
    assert "<script src" not in page.text and "<link" not in page.text  # self-contained
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/health", "/predict", "/timeline"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_load_nothing_from_the_internet(client, page):
    """Swagger UI and ReDoc come from this server, so they work offline."""
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", response.text)
    assert assets and not [url for url in assets if re.match(r"(?:https?:)?//", url)], assets
    assert "https://" not in response.text and "http://" not in response.text
    assert "/openapi.json" in response.text and any(url.endswith(".js") for url in assets)
    for url in assets:
        asset = client.get(url)
        assert asset.status_code == 200 and asset.content, url
        if url.endswith(".js"):  # the page's one script: Swagger UI's or ReDoc's bundle
            assert "javascript" in asset.headers["content-type"] and len(asset.content) > 100_000


# --- POST /timeline ---------------------------------------------------------------------------


def talk() -> np.ndarray:
    """Voice, a pause, voice: two speech segments in about 9 s."""
    hiss = 0.003 * np.random.default_rng(0).standard_normal(RATE).astype(np.float32)
    return np.concatenate([hiss, voice(4.5), hiss, hiss, voice(1.5, f0=220, seed=1), hiss])


def test_timeline_of_an_upload_is_the_cli_s(client, checkpoint):
    data = encode(talk())
    response = client.post("/timeline", files={"file": ("talk.wav", data, "audio/wav")})
    predictor = load_predictor(checkpoint)
    want = timeline(predictor, predictor.read(data, "talk.wav"), "talk.wav")
    assert response.status_code == 200 and response.json() == want
    assert len(want["segments"]) == 4  # 4.5 s in three pieces of at most 2 s, then 1.5 s


@pytest.mark.parametrize(
    ("data", "status", "detail"),
    [
        (b"certainly not audio", 422, "garbage.wav: not audio"),
        (b"\0" * (LIMIT + 1), 413, "upload larger than the 1 MB limit"),
    ],
    ids=["garbage", "too-large"],
)
def test_timeline_refuses_like_predict(client, data, status, detail):
    response = client.post("/timeline", files={"file": ("garbage.wav", data, "audio/wav")})
    assert response.status_code == status and response.json()["detail"].startswith(detail)


def test_timeline_accepts_ten_minutes_and_no_more(checkpoint):
    with TestClient(create_app(checkpoint)) as default_limit:  # 20 MB
        for seconds, status in ((600, 200), (601, 422)):
            buffer = io.BytesIO()
            wave = np.tile(talk(), seconds // 9 + 1)[: seconds * RATE]
            sf.write(buffer, wave, RATE, format="FLAC")
            files = {"file": ("long.flac", buffer.getvalue())}
            response = default_limit.post("/timeline", files=files)
            assert response.status_code == status, response.text
    assert response.json()["detail"] == "long.flac: too long (601 s, limit 600 s)"


# --- WS /stream -------------------------------------------------------------------------------


def pcm(wave: np.ndarray) -> bytes:
    return (np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes()


def test_stream_answers_every_half_second_with_the_latest_window(client, checkpoint):
    wave = np.concatenate([voice(3.0), np.zeros(3 * STREAM_RATE, np.float32)])
    chunk = STREAM_RATE // 10
    predictor = load_predictor(checkpoint)
    answers = []
    with client.websocket_connect("/stream") as ws:
        for k in range(0, len(wave), chunk):
            ws.send_bytes(pcm(wave[k : k + chunk]))
            if (k + chunk) % (STREAM_RATE // 2) == 0:
                answers.append(ws.receive_json())
    assert [a["t"] for a in answers] == [0.5 * i for i in range(1, 13)]
    heard = np.frombuffer(pcm(wave), "<i2").astype(np.float32) / 32768
    for answer in answers[:6]:  # voice: the last window of 2 s (or less, at first)
        end = round(answer["t"] * STREAM_RATE)
        (want,) = predictor.predict([heard[max(0, end - 2 * STREAM_RATE) : end]])
        assert answer["probabilities"] == pytest.approx(want, abs=1e-6)
        assert answer["label"] == max(want, key=want.get)
    assert answers[-1] == {"t": 6.0, "label": None, "probabilities": None}  # 2 s of silence


@pytest.mark.parametrize(
    ("message", "got"),
    [(b"odd", "3 bytes"), (b"\0" * 64_002, "64002 bytes"), ("hello", "a text message")],
    ids=["odd-bytes", "over-2-s", "text"],
)
def test_stream_refuses_what_is_not_int16_pcm(client, message, got):
    from starlette.websockets import WebSocketDisconnect

    with client.websocket_connect("/stream") as ws:
        (ws.send_text if isinstance(message, str) else ws.send_bytes)(message)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 1003 and closed.value.reason == (
        f"messages must be binary, int16 PCM at 16000 Hz, at most 2 s (got {got})"
    )


def test_concurrent_streams_get_their_own_answers(client, checkpoint):
    """Two streams, interleaved: each answer is about its own audio."""
    waves = [voice(1.0, f0=120), voice(1.0, f0=260, seed=3)]
    predictor = load_predictor(checkpoint)
    with client.websocket_connect("/stream") as a, client.websocket_connect("/stream") as b:
        for k in range(0, STREAM_RATE, STREAM_RATE // 4):
            for ws, wave in zip((a, b), waves, strict=True):
                ws.send_bytes(pcm(wave[k : k + STREAM_RATE // 4]))
        got = [[ws.receive_json(), ws.receive_json()][-1] for ws in (a, b)]
    for answer, wave in zip(got, waves, strict=True):
        heard = np.frombuffer(pcm(wave), "<i2").astype(np.float32) / 32768
        (want,) = predictor.predict([heard])
        assert answer["t"] == 1.0 and answer["probabilities"] == pytest.approx(want, abs=1e-6)


def test_stream_resamples_for_a_model_at_another_rate(tmp_path):
    """16 kHz in, an 8 kHz model: the stream is resampled as it arrives, like a file on read."""
    rate = ("features.sample_rate=8000", "features.f_max=4000")
    model = make_checkpoint(tmp_path / "8k.pt", *TINY_CNN, *rate)
    model_8k = load_predictor(model)
    wave = voice(1.0)
    with TestClient(create_app(model)) as client, client.websocket_connect("/stream") as ws:
        for k in range(0, STREAM_RATE, STREAM_RATE // 10):
            ws.send_bytes(pcm(wave[k : k + STREAM_RATE // 10]))
        answers = [ws.receive_json(), ws.receive_json()]
    heard = np.frombuffer(pcm(wave), "<i2").astype(np.float32) / 32768
    at_8k = model_8k.read(encode(heard), "heard.wav")
    assert [a["t"] for a in answers] == [0.5, 1.0]
    # soxr's streaming resampler holds back the last few tens of ms until more audio comes: the
    # answer is the file's audio up to a moment that recent (within 0.1 s of its end, tried
    # 5 samples apart: 5 samples move these probabilities by ~3e-5, another voice by 4e-3)
    held_back = range(0, 800, 5)
    want = model_8k.probabilities([at_8k[: len(at_8k) - k] for k in held_back])
    got = np.array([answers[1]["probabilities"][label] for label in LABELS])
    assert np.abs(want - got).max(axis=1).min() < 1e-4
