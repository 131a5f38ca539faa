"""HTTP service: the model is loaded once, then `POST /predict`, `GET /health` and a web page.

Every client error is a 4xx with a readable `detail`: no file (422), audio that cannot be used
(422, the reader's message naming the file and the reason), a body over the upload limit (413,
refused from Content-Length before reading, or as soon as the bytes read pass the limit).
Inference runs under a lock: one forward pass at a time uses both cores well, and concurrent
requests still decode their uploads in parallel. Importing this module does not import torch.

`/docs` (Swagger UI) and `/redoc` load their scripts from this server, not from a CDN, so they
work offline: `FastAPIOffline` (the fastapi-offline package, part of the [serve] extra) serves them.
"""

from __future__ import annotations

import threading
from importlib.resources import files
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from knd.errors import KndError
from knd.serving.predict import load_predictor, result

MB = 1_000_000
MAX_UPLOAD_SECONDS = 600  # decoded audio, not bytes: compressed uploads can claim hours


class Prediction(BaseModel):
    path: str
    label: str
    probabilities: dict[str, float]


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
    predictor = load_predictor(model_path)
    lock = threading.Lock()
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

    @app.post("/predict", responses={413: {"description": "Upload too large"}})
    def predict(
        file: Annotated[UploadFile, File(description="Audio: WAV, FLAC, OGG or AIFF; any rate.")],
    ) -> Prediction:
        """Emotion probabilities of one clip (long clips: mean over 50%-overlapping windows)."""
        name = file.filename or "upload"
        try:
            wave = predictor.read(file.file.read(), name, MAX_UPLOAD_SECONDS)
        except KndError as err:
            raise HTTPException(422, str(err)) from None
        with lock:
            (probabilities,) = predictor.predict([wave])
        return Prediction(**result(name, probabilities))

    return app
