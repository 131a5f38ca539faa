"""`knd report`: DVC plots as one HTML page that renders with no network.

DVC's own page loads vega from a CDN; `templates/offline_plots.html` carries vega, vega-lite and
vega-embed inline (rebuilt by `scripts/build_plots_template.py`). The plots themselves are the
ones `dvc.yaml` declares: DVCLive training curves, the confusion matrix, per-class F1, figures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from knd.errors import KndError

TEMPLATE = Path(__file__).parent / "templates" / "offline_plots.html"


def report(
    revs: list[str] | None = None, diff: bool = False, out: Path = Path("reports/plots")
) -> Path:
    """`dvc plots show`, or `dvc plots diff REVS` (workspace vs HEAD without REVS) -> index.html."""
    command = ["diff", *(revs or [])] if diff or revs else ["show"]
    # `python -m dvc`: the venv's DVC even when only `knd` is on PATH
    args = [sys.executable, "-m", "dvc", "plots", *command]
    args += ["--html-template", str(TEMPLATE), "--out", str(out)]
    if subprocess.run(args).returncode:
        raise KndError(f"dvc plots {' '.join(command)} failed (its message is above)")
    return out / "index.html"
