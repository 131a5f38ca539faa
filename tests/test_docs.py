"""The documentation site: generated pages are current, and the site builds strictly, offline.

`mkdocs build --strict` fails on a broken link, a missing nav page or a page left out of the nav;
the built HTML must not load anything from another host (no CDN scripts, fonts or styles), so
the site works where it is served without internet access.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS = Path(sys.executable).with_name("mkdocs")


def load(script: str):
    spec = importlib.util.spec_from_file_location(script, DOCS / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "script, page",
    [
        ("gen_config_reference", "configuration.md"),
        ("gen_cli_reference", "cli.md"),
    ],
)
def test_generated_page_is_up_to_date(script, page):
    text = load(script).render()
    assert (DOCS / page).read_text() == text, f"docs/{page} is stale: python docs/{script}.py"


def test_config_reference_covers_every_parameter():
    gen = load("gen_config_reference")
    page = (DOCS / "configuration.md").read_text()
    for section, cls in gen.sections():
        for name, _ in gen.fields(cls):
            assert f"| `{section}.{name}` |" in page


def test_every_composed_key_has_a_description_beside_it():
    gen = load("gen_config_reference")
    assert gen.undescribed(gen.composed_defaults(), gen.descriptions()) == []


def test_a_key_without_a_description_is_found(tmp_path):
    """The check above can fail: drop one key's comment (its next lines become plain comments)."""
    gen = load("gen_config_reference")
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    logmel = conf / "features" / "logmel.yaml"
    lines = logmel.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("duration:"))
    lines[at] = "duration: 4.0"
    logmel.write_text("\n".join(lines) + "\n")
    assert gen.descriptions(conf)["features.log_floor"].startswith("Power floor")
    assert gen.undescribed(gen.composed_defaults(conf), gen.descriptions(conf)) == [
        "features.duration"
    ]


def test_pipeline_figure_matches_dvc_yaml():
    gen = load("gen_pipeline_figure")
    assert gen.DOT.read_text() == gen.graph(), "python docs/gen_pipeline_figure.py"
    assert gen.SVG.is_file()


class ExternalLoads(HTMLParser):
    """Collect URLs on other hosts that a page would load by itself (not links to click)."""

    LOADS: ClassVar[dict[str, str]] = {
        "script": "src",
        "link": "href",
        "img": "src",
        "iframe": "src",
        "source": "src",
    }

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        url = dict(attrs).get(self.LOADS.get(tag, ""))
        if url and url.lower().startswith(("http://", "https://", "//")):
            self.found.append(f"<{tag}> {url}")


@pytest.mark.skipif(not MKDOCS.exists(), reason="mkdocs is not installed (make install)")
def test_site_builds_strictly_and_loads_nothing_from_other_hosts(tmp_path):
    site = tmp_path / "site"
    run = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 10
    for page in pages:
        parser = ExternalLoads()
        parser.feed(page.read_text(encoding="utf-8"))
        assert not parser.found, f"{page.relative_to(site)} loads {parser.found}"
    assert (site / "assets" / "pipeline.svg").is_file()


def test_readme_links_reach_files_and_headings():
    """mkdocs does not build README, so its relative links (and their anchors) are checked here."""
    from markdown.extensions.toc import slugify

    @functools.cache
    def anchors(page: Path) -> set[str]:
        return {slugify(h, "-") for h in re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M)}

    readme = (ROOT / "README.md").read_text()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", readme):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        page = ROOT / path if path else ROOT / "README.md"
        if not page.exists() or (anchor and page.suffix == ".md" and anchor not in anchors(page)):
            broken.append(target)
    assert not broken, f"README links that lead nowhere: {broken}"
