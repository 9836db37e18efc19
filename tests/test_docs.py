"""The documentation site (`make docs`, mkdocs.yml): built offline, complete, and its figures drawn without a network.

One build into a temporary folder serves every test. It executes two notebooks (``EXECUTED``, in quick
mode, under a minute on 2 cores) and renders the other three as code: ``tests/test_notebooks.py``
executes all six already, and ``make docs`` executes all six for the site. The time of each notebook is written to ``test-artifacts/docs/times.json`` and a
screenshot of a notebook page to ``test-artifacts/docs/``. The browser check drives Debian's chromium
with Playwright from ``file://`` with every other request refused, as ``tests/test_browser.py`` does
(and skips, saying so, only where no chromium exists). ``DIFFGRM_DOCS_SITE=site`` checks a site built
already (by ``make docs``) instead of building one.
"""

from __future__ import annotations

import ast
import html
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, FLAGS

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("DIFFGRM_ARTIFACTS", ROOT / "test-artifacts")) / "docs"
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MODULES = sorted([p.stem for p in (ROOT / "diffgrm").glob("*.py") if not p.stem.startswith("_")]
                 + [p.parent.name for p in (ROOT / "diffgrm").glob("*/__init__.py")])  # viz: one page

EXECUTED = ["00_quickstart", "01_pse"]

pytestmark = pytest.mark.slow


def text(page: Path) -> str:
    """A page's visible text: tags dropped, entities decoded, whitespace collapsed."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", page.read_text(), flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if os.environ.get("DIFFGRM_DOCS_SITE"):
        return Path(os.environ["DIFFGRM_DOCS_SITE"]).resolve()
    out = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DIFFGRM_QUICK": "1"}
    env["DIFFGRM_DOCS_EXECUTE"] = ",".join(EXECUTED)
    env["DIFFGRM_DOCS_EXPORT_USERS"] = "12"  # the site's static explorer: a few users (tests/test_export.py checks it)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    times = {m[0]: float(m[1]) for m in re.findall(r"executed (\S+\.ipynb) in (\d+) s", proc.stderr)}
    assert sorted(times) == [f"{n}.ipynb" for n in EXECUTED], proc.stderr[-3000:]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "times.json").write_text(json.dumps({"build": round(seconds, 1), **times}, indent=2, sort_keys=True))
    print(f"site built in {seconds:.0f} s: {times}")
    return out


def test_guide_and_architecture_pages(site):
    readme = (ROOT / "README.md").read_text()
    index = text(site / "index.html")
    headings = re.findall(r"^#{1,3} (.+)$", readme, flags=re.M)
    assert len(headings) > 5
    for heading in headings:  # the whole README, not a copy of it: every section is on the page
        assert heading.replace("`", "") in index, heading
    assert "Data flows one way" in text(site / "architecture.html")


def test_the_site_ships_the_static_explorer_of_the_demo_runs(site):
    """``diffgrm export`` of the shipped demo runs, under explorer/, linked from the explorer page."""
    explorer = site / "explorer"
    for name in ("index.html", "app.js", "plotly.min.js", "export.json", "data/manifest.js", "data/codebook.js",
                 "data/s0/u0.js"):
        assert (explorer / name).is_file(), name
    assert json.loads((explorer / "export.json").read_text())["format"] == "diffgrm-export"
    assert 'href="explorer/index.html"' in (site / "explorer.html").read_text()


def test_the_benchmark_page_shows_the_committed_table_and_figure(site):
    """docs/long-sids.md includes bench/results/long-sids.md (not a retyped copy) and draws ocn-cost.json."""
    page = site / "long-sids.html"
    source = page.read_text()
    first_row = (ROOT / "bench" / "results" / "long-sids.md").read_text().splitlines()[0]
    assert re.sub(r"[`*]", "", first_row)[:60] in text(page)
    assert source.count('class="plotly-graph-div"') == 1 and 'id="figure-ocn-cost"' in source
    assert re.search(r'<script src="[./]*assets/javascripts/plotly\.min\.js">', source)


def test_the_debugging_page_draws_the_shipped_demos_diagnostics(site):
    """docs/debugging.md: the six diagnostics figures, made at build time from the diagnostics the demo
    runs ship (DiffGRM and AR side by side), and the committed timing table."""
    page = site / "debugging.html"
    source = page.read_text()
    assert source.count('class="plotly-graph-div"') == 6
    for name in ("reliability_figure-digit", "surest_figure-runs", "miss_map_figure-runs", "beam_curve_figure-runs",
                 "order_figure-runs", "topk_profile_figure-runs"):
        assert f'id="figure-{name}"' in source, name
    assert "DiffGRM: digit 0" in source and "AR: digit 0" in source  # both runs in the reliability figure
    first_row = (ROOT / "bench" / "results" / "diagnose.md").read_text().splitlines()[0]
    assert re.sub(r"[`*]", "", first_row)[:60] in text(page)


def test_api_pages_show_the_docstrings(site):
    assert sorted(p.stem for p in (site / "api").glob("*.html")) == MODULES
    for module in ("explorer", "cpd", "config"):
        doc = ast.get_docstring(ast.parse((ROOT / "diffgrm" / f"{module}.py").read_text()))
        first = re.sub(r"``?([^`]+)``?", r"\1", doc.split("\n\n")[0].replace("\n", " "))
        assert first in text(site / "api" / f"{module}.html"), (module, first)
    tree = ast.parse((ROOT / "diffgrm" / "explorer.py").read_text())
    explorer = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Explorer")
    page = text(site / "api" / "explorer.html")
    assert ast.get_docstring(explorer).split("\n\n")[0].replace("\n", " ") in page  # classes and their members too
    assert re.search(r"recommend \( history", page), "methods are listed with their signatures"
    assert ":class:" not in page and ":func:" not in page  # Sphinx roles print as plain code


def test_notebook_pages_are_executed(site):
    assert len(NOTEBOOKS) == 6
    for name in NOTEBOOKS:
        page = site / "notebooks" / f"{name}.html"
        source = page.read_text()
        assert "What to try next" in text(page)
        if name not in EXECUTED and not os.environ.get("DIFFGRM_DOCS_SITE"):
            assert 'class="plotly-graph-div"' not in source, f"{name} was executed, though not asked to"
            continue
        assert "jp-OutputArea-output" in source, f"{name} shows no outputs"
        assert "Traceback (most recent call last)" not in source and "jp-OutputArea-error" not in source, name
        assert source.count('class="plotly-graph-div"') >= 1, f"{name} shows no plotly figure"


def test_nothing_is_loaded_from_the_internet(site):
    remote = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["']?(?:https?:)?//""", re.I)
    for page in site.rglob("*.html"):
        source = page.read_text()
        assert not remote.search(source), (page, remote.search(source).group(0))
        assert not re.search(r"""import\(\s*["']https?://""", source), page
        assert "fonts.googleapis" not in source and "cdnjs" not in source, page
    for css in site.rglob("*.css"):
        assert not re.search(r"""url\(\s*["']?(?:https?:)?//""", css.read_text()), css
    assert (site / "assets" / "javascripts" / "plotly.min.js").stat().st_size > 1_000_000


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM}")
def test_plotly_figures_render_offline(site):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pages = ["index", "debugging"]  # the guide (no figures, no request either), the diagnostics' six figures
        for name in [*pages, *EXECUTED]:  # then the executed notebooks
            page_file = site / (f"{name}.html" if name in pages else f"notebooks/{name}.html")
            expected = page_file.read_text().count('class="plotly-graph-div"')
            context = browser.new_context(viewport={"width": 1300, "height": 1000}, offline=True)
            refused, errors = [], []
            context.route(lambda url: not url.startswith("file:"),
                          lambda route: (refused.append(route.request.url), route.abort()))
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(page_file.as_uri())
            page.wait_for_function(
                "n => document.querySelectorAll('.js-plotly-plot').length === n && "
                "[...document.querySelectorAll('.plotly-graph-div')]"
                ".every(d => d.querySelector('.main-svg .trace, .main-svg .hm'))",
                arg=expected, timeout=60_000,
            )
            assert page.locator(".js-plotly-plot .main-svg").count() >= expected
            if name == NOTEBOOKS[0]:
                page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
                page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
            assert not errors, (name, errors)
            assert not refused, (name, refused)
            context.close()
        browser.close()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM}")
def test_the_method_page_draws_its_equations_offline(site):
    """docs/method.md's equations, drawn by the MathJax shipped with the site, with every request refused."""
    from playwright.sync_api import sync_playwright

    page_file = site / "method.html"
    source = page_file.read_text()
    expected = source.count('class="arithmatex"')
    assert expected >= 40 and "arxiv.org/abs/2510.21805" in source
    assert re.search(r'<script src="[./]*assets/javascripts/mathjax/tex-svg\.js">', source)
    assert "arithmatex" not in (site / "usage.html").read_text()  # pages without maths load no MathJax
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context(viewport={"width": 1300, "height": 1000}, offline=True)
        refused, errors = [], []
        context.route(lambda url: not url.startswith("file:"), lambda route: (refused.append(route.request.url),
                                                                               route.abort()))
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(page_file.as_uri())
        page.wait_for_function("n => document.querySelectorAll('mjx-container > svg').length === n", arg=expected,
                               timeout=60_000)
        assert page.locator("mjx-container[display='true']").count() >= 10
        page.locator("[id='32-ocns-nested-views']").scroll_into_view_if_needed()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "method.png"))
        for name in ("01_pse", "02_ocn", "03_cpd"):  # the notebooks' equations, by the same MathJax
            page.goto((site / "notebooks" / f"{name}.html").as_uri())
            page.wait_for_function("document.querySelectorAll('mjx-container[display=\"true\"] > svg').length >= 5",
                                   timeout=60_000)
        assert not errors and not refused, (errors, refused)
        browser.close()
