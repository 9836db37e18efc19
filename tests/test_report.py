"""`diffgrm report`: one self-contained HTML file per user, checked as text and in headless chromium offline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from diffgrm.cli import main
from tests.test_browser import CHROMIUM, SHOTS, offline_page


@pytest.fixture(scope="module")
def report(chain_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "u0.html"
    assert main(["report", str(chain_run), "--user", "U0", "--out", str(out), "--item", "7", "--beam", "16"]) == 0
    return out


def test_the_report_holds_everything_and_loads_nothing(report, chain_run):
    from diffgrm.explorer import Explorer

    text = report.read_text()
    assert not re.search(r"<script[^>]+src=", text) and not re.search(r"<link[^>]+href=", text), "an external resource"
    assert text.count("Plotly.newPlot") == 4  # strip, heatmap, why-not for the held-out item and item 7
    assert text.count("plotly.js v") >= 1 and text.count("<script type=\"text/javascript\">/**") <= 1  # inlined once
    ex = Explorer(chain_run)
    case = ex.user("U0")
    for i in case.history[-3:]:
        assert ex.titles[i] in text
    assert "Held-out next item:" in text and ex.titles[case.target] in text
    assert "Why not the held-out next item?" in text and "Why not item 7?" in text


def test_bad_report_options_are_one_error_line(chain_run, tmp_path, capsys):
    assert main(["report", str(chain_run), "--user", "nobody", "--out", str(tmp_path / "x.html")]) == 2
    assert main(["report", str(chain_run), "--user", "U0", "--out", str(tmp_path / "x.pdf")]) == 2
    assert main(["report", str(chain_run), "--user", "U0", "--out", str(tmp_path / "x.html"), "--item", "999"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 3 and all(ln.startswith("error: ") for ln in err)
    assert "nobody" in err[0] and ".html file" in err[1] and "not in the catalogue" in err[2]
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM}")
def test_the_report_renders_offline_in_chromium(report):
    with offline_page({"width": 1300, "height": 1000}) as (page, requested, errors):
        page.goto(report.as_uri())
        # drawn, each with its marks: the strip's and the confidence heatmap's cells, the why-not lines' points
        page.wait_for_function(
            """() => { const plots = [...document.querySelectorAll('.js-plotly-plot')];
                       const n = (i, sel) => plots[i] ? plots[i].querySelectorAll(sel).length : 0;
                       return plots.length === 4 && n(0, '.heatmaplayer image') > 0 && n(1, '.heatmaplayer image') > 0
                              && n(2, '.scatterlayer .point') > 0 && n(3, '.scatterlayer .point') > 0; }""",
            timeout=60_000)
        plots = page.locator(".js-plotly-plot").count()
        marks = page.locator(".js-plotly-plot .scatterlayer .point, .js-plotly-plot .heatmaplayer image").count()
        page.screenshot(path=str(SHOTS / "report-u0.png"), full_page=True)
    assert plots == 4 and marks > 0
    assert not requested, requested
    assert not errors, errors
