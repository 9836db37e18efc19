"""The static explorer (``diffgrm export``) measured as the Streamlit app is: its size, how soon it
draws from ``file://``, and users switched by one viewer and by 8 viewers in lockstep.

A stage of ``python -m bench app-speed`` (``site``): it exports the demo run's first ``--site-users``
test users into a temporary folder, opens ``index.html`` in Debian's chromium with every network
request refused, and switches users through the page's "by history length" list. The page times
each switch itself (from the pick to the figures updated with ``Plotly.react`` and painted:
``DIFFGRM.timings``); the browser's CPU is every chromium process's user + system seconds.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

SETTLED = "n => window.DIFFGRM && DIFFGRM.timings.switches.length >= n"
PICK = """i => { const s = document.querySelector('#by-length'); s.selectedIndex = i;
                 s.dispatchEvent(new Event('change')); }"""


def _open(browser, url: str):
    """A new offline viewer on the export: every request that is not a local file is refused."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, offline=True)
    refused: list[str] = []
    context.route(lambda u: not u.startswith("file:"), lambda route: (refused.append(route.request.url), route.abort()))
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return context, page, refused, errors


def _lockstep(browser, url: str, viewers: int, rounds: int, cpu) -> dict:
    """``viewers`` pages switch user together ``rounds`` times; each switch timed by its page."""
    opened = [_open(browser, url) for _ in range(viewers)]
    for _, page, _, _ in opened:
        page.goto(url)
        page.wait_for_function("() => document.body.dataset.shown", timeout=60_000)
    options = opened[0][1].evaluate("() => document.querySelectorAll('#by-length option').length")
    before = cpu()
    pick = 1
    for r in range(rounds):
        for _, page, _, _ in opened:  # every viewer picks another user, as close together as one driver can
            pick = pick % (options - 1) + 1  # option 0 is "choose a user..."
            page.evaluate(PICK, pick)
        for _, page, _, _ in opened:
            page.wait_for_function(SETTLED, arg=r + 1, timeout=60_000)
    used = cpu() - before
    times = [t / 1000 for _, page, _, _ in opened for t in page.evaluate("DIFFGRM.timings.switches")]
    errors = sum(len(e) + len(f) for _, _, e, f in opened)
    for context, _, _, _ in opened:
        context.close()
    ordered = sorted(times)
    return {"viewers": viewers, "switches": len(times), "median_s": round(statistics.median(times), 3),
            "p95_s": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 3),
            "max_s": round(max(times), 3), "errors": errors,
            "browser_cpu_per_switch_s": round(used / len(times), 4)}


def stage_site(args, chromium: str, flags: list[str], browser_cpu) -> dict:
    from playwright.sync_api import sync_playwright

    from diffgrm.demo import DEMO_RUN, ensure_demo_run
    from diffgrm.export import export

    run = Path(args.run or DEMO_RUN)
    if str(run) == DEMO_RUN:
        ensure_demo_run(run)
    tmp = Path(tempfile.mkdtemp(prefix="diffgrm-site-"))
    try:
        out = tmp / "explorer"
        t0 = time.monotonic()
        summary = export(run, out, users=args.site_users)
        seconds = time.monotonic() - t0
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        url = (out / "index.html").as_uri()
        rows = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=flags)
            context, page, refused, errors = _open(browser, url)
            t0 = time.monotonic()
            page.goto(url)
            page.wait_for_function("() => document.body.dataset.shown", timeout=60_000)
            first = {"wall_s": round(time.monotonic() - t0, 2),
                     "first_contentful_paint_s": round(page.evaluate(
                         "() => performance.getEntriesByName('first-contentful-paint')[0].startTime") / 1000, 2),
                     "first_user_shown_s": round(page.evaluate("DIFFGRM.timings.firstShown") / 1000, 2),
                     "errors": len(errors) + len(refused)}
            context.close()
            for v in args.viewers:
                rows.append(_lockstep(browser, url, v, args.rounds, browser_cpu))
                print(rows[-1])
            browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"run": str(run), "users": args.site_users, "files": summary.files, "size_mb": round(size / 1e6, 2),
            "export_s": round(seconds, 1), "rounds": args.rounds, "first_page": first, "rows": rows}


def render_site(site: dict) -> list[str]:
    first = site["first_page"]
    lines = ["### The static explorer (`diffgrm export`)", "",
             f"The demo run's first {site['users']} test users exported (with its AR companion) in "
             f"{site['export_s']} s: {site['files']} files, **{site['size_mb']} MB**. Opened from `file://` with "
             f"every network request refused: first paint after **{first['first_contentful_paint_s']} s**, the "
             f"first user's figures after {first['first_user_shown_s']} s. V viewers (browser contexts of one "
             f"chromium) pick another user together, {site['rounds']} rounds; each switch is timed by its page, "
             "from the pick to the figures updated in place (`Plotly.react`) and painted. No server: the browser "
             "is all there is.", "",
             "| viewers | switches | median s | p95 s | max s | errors | browser CPU s per switch |", "|---|---|---|---|---|---|---|"]
    for r in site["rows"]:
        lines.append(f"| {r['viewers']} | {r['switches']} | {r['median_s']:.3f} | {r['p95_s']:.3f} | {r['max_s']:.3f} | "
                     f"{r['errors']} | {r['browser_cpu_per_switch_s']:.3f} |")
    return lines + [""]
