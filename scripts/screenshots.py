"""Draw the README's picture from the running explorer (``make screenshots``), so it stays current.

    .venv/bin/python scripts/screenshots.py [--out docs/images] [--user 1]

Serves the demo run with ``diffgrm app`` on a free port, opens it in Debian's chromium (the same
browser and settle check as the browser test and ``python -m bench app-speed``), and writes
``explorer.png``: the first screen a viewer sees, the sidebar and the denoising tab played to the last step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import free_port  # noqa: E402
from bench.perf.app_speed import CHART_DRAWS_JS, CHROMIUM, FLAGS, serve, wait_health, wait_settled  # noqa: E402
from diffgrm.demo import DEMO_RUN  # noqa: E402

VIEWPORT = {"width": 1400, "height": 1450}


def capture(out: Path, user: str = "1", run: str | None = None) -> Path:
    """Serve ``run`` (default: the demo run), draw ``user``'s page, and save ``out/explorer.png``."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = serve(Path(run or DEMO_RUN), port)  # `diffgrm app` as the benchmark serves it
    try:
        wait_health(f"http://127.0.0.1:{port}", 600, proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
            page.goto(f"http://127.0.0.1:{port}")
            wait_settled(page, "what comes next?")
            if user:
                box = page.get_by_label("User id")
                box.fill(user)
                before = page.evaluate(CHART_DRAWS_JS)  # the live charts count their draws: wait for new ones
                box.press("Enter")
                wait_settled(page, f"User {user}: what comes next?", before=before)
            before = page.evaluate(CHART_DRAWS_JS)
            page.get_by_role("button", name="▶ Play").click()  # the page opens at step 0: play to the last step
            page.get_by_text("0 digit(s) still masked").wait_for(timeout=120_000)
            wait_settled(page, f"User {user}: what comes next?", before=before)
            page.mouse.move(5, 5)  # no tooltip over the page
            path = out / "explorer.png"
            page.screenshot(path=str(path))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "images"))
    p.add_argument("--user", default="1", help="the user whose page is drawn (the demo's first: 1)")
    p.add_argument("--run", default=None, help="a run folder (default: the demo run)")
    args = p.parse_args(argv)
    print(capture(Path(args.out), args.user, args.run))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
