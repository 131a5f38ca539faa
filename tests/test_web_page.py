"""End to end: `knd serve` in a subprocess, its page driven by headless Chromium.

Needs Debian's chromium and the Python playwright package (no browser download: playwright
drives /usr/bin/chromium). Skipped with the reason when either is missing. Live mode is driven
by Chromium's fake microphone playing a WAV file in a loop.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
from helpers.audio import voice
from helpers.models import LABELS, TINY_CNN, make_checkpoint
from helpers.project import ROOT

from knd.serving.predict import load_predictor

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    # a fake microphone (a beeping tone) that needs no permission prompt
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"{CHROMIUM} not installed"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    # 64 bands: a random 40-band network answers two voices too alike for the test to tell them
    path = tmp_path_factory.mktemp("model") / "model.pt"
    return make_checkpoint(path, *TINY_CNN, "features.n_mels=64")


@pytest.fixture(scope="module")
def server(model):
    """`knd serve` on a free port, up once /health answers; its URL."""
    port = free_port()
    command = [sys.executable, "-m", "knd.cli", "serve", "--model", str(model), "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"knd serve exited: {process.stdout.read().decode()}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("knd serve did not answer /health within 90 s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def page(server, playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    page = browser.new_page(viewport={"width": 760, "height": 720})
    page.goto(server)
    yield page
    browser.close()


def check_result(page) -> str:
    """The verdict shown, after checking it heads a bar chart of every label."""
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)
    label = page.inner_text("#label").strip().lower()
    bars = page.locator("#bars .bar")
    assert label in LABELS and bars.count() == len(LABELS)
    assert bars.first.get_attribute("data-label") == label  # sorted, winner first
    assert "top" in bars.first.get_attribute("class")
    widths = [float(w.rstrip("%")) for w in bars.locator(".pct").all_inner_texts()]
    assert widths == sorted(widths, reverse=True) and sum(widths) == pytest.approx(100, abs=0.5)
    return label


def test_upload_a_file_and_see_the_bars(page, tmp_path):
    clip = tmp_path / "speech.wav"
    sf.write(clip, np.stack([voice(3.0, 22_050)] * 2, axis=1), 22_050)
    page.wait_for_function("document.getElementById('model').textContent.includes('model.pt')")
    page.set_input_files("#file", str(clip))
    check_result(page)
    assert page.inner_text("#status") == "speech.wav"
    page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)


def test_record_from_the_microphone(page, tmp_path):
    """MediaRecorder -> decode -> 16-bit WAV in the page -> /predict (fake microphone)."""
    page.click("#record")
    page.wait_for_selector("#record.recording")
    time.sleep(1.5)
    page.click("#record")
    page.wait_for_function("document.getElementById('status').textContent === 'recording.wav'")
    check_result(page)
    page.screenshot(path=str(tmp_path / "recording.png"), full_page=True)


def test_an_unreadable_file_shows_the_reason(page, tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    page.set_input_files("#file", str(junk))
    page.wait_for_selector("#status.error")
    assert page.inner_text("#status").startswith("Could not classify: junk.wav: not audio")
    assert page.locator("#result").is_hidden()


def hiss(seconds: float) -> np.ndarray:
    return (0.003 * np.random.default_rng(0).standard_normal(round(seconds * 16_000))).astype(
        np.float32
    )


def test_upload_a_long_recording_and_see_its_timeline(page, server, tmp_path):
    """Bands coloured by emotion over the waveform, probabilities on hover, click to play."""
    clip = tmp_path / "meeting.wav"
    wave = np.concatenate([hiss(1), voice(5), hiss(2), voice(3, f0=220, seed=1), hiss(1)])
    sf.write(clip, wave, 16_000)
    page.set_input_files("#file", str(clip))
    page.wait_for_selector("#timeline:not([hidden]) .band")
    with clip.open("rb") as f:
        want = httpx.post(f"{server}/timeline", files={"file": ("meeting.wav", f)}).json()
    bands = page.locator("#lane .band")
    assert bands.count() == len(want["segments"]) == 5
    for k, segment in enumerate(want["segments"]):
        band = bands.nth(k)
        assert band.get_attribute("data-label") == segment["label"]
        assert float(band.get_attribute("data-start")) == segment["start"]
    assert page.inner_text("#duration") == "12.0 s"
    shares = page.locator("#summary span").all_inner_texts()
    assert shares and all(s.split()[0].lower() in LABELS and s.endswith("%") for s in shares)
    page.hover("#lane .band >> nth=3")
    third = want["segments"][3]
    tip = page.inner_text("#tip")
    assert tip.startswith(f"{third['start']:.2f}\u2013{third['end']:.2f} s: {third['label']}")
    assert f"{100 * third['probabilities'][third['label']]:.1f}%" in tip
    page.click("#lane .band >> nth=3")
    page.wait_for_function(f"document.getElementById('player').currentTime >= {third['start']}")
    page.screenshot(path=str(tmp_path / "timeline.png"), full_page=True)
    page.evaluate("document.getElementById('player').pause()")


@pytest.fixture(scope="module")
def microphone(tmp_path_factory) -> tuple[str, np.ndarray]:
    """A 10 s voice as 16 kHz PCM: the file the fake microphone loops, and its samples."""
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    sf.write(path, voice(10.0), 16_000, subtype="PCM_16")
    return str(path), sf.read(path, dtype="float32")[0]


def test_live_mode_shows_the_servers_predictions_for_the_microphone(
    server, model, microphone, playwright
):
    """The page shows every answer of /stream, and those are the model's on the file's audio.

    The fake microphone loops the file from an unknown point, so each answer (once 2 s, the
    window, have been heard) is compared with the nearest of the file's 2 s windows, at every
    10 ms offset: it must be nearer to one of them than to any window of another voice. (The
    model is an untrained tiny network whose probabilities all lie within a few thousandths of
    each other; the browser's audio path moves them by about 0.002.)
    """
    path, samples = microphone
    received = []
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=[*FLAGS, f"--use-file-for-fake-audio-capture={path}"]
    )
    page = browser.new_page(viewport={"width": 760, "height": 720})
    page.on(
        "websocket",
        lambda ws: ws.on("framereceived", lambda frame: received.append(json.loads(frame))),
    )
    page.goto(server)
    page.click("#live")
    page.wait_for_selector("#live-panel:not([hidden])")
    page.wait_for_function("document.querySelectorAll('#live-strip .tick').length >= 10")
    page.click("#live")
    page.wait_for_selector("#live.secondary")
    shown = page.eval_on_selector_all(
        "#live-strip .tick",
        "ticks => ticks.map(t => [+t.dataset.t, t.dataset.label, t.dataset.probabilities])",
    )
    current = page.inner_text("#live-label").strip().lower()
    browser.close()
    assert [(a["t"], a["label"], a["probabilities"]) for a in received] == [
        (t, label or None, probabilities and json.loads(probabilities))
        for t, label, probabilities in shown
    ]
    assert [a["t"] for a in received] == [0.5 * k for k in range(1, len(received) + 1)]
    assert current == received[-1]["label"]
    predictor = load_predictor(model)
    loop = np.tile(samples, 2)
    offline = predictor.probabilities(
        [loop[o : o + predictor.num_samples] for o in range(0, len(samples), 160)]
    )
    full = [a for a in received if a["t"] >= 2.0]
    assert full and all(a["label"] for a in full)  # a voice: never taken for silence
    stranger = np.tile(voice(10.0, f0=220.0, seed=1), 2)  # another voice, the same windows
    elsewhere = predictor.probabilities(
        [stranger[o : o + predictor.num_samples] for o in range(0, len(samples), 160)]
    )
    for answer in full:
        live = np.array([answer["probabilities"][label] for label in LABELS])
        distance = np.abs(offline - live).max(axis=1)
        far = np.abs(elsewhere - live).max(axis=1).min()
        assert distance.min() < min(far, 0.004), (answer["t"], distance.min(), far)
        assert answer["label"] == LABELS[offline[distance.argmin()].argmax()]
