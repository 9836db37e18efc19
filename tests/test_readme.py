"""The README is a front page: short, its picture drawn by a script, its write-ups on the docs site."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, load_script

README = (ROOT / "README.md").read_text()


def test_the_readme_is_a_front_page():
    assert len(README.splitlines()) <= 250
    for heading in ("## Quick start", "## What the explorer shows", "## Results, honestly read", "## Where to go next"):
        assert heading in README


def test_the_picture_exists_and_make_screenshots_draws_it():
    image = re.search(r"!\[[^\]]*\]\((docs/images/[\w.-]+\.png)\)", README)
    assert image and (ROOT / image.group(1)).is_file()
    dry = subprocess.run(["make", "-n", "screenshots"], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0 and "scripts/screenshots.py" in dry.stdout


def test_moved_write_ups_live_on_the_docs_site():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in ("usage.md", "explorer.md", "benchmarks.md", "scale.md", "troubleshooting.md", "long-sids.md"):
        assert page in nav and (ROOT / "docs" / page).is_file(), page
    # the pages include the results files instead of retyping them (snippets, checked at build time)
    for page, included in (("explorer.md", "bench/results/app-speed.md"), ("long-sids.md", "bench/results/long-sids.md")):
        assert f'--8<-- "{included}"' in (ROOT / "docs" / page).read_text()


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no chromium at {CHROMIUM}")
def test_screenshots_script_draws_the_explorer(tmp_path, chain_run):
    shots = load_script("scripts/screenshots.py")
    path = shots.capture(tmp_path / "images", user="U7", run=str(chain_run))
    assert path.is_file() and path.stat().st_size > 50_000  # a drawn page, not a blank one
    from PIL import Image

    with Image.open(path) as im:
        assert im.size == (shots.VIEWPORT["width"], shots.VIEWPORT["height"])
        assert len(set(im.convert("L").resize((64, 64)).getdata())) > 20  # text, tables and figures
