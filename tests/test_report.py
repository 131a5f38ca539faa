"""`knd report`: the project's DVC plots as a page that needs no network.

No training: a throwaway Git+DVC project gets the real `dvc.yaml` and small plot files shaped like
the stages' outputs (DVCLive TSVs, predictions, per-class scores, a figure).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.project import ROOT, git_env

LABELS = ("neutral", "calm", "happy", "sad")
CURVES = ("dvclive/plots/metrics/train/loss.tsv", "dvclive/plots/metrics/val/uar.tsv")
# 1x1 PNG, standing in for reports/figures/*.png
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def sh(cwd: Path, *args: str) -> str:
    done = subprocess.run(args, cwd=cwd, env=git_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def write_plots(root: Path, loss: list[float]) -> None:
    for name, values in zip(CURVES, (loss, [0.2 + 0.1 * i for i in range(len(loss))]), strict=True):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [f"{step}\t{value}" for step, value in enumerate(values)]
        path.write_text("\n".join([f"step\t{path.stem}", *rows]) + "\n")
    reports = root / "reports"
    (reports / "figures").mkdir(parents=True, exist_ok=True)
    pairs = [(a, p) for a in LABELS for p in LABELS if a == p or p == "calm"]
    probabilities = {p: ",".join("0.7" if q == p else "0.1" for q in LABELS) for p in LABELS}
    (reports / "predictions.csv").write_text(
        ",".join(("path", "actual", "predicted", *LABELS))
        + "\n"
        + "".join(f"a{i}.wav,{a},{p},{probabilities[p]}\n" for i, (a, p) in enumerate(pairs))
    )
    (reports / "per_class.csv").write_text(
        "label,precision,recall,f1\n" + "".join(f"{k},0.5,0.6,0.55\n" for k in LABELS)
    )
    (reports / "figures" / "training_curves.png").write_bytes(PNG)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A committed Git+DVC project with the real dvc.yaml and version 1 of every plot."""
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    write_plots(tmp_path, [2.0, 1.5, 1.2])
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, "dvc", "init", "-q")
    sh(tmp_path, "git", "add", "-A")
    sh(tmp_path, "git", "commit", "-qm", "plots v1")
    return tmp_path


def check_offline(page: str) -> None:
    assert "{plot_divs}" not in page and "{scripts}" not in page
    assert 'src="http' not in page and "https://cdn" not in page and "<script src" not in page
    for library in ("vega", "vega-lite", "vega-embed"):
        assert f'<script data-library="{library}">' in page
    assert "Redistribution and use in source and binary forms" in page  # the BSD-3 notices


def test_report_is_offline(project: Path):
    sh(project, "knd", "report")
    page = (project / "reports" / "plots" / "index.html").read_text()
    check_offline(page)
    for plot in (*CURVES, "reports/predictions.csv", "reports/per_class.csv"):
        assert f"vegaEmbed('#{plot.replace('/', '_').replace('.', '_')}', spec)" in page
    assert "Test confusion matrix" in page and "Per-class test F1" in page  # dvc.yaml's titles
    assert (project / "reports" / "plots" / "static").is_dir()  # the figures, copied next to it


def test_report_diff_compares_revisions(project: Path):
    write_plots(project, [2.0, 1.0, 0.5])
    sh(project, "knd", "report", "--diff", "--out", "reports/diff")
    page = (project / "reports" / "diff" / "index.html").read_text()
    check_offline(page)
    assert '"rev": "HEAD"' in page and '"rev": "workspace"' in page


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium to render the page in")
def test_report_renders_without_network(project: Path):
    """Headless Chromium draws every vega plot while all non-file requests are refused."""
    playwright = pytest.importorskip("playwright.sync_api")
    sh(project, "knd", "report")
    page_path = project / "reports" / "plots" / "index.html"
    remote: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        page.route(
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith(("file:", "data:"))
                else (remote.append(route.request.url), route.abort())
            ),
        )
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(page_path.as_uri())
        page.wait_for_function(
            "document.querySelectorAll('.vega-embed svg, .vega-embed canvas').length >= 4",
            timeout=30_000,
        )
        browser.close()
    assert not remote and not errors
