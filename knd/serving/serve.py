"""HTTP service: the model is loaded once, then `POST /predict`, `POST /timeline`, `WS /stream`,
`GET /health` and a web page.

Every client error is a 4xx with a readable `detail`: no file (422), audio that cannot be used
(422, the reader's message naming the file and the reason), a body over the upload limit (413,
refused from Content-Length before reading, or as soon as the bytes read pass the limit).
Inference runs one forward pass (a batch of windows) at a time (`Predictor`'s lock), which uses
both cores well; concurrent requests still decode their uploads in parallel, and a live stream's
window waits for one small batch (`BATCH_SIZE`) of a long timeline, not for all of it.
Importing this module does not import torch.

`WS /stream` is live analysis: the client sends binary messages of 16 kHz mono PCM (int16,
little-endian); every `STREAM_HOP` seconds of audio received, the server answers with the JSON
`{t, label, probabilities}` for the latest window of the model's duration (`t`: seconds of audio
received so far), or `label` and `probabilities` null when that window holds no speech. Scoring
runs in a worker thread, so one stream's inference never stalls the others' messages.

`/docs` (Swagger UI) and `/redoc` load their scripts from this server, not from a CDN, so they
work offline: `FastAPIOffline` (the fastapi-offline package, part of the [serve] extra) serves them.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import soxr
from fastapi import FastAPI, File, HTTPException, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from knd.errors import KndError
from knd.serving.predict import load_predictor, result
from knd.serving.predictor import Predictor, top_label
from knd.serving.timeline import has_speech, timeline

MB = 1_000_000
MAX_UPLOAD_SECONDS = 600  # decoded audio, not bytes: compressed uploads can claim hours
STREAM_RATE = 16_000  # Hz of the PCM a `/stream` client sends
STREAM_HOP = 0.5  # seconds of received audio between two `/stream` answers
MAX_MESSAGE_SECONDS = 2.0  # longest audio in one `/stream` message
# Windows per forward pass. Passes take turns, so a live window waits for at most one batch of a
# long upload's: with 8 streams and 10-minute timelines posted back to back, update latency p95
# was 229 ms at 4 and 521 ms at 32 (benchmarks/bench_stream.py --with-timeline, docs/live.md);
# a 10-minute timeline took as long at either.
BATCH_SIZE = 4


Audio = Annotated[UploadFile, File(description="Audio: WAV, FLAC, OGG or AIFF; any rate.")]


class Prediction(BaseModel):
    path: str
    label: str
    probabilities: dict[str, float]


class Segment(BaseModel):
    start: float
    end: float
    label: str
    probabilities: dict[str, float]


class Timeline(BaseModel):
    path: str
    duration: float
    segments: list[Segment]
    summary: dict[str, float]


class Health(BaseModel):
    status: str
    model: str
    labels: list[str]
    backend: str


class UploadTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"upload larger than the {limit / MB:g} MB limit")


class BodyLimit:
    """ASGI middleware: refuse a request body over `limit` bytes with 413, never buffering more."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse({"detail": UploadTooLarge(self.limit).detail}, 413)
            return await response(scope, receive, send)
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # FastAPI re-raises HTTPException from body parsing
                raise UploadTooLarge(self.limit)
            return message

        await self.app(scope, counting_receive, send)


def create_app(model_path: str | Path, max_upload_bytes: int = 20 * MB) -> FastAPI:
    """The service for one model file (.pt or .onnx), loaded here, once."""
    predictor = load_predictor(model_path, BATCH_SIZE)
    page = files("knd.serving").joinpath("static/index.html").read_text(encoding="utf-8")
    health = Health(
        status="ok", model=Path(model_path).name, labels=predictor.labels, backend=predictor.backend
    )

    app = FastAPIOffline(
        title="knd",
        summary="Speech emotion recognition on RAVDESS",
        description=f"Model `{health.model}` ({health.backend}), labels {health.labels}.",
    )
    app.add_middleware(BodyLimit, limit=max_upload_bytes)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/health")
    def get_health() -> Health:
        return health

    def read(file: UploadFile) -> tuple[str, np.ndarray]:
        name = file.filename or "upload"
        try:
            return name, predictor.read(file.file.read(), name, MAX_UPLOAD_SECONDS)
        except KndError as err:
            raise HTTPException(422, str(err)) from None

    too_large = {413: {"description": "Upload too large"}}

    @app.post("/predict", responses=too_large)
    def predict(file: Audio) -> Prediction:
        """Emotion probabilities of one clip (long clips: mean over 50%-overlapping windows)."""
        name, wave = read(file)
        (probabilities,) = predictor.predict([wave])
        return Prediction(**result(name, probabilities))

    @app.post("/timeline", responses=too_large)
    def post_timeline(file: Audio) -> Timeline:
        """Emotion of each speech segment of a recording (up to 10 minutes), and each emotion's
        share of the speech time; silence is not classified. As `knd predict --timeline`."""
        name, wave = read(file)
        return Timeline(**timeline(predictor, wave, name))

    @app.websocket("/stream")
    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        live = LiveWindow(predictor)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                try:
                    due = live.add(message.get("bytes"))
                except KndError as err:
                    return await websocket.close(1003, str(err))
                if due:
                    await websocket.send_json(await run_in_threadpool(live.score))
        except WebSocketDisconnect:
            pass

    return app


class LiveWindow:
    """The latest `num_samples` of a `/stream` client's audio, and when its next answer is due."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.buffer = np.zeros(0, np.float32)
        self.received = 0  # samples at STREAM_RATE
        self.hop = round(STREAM_HOP * STREAM_RATE)
        self.resampler = (
            None
            if predictor.sample_rate == STREAM_RATE
            else soxr.ResampleStream(STREAM_RATE, predictor.sample_rate, 1, dtype="float32")
        )

    def add(self, data: bytes | None) -> bool:
        """Append one binary message of int16 PCM (None: a text message); whether an answer is
        due (the audio received passed a multiple of `STREAM_HOP`)."""
        if data is None or len(data) % 2 or len(data) > 2 * MAX_MESSAGE_SECONDS * STREAM_RATE:
            got = "a text message" if data is None else f"{len(data)} bytes"
            raise KndError(
                f"messages must be binary, int16 PCM at {STREAM_RATE} Hz, at most "
                f"{MAX_MESSAGE_SECONDS:g} s (got {got})"
            )
        chunk = np.frombuffer(data, "<i2").astype(np.float32) / 32768
        before, self.received = self.received, self.received + len(chunk)
        if self.resampler is not None:
            chunk = self.resampler.resample_chunk(chunk)
        self.buffer = np.concatenate([self.buffer, chunk])[-self.predictor.num_samples :]
        return self.received // self.hop > before // self.hop

    def score(self) -> dict[str, Any]:
        """`{t, label, probabilities}` of the latest window (null label and probabilities when it
        holds no speech)."""
        answer: dict[str, Any] = {"t": self.received / STREAM_RATE}
        wave = self.buffer
        if not has_speech(wave, self.predictor.sample_rate):
            return answer | {"label": None, "probabilities": None}
        (probabilities,) = self.predictor.predict([wave])
        return answer | {"label": top_label(probabilities), "probabilities": probabilities}
