"""How fast the explorer feels: page ready after start, and switching to another user.

    .venv/bin/python bench/app_speed.py [RUN]      (default runs/ml-tiny, trained if missing)

Starts the app on 127.0.0.1 with a cached run, drives it in Debian's chromium with Playwright,
and prints a table: seconds from process start to a rendered page, and seconds from typing a
new user id to that user's page (full new trace). Also times the library call behind a switch
(``Explorer.recommend`` with trace) without the browser.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffgrm.demo import DEMO_RUN, ensure_demo_run  # noqa: E402
from diffgrm.explorer import Explorer  # noqa: E402

CHROMIUM = os.environ.get("DIFFGRM_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else DEMO_RUN)
    if str(run) == DEMO_RUN:
        ensure_demo_run(run)
    ex = Explorer(run)
    ex.codebook_coords(os.environ.get("DIFFGRM_PROJECTION", "umap"))  # as `diffgrm app` does before serving
    users = ex.users()["user"].astype(str).tolist()

    calls = []
    for u in users[1:21]:
        t0 = time.perf_counter()
        ex.recommend(ex.user(u).history, beam=32, k=10)
        calls.append(time.perf_counter() - t0)

    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    t_start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "streamlit_app.py"), "--server.address",
         "127.0.0.1", "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--", "--run", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            while True:
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            page.goto(url)
            expect(page.get_by_text(f"User {users[0]}: what comes next?")).to_be_visible(timeout=120_000)
            expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
            ready = time.perf_counter() - t_start
            switches = []
            for u in users[1:6]:
                box = page.get_by_label("User id")
                box.fill(u)
                t0 = time.perf_counter()
                box.press("Enter")
                expect(page.get_by_text(f"User {u}: what comes next?")).to_be_visible(timeout=60_000)
                expect(page.locator("strong", has_text="Step")).to_be_visible(timeout=60_000)
                switches.append(time.perf_counter() - t0)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)

    print(f"run {run} ({ex.prepared.n_items:,} items, beam 32, K 10)\n")
    print("| what | seconds |")
    print("|---|---|")
    print(f"| page ready after start (cached run) | {ready:.1f} |")
    print(f"| switch user in the browser, median of {len(switches)} | {statistics.median(switches):.2f} |")
    print(f"| `Explorer.recommend` with trace, median of {len(calls)} | {statistics.median(calls):.3f} |")


if __name__ == "__main__":
    main()
