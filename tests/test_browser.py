"""The app in a real browser: Debian's chromium driven by Playwright, with screenshots.

Screenshots go to ``test-artifacts/browser/`` (or ``$DIFFGRM_SCREENSHOTS``). The set-up installs
chromium (``make test`` runs ``apt-get install chromium`` where it can); the test skips, saying
so, only where no chromium exists.
"""

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("DIFFGRM_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("DIFFGRM_SCREENSHOTS", ROOT / "test-artifacts" / "browser"))
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM}")]


@contextlib.contextmanager
def offline_page(viewport: dict):
    """A chromium page in an offline context that refuses every http(s) request, and the lists it fills:
    (page, the refused URLs, the page's errors), for checking that a file:// page needs no network.
    The screenshots' folder exists; the browser closes on leaving."""
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    requested, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_context(offline=True, viewport=viewport).new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.route("http*://**/*", lambda route: (requested.append(route.request.url), route.abort()))
        try:
            yield page, requested, errors
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(chain_run):
    port = free_port()
    env = {**os.environ, "DIFFGRM_PROJECTION": "pca"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "streamlit_app.py"), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--", "--run", str(chain_run)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start: " + proc.stdout.read().decode()[-2000:])
    yield url
    proc.terminate()
    proc.wait(timeout=20)


TALL = {"width": 1400, "height": 3000}
"""A tall viewport: Streamlit scrolls inside the page, so a full-page shot shows only what fits."""


def shoot(page, name: str) -> None:
    import time

    page.wait_for_function("() => !document.body.innerText.includes('Projecting the codebooks')", timeout=120_000)
    time.sleep(1.5)  # plotly draws after the element appears
    page.screenshot(path=str(SHOTS / name), full_page=True)


def test_pick_a_user_and_step_through_the_denoising(server):
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport=TALL)
        page.goto(server)
        expect(page.get_by_text("User U0: what comes next?")).to_be_visible(timeout=90_000)
        expect(page.get_by_text("Held-out next item:")).to_be_visible()
        expect(page.get_by_text("Keep the user's history out of the recommendations")).to_be_visible(timeout=60_000)
        expect(page.locator("[data-testid='stAppDeployButton']")).to_be_hidden()  # a viewer's toolbar
        shoot(page, "01-first-user.png")

        box = page.get_by_label("User id")
        box.fill("U7")
        box.press("Enter")
        expect(page.get_by_text("User U7: what comes next?")).to_be_visible(timeout=60_000)
        expect(page.locator("[data-testid='stAppDeployButton']")).to_be_hidden()
        shoot(page, "02-user-U7.png")

        expect(page.locator("strong", has_text="Step 0 of 4")).to_be_visible()  # the page opens at the start
        page.get_by_role("button", name="▶ Play").click()  # one digit per step, to the end
        expect(page.locator("strong", has_text="Step 4 of 4")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("0 digit(s) still masked")).to_be_visible()
        assert page.get_by_role("slider").count() >= 1
        assert page.locator(".js-plotly-plot .slider-container").count() == 0  # one step control: the page's
        thumb = page.get_by_role("slider", name="Step")
        for step in (3, 2, 1):
            thumb.focus()
            thumb.press("ArrowLeft")
            expect(page.locator("strong", has_text=f"Step {step} of 4")).to_be_visible(timeout=60_000)
            shoot(page, f"03-step-{step}.png")
        expect(page.get_by_text("3 digit(s) still masked")).to_be_visible()
        expect(page.get_by_text("Why this fill at step 1?")).to_be_visible()
        # strip, alternatives, confidence heatmap: live charts, each drawn in its own frame and updated in place
        charts = [page.frame_locator("iframe").nth(i).locator("#chart .main-svg") for i in range(3)]
        for chart in charts:
            expect(chart.first).to_be_visible(timeout=60_000)
        draws = [int(f.evaluate("() => Number(document.getElementById('chart').dataset.draws || 0)"))
                 for f in page.frames if "diffgrm_live_chart" in f.url]
        assert len(draws) == 3 and sum(draws) >= 3 + 3 + 4, draws  # the same frames, redrawn per user and step

        tabs = [("Why not?", "Or find an item by title", "04-why-not.png"),
                ("Compare orders", "Each order's Top-10", "05-compare-orders.png"),
                ("Codebook spaces", "Highlight a code", "06-codebook-spaces.png"),
                ("Codebook health", "shared before repair", "07-codebook-health.png"),
                ("What if", "Edit the history and decode again", "08-what-if.png")]
        for tab, text, shot in tabs:
            page.get_by_role("tab", name=tab).click()
            expect(page.get_by_text(text).first).to_be_visible(timeout=90_000)
            expect(page.locator("strong", has_text="Step")).to_have_count(0)  # only the open tab is drawn
            shoot(page, shot)

        query = page.get_by_label("Find an item to add (title contains)")
        query.fill("Chain item 3")
        query.press("Enter")
        expect(page.get_by_text("Add", exact=True)).to_be_visible(timeout=60_000)
        page.get_by_role("button", name="Apply").click()
        expect(page.get_by_text("(changed)")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("The edited history")).to_be_visible()
        shoot(page, "09-what-if-edited.png")
        browser.close()
    assert len(list(SHOTS.glob("*.png"))) >= 11
