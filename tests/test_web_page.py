"""End to end: `knd serve` in a subprocess, its page driven by headless Chromium.

Needs Debian's chromium and the Python playwright package (no browser download: playwright
drives /usr/bin/chromium). Skipped with the reason when either is missing.
"""

from __future__ import annotations

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
from helpers.models import LABELS, make_checkpoint
from helpers.project import ROOT

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
def server(tmp_path_factory):
    """`knd serve` on a free port, up once /health answers; its URL."""
    model = make_checkpoint(tmp_path_factory.mktemp("model") / "model.pt")
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
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
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
