"""`diffgrm report --slides`: one user's decoding as a deck of screen-sized sections, offline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from diffgrm.cli import main
from tests.test_browser import CHROMIUM, SHOTS, offline_page


@pytest.fixture(scope="module")
def deck(chain_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deck") / "deck.html"
    assert main(["report", str(chain_run), "--user", "U0", "--slides", "--out", str(out), "--beam", "16"]) == 0
    return out


def test_one_section_per_slide_in_teaching_order(deck, chain_run):
    from diffgrm.explorer import Explorer

    text = deck.read_text()
    titles = re.findall(r"<section id='slide-\d+'>(?:<h2>(.*?)</h2>)?", text)
    assert len(titles) == 1 + 1 + 1 + 4 + 1 + 1  # title, history, step 0, the four fills, Top-K, why (not)
    assert titles[1].startswith("What user U0 watched") and titles[2] == "Step 0 of 4: every digit masked"
    assert [t.split(":")[0] for t in titles[3:7]] == [f"Step {s} of 4" for s in (1, 2, 3, 4)]
    assert titles[7] == "The Top-10" and titles[8].startswith("Why ")
    ex = Explorer(chain_run)
    assert ex.titles[ex.user("U0").target] in text
    assert not re.search(r"<script[^>]+src=", text) and not re.search(r"<link[^>]+href=", text)
    assert text.count("Plotly.newPlot") == 6 and text.count("plotly.js v") == 1  # 5 strips and why-not; inlined once


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM}")
def test_the_deck_renders_offline_and_the_keys_move_between_slides(deck):
    with offline_page({"width": 1280, "height": 720}) as (page, requested, errors):
        page.goto(deck.as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 6", timeout=60_000)
        for _ in range(4):
            page.keyboard.press("ArrowRight")
            page.wait_for_timeout(200)
        assert page.evaluate("document.querySelector('.count').textContent") == "5 / 9"
        assert page.evaluate("Math.round(window.scrollY / window.innerHeight)") == 4
        page.screenshot(path=str(SHOTS / "deck-step-2.png"))
        page.keyboard.press("ArrowLeft")
        page.wait_for_timeout(200)
        assert page.evaluate("document.querySelector('.count').textContent") == "4 / 9"
    assert not requested and not errors, (requested, errors)
