"""Screenshots of the real page for docs/live.md: docs/assets/live-upload.png, live-stream.png.

    python docs/gen_live_screenshots.py [--model models/model.pt]

Starts `knd serve` on a free port and drives headless Chromium (Debian's /usr/bin/chromium,
through playwright). Upload: a recording made of RAVDESS mirror clips of one actor, one per
emotion with pauses between them, with the pointer over a segment. Live: the fake microphone
plays another actor's clips in a loop for about ten seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_predict import MIRROR, serving  # noqa: E402

ASSETS = ROOT / "docs" / "assets"
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]


def actor_clips(actor: int, path: Path) -> Path:
    """One strong-intensity clip of each emotion by `actor` (neutral: its only intensity), with
    1 s pauses of the clips' own room tone between them, as a 16 kHz WAV."""
    with zipfile.ZipFile(MIRROR) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".wav"))
        parts = []
        for emotion in range(1, 9):
            intensity = 1 if emotion == 1 else 2
            (name,) = [
                n
                for n in names
                if Path(n).stem.split("-")[2:5] == [f"{emotion:02}", f"{intensity:02}", "01"]
                and Path(n).stem.endswith(f"-01-{actor:02}")
            ]
            wave, rate = sf.read(z.open(name), dtype="float32")
            parts += [wave, np.resize(wave[: rate // 4], rate)]
    sf.write(path, np.concatenate(parts), rate, subtype="PCM_16")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "model.pt")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="knd-shots-") as tmp:
        talk = actor_clips(3, Path(tmp) / "one-actor-eight-emotions.wav")
        mic = actor_clips(12, Path(tmp) / "microphone.wav")
        with serving(args.model) as (url, _, _), sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 760, "height": 900})
            page.goto(url)
            page.set_input_files("#file", str(talk))
            page.wait_for_selector("#timeline:not([hidden]) .band")
            time.sleep(1)  # the waveform is drawn after the bands
            page.hover("#lane .band >> nth=4")
            page.screenshot(path=str(ASSETS / "live-upload.png"), full_page=True)
            browser.close()
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=[*FLAGS, f"--use-file-for-fake-audio-capture={mic}"]
            )
            page = browser.new_page(viewport={"width": 760, "height": 560})
            page.goto(url)
            page.click("#live")
            page.wait_for_function("document.querySelectorAll('#live-strip .tick').length >= 24")
            page.hover("#live-strip .tick >> nth=-1")
            page.screenshot(path=str(ASSETS / "live-stream.png"), full_page=True)
            browser.close()
    print(f"wrote {ASSETS / 'live-upload.png'} and {ASSETS / 'live-stream.png'}")


if __name__ == "__main__":
    main()
