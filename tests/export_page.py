"""Driving an exported explorer (``diffgrm export``) in chromium from ``file://`` with the network refused:
opening it, switching users, and how long each takes. Used by ``tests/test_export.py`` and by the
timing benchmarks (``switch_times``, ``first_paint``).

The page says when it has settled: after a user is shown (its file loaded, the open view's plots
updated with ``Plotly.react`` and two animation frames painted) it sets ``body[data-shown]`` and
appends the switch's milliseconds, measured in the page, to ``DIFFGRM.timings.switches``
(the first user's time since navigation start is ``DIFFGRM.timings.firstShown``).
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.test_browser import offline_page

VIEWPORT = {"width": 1400, "height": 1000}
PLOTS = ("fig-strip", "fig-alternatives", "fig-confidence", "fig-why", "fig-orders", "fig-codebook")


def page_url(out: str | Path) -> str:
    return (Path(out).resolve() / "index.html").as_uri()


def open_export(page, out: str | Path, timeout_ms: int = 60_000) -> float:
    """Open the export at ``out`` in ``page`` and wait for its first user; returns the wall-clock
    milliseconds from ``goto`` to the first user shown."""
    t0 = time.perf_counter()
    page.goto(page_url(out))
    page.wait_for_function("() => document.body.dataset.shown", timeout=timeout_ms)
    return (time.perf_counter() - t0) * 1000


def wait_switches(page, count: int, timeout_ms: int = 30_000) -> None:
    page.wait_for_function(f"() => DIFFGRM.timings.switches.length >= {count}", timeout=timeout_ms)


def switch_by_length(page, option: int, count: int) -> None:
    """Pick the ``option``-th user of the "by history length" list and wait until it is shown
    (``count``: how many switches the page will then have made)."""
    page.select_option("#by-length", index=option)
    wait_switches(page, count)


def switch_times(out: str | Path, switches: int = 10, viewport: dict | None = None) -> list[float]:
    """Open the export at ``out`` and switch users ``switches`` times through the "by history
    length" list (cycling through its users); returns each switch's milliseconds until settled."""
    with offline_page(viewport or VIEWPORT) as (page, requested, errors):
        open_export(page, out)
        n_users = page.evaluate("DIFFGRM.manifest.users.length")
        shown = page.evaluate("DIFFGRM.state.index")
        order = page.evaluate("() => [...document.querySelectorAll('#by-length option')].map(o => o.value)")
        options = [i for i, value in enumerate(order) if value not in ("", str(shown))]
        if n_users < 2 or not options:
            raise ValueError(f"{out} holds {n_users} user(s): nothing to switch to")
        for done in range(switches):
            switch_by_length(page, options[done % len(options)], done + 1)
        if errors or requested:
            raise RuntimeError(f"the page failed: errors {errors[:3]}, network requests {requested[:3]}")
        return [float(ms) for ms in page.evaluate("DIFFGRM.timings.switches")]


def first_paint(out: str | Path, viewport: dict | None = None) -> dict:
    """Milliseconds from opening the export's ``index.html`` to the browser's first contentful paint
    and to the first user shown (figures drawn), both from the page's own clock, plus the wall clock
    the driver saw."""
    with offline_page(viewport or VIEWPORT) as (page, _, _):
        wall = open_export(page, out)
        fcp = page.evaluate("() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime")
        shown = page.evaluate("DIFFGRM.timings.firstShown")
        return {"first_contentful_paint_ms": fcp, "first_user_shown_ms": shown, "wall_ms": wall}
