"""How fast the explorer feels, measured as a user meets it.

    python -m bench app-speed start              # cold and warm `make app` from a fresh clone
    python -m bench app-speed setup              # .venv set up with pip (as before) and with uv (as now)
    python -m bench app-speed switch             # 1, 4 and 8 viewers switching users in lockstep
    python -m bench app-speed site               # the static explorer: size, first page, viewers switching
    python -m bench app-speed switch --viewers 1 --rounds 3 --out /tmp/x   # a quick look
    python -m bench app-speed table              # the .md again from the .json

``start`` clones this repository (its committed HEAD) into a temporary folder and times ``make app``
there twice: cold (a new virtual environment, MovieLens-100K read from the download cache, the shipped demo runs installed)
and warm (everything in place). Each time counts from ``make`` starting to the first page drawn in
Debian's chromium: the title, the first user's title and the denoising figures, nothing left stale.
pip's wheel cache and diffgrm's download cache (``~/.cache``) are this machine's: a machine that
never saw them adds the downloads.

``switch`` serves the demo run once, opens V viewers (separate browser contexts in one chromium),
and in each round every viewer types another user id at the same moment; a switch ends when that
viewer's page has *settled*: the new user's title, the three denoising figures drawn, no element
stale and no run in progress. It records every switch's seconds, the server's CPU seconds per switch
(``psutil``, user + system, of the streamlit process) and its memory before and after.

Both write ``bench/results/app-speed.{md,json}`` (``--out``), keeping the other command's part.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import RESULTS_DIR, ROOT, commit, free_port
from bench.perf.site_speed import render_site
from bench.perf.site_speed import stage_site as _site
from bench.results_io import publish

RESULTS = ("app-speed",)



CHROMIUM = os.environ.get("DIFFGRM_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

# A page has settled for user U when its title names U, the denoising tab's figures are drawn, no
# element is stale (Streamlit marks what the running script has not re-sent yet) and no run is going.
# The denoising figures are live charts (app/charts.py): each draws inside its own frame, and counts
# its draws, so a switch has settled once every one of them has drawn again since it started.
CHART_DRAWS_JS = """() => [...document.querySelectorAll('iframe')].map(f => {
  try { return f.contentDocument && f.contentDocument.getElementById('chart'); } catch (e) { return null; }
}).filter(c => c).reduce((total, c) => total + Number(c.dataset.draws || 0), 0)"""
SETTLED_JS = """([want, figures, before]) => {
  const titled = [...document.querySelectorAll('h1')].some(h => h.textContent.includes(want));
  const stale = document.querySelectorAll('[data-stale="true"]').length;
  const running = document.querySelectorAll('[data-testid="stStatusWidgetRunningIcon"],'
                                             + '[data-testid="stStatusWidgetRunningManIcon"]').length;
  const charts = [...document.querySelectorAll('iframe')].map(f => {
    try { return f.contentDocument && f.contentDocument.getElementById('chart'); } catch (e) { return null; }
  }).filter(c => c);
  const drawn = charts.filter(c => c.querySelector('.main-svg')).length
    + [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.querySelector('.main-svg')).length;
  const draws = charts.reduce((total, c) => total + Number(c.dataset.draws || 0), 0);
  return titled && stale === 0 && running === 0 && drawn >= figures && draws >= before + figures;
}"""
FIGURES = 3  # the denoising strip, the alternatives and the confidence heatmap


def wait_health(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the app exited (code {proc.returncode}) before serving {url}")
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def wait_settled(page, want: str, timeout: float = 120.0, before: int = 0) -> None:
    """Until the page shows ``want`` with its figures drawn ``before`` draws ago or later (see SETTLED_JS)."""
    page.wait_for_function(SETTLED_JS, arg=[want, FIGURES, before], timeout=timeout * 1000, polling=20)


# --------------------------------------------------------------------------- start: cold and warm make app


def _time_make_app(clone: Path, port: int, browser, user: str, log: Path) -> dict:
    """One `make app` in ``clone``: seconds to each milestone, then the server is stopped."""
    stamp, model = clone / ".venv" / ".diffgrm-installed", clone / "runs" / "ml-tiny" / "model.safetensors"
    had_stamp, had_model = stamp.exists(), model.exists()
    url = f"http://127.0.0.1:{port}"
    t0, wall0 = time.monotonic(), time.time()
    with log.open("a") as out:
        proc = subprocess.Popen(["make", "app", f"APP_ARGS=--port {port}"], cwd=clone, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_health(url, 900, proc)
        served = time.monotonic() - t0
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        wait_settled(page, f"User {user}: what comes next?")
        drawn = time.monotonic() - t0
        page.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    rec = {"served_s": round(served, 2), "page_s": round(drawn, 2)}
    if not had_stamp and stamp.exists():
        rec["setup_s"] = round(stamp.stat().st_mtime - wall0, 2)
    if not had_model and model.exists():
        rec["demo_runs_s"] = round(model.stat().st_mtime - wall0, 2)
    return rec


def stage_start(args: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    head = commit(short=True)["commit"]
    tmp = Path(tempfile.mkdtemp(prefix="diffgrm-fresh-"))
    clone = tmp / "diffgrm"
    try:
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        log = tmp / "make-app.log"
        port = free_port()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            cold = _time_make_app(clone, port, browser, args.user, log)
            print(f"cold: {cold}", file=sys.stderr)
            warm = _time_make_app(clone, port, browser, args.user, log)
            print(f"warm: {warm}", file=sys.stderr)
            browser.close()
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"commit": head, "cold": cold, "warm": warm}


# --------------------------------------------------------------------------- setup: pip against uv


def _timed(cmd: list[str], cwd: Path, log: Path) -> float:
    t0 = time.monotonic()
    with log.open("a") as out:
        subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=True)
    return round(time.monotonic() - t0, 2)


def stage_setup(args: argparse.Namespace) -> dict:
    """Two fresh clones, their virtualenvs made two ways: with pip as the set-up did before (pip
    upgraded, torch, then every extra), and with uv as `make app` (the app's packages) and `make
    test` (the rest) do now. Both read this machine's caches (pip's and uv's), warmed beforehand."""
    tmp = Path(tempfile.mkdtemp(prefix="diffgrm-setup-"))
    log = tmp / "setup.log"
    torch = "torch==2.13.0"
    try:
        for name in ("pip", "uv"):
            subprocess.run(["git", "clone", "--quiet", str(ROOT), str(tmp / name)], check=True)
        old, new = tmp / "pip", tmp / "uv"
        py = str(old / ".venv" / "bin" / "python")
        pip = {"venv": _timed([sys.executable, "-m", "venv", ".venv"], old, log),
               "pip_upgrade": _timed([py, "-m", "pip", "install", "-q", "--upgrade", "pip"], old, log),
               "torch": _timed([py, "-m", "pip", "install", "-q", torch], old, log),
               "extras": _timed([py, "-m", "pip", "install", "-q", "-e", ".[all,cornac]"], old, log)}
        uv = {"app": _timed(["make", "setup"], new, log), "test": _timed(["make", "setup-test"], new, log)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"commit": commit(short=True)["commit"], "pip": pip, "pip_s": round(sum(pip.values()), 2),
            "uv_app_s": uv["app"], "uv_test_s": round(uv["app"] + uv["test"], 2)}


# --------------------------------------------------------------------------- switch: viewers in lockstep


def serve(run: Path, port: int) -> subprocess.Popen:
    """``diffgrm app RUN`` on ``port`` from the repository root, its output discarded (also scripts/screenshots.py)."""
    cmd = [sys.executable, "-m", "diffgrm.cli", "app", str(run), "--port", str(port)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)


def _lockstep(browser, url: str, users: list[str], viewers: int, rounds: int, server) -> dict:
    """``viewers`` pages switch user together ``rounds`` times; each switch timed until its page settles."""
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(viewers)]
    pages = [c.new_page() for c in contexts]
    for page in pages:  # every viewer's first page, one after another (not timed)
        page.goto(url)
        wait_settled(page, f"User {users[0]}: what comes next?")
    mem0 = server.memory_info().rss
    cpu0 = sum(server.cpu_times()[:2])
    times, errors, nxt = [], 0, 1
    browser0 = _browser_cpu()
    for _ in range(rounds):
        wanted, before = [], [page.evaluate(CHART_DRAWS_JS) for page in pages]
        for page in pages:
            user = users[nxt % len(users)]
            nxt += 1
            page.get_by_label("User id").fill(user)
            wanted.append(f"User {user}: what comes next?")
        starts = []
        for page in pages:  # press Enter on every page, as close together as one driver can
            page.get_by_label("User id").press("Enter")
            starts.append(time.monotonic())
        done: dict[int, float] = {}
        end = time.monotonic() + 120
        while len(done) < viewers and time.monotonic() < end:
            for i, page in enumerate(pages):
                if i not in done and page.evaluate(SETTLED_JS, [wanted[i], FIGURES, before[i]]):
                    done[i] = time.monotonic() - starts[i]
            time.sleep(0.01)
        errors += viewers - len(done)
        errors += sum(page.locator('[data-testid="stException"]').count() for page in pages)
        times += list(done.values())
    cpu = sum(server.cpu_times()[:2]) - cpu0
    browser_cpu = _browser_cpu() - browser0
    mem1 = server.memory_info().rss
    for c in contexts:
        c.close()
    return {"viewers": viewers, "switches": viewers * rounds, "median_s": round(statistics.median(times), 3),
            "p95_s": round(_p95(times), 3), "max_s": round(max(times), 3), "errors": errors,
            "browser_cpu_per_switch_s": round(browser_cpu / (viewers * rounds), 4),
            "server_cpu_per_switch_s": round(cpu / (viewers * rounds), 4),
            "memory_mb_before": round(mem0 / 2**20, 1), "memory_growth_mb": round((mem1 - mem0) / 2**20, 1)}


def _browser_cpu() -> float:
    """CPU seconds (user + system) of every chromium process this benchmark started."""
    import psutil

    total = 0.0
    for proc in psutil.Process().children(recursive=True):
        try:
            if "chrom" in proc.name():
                t = proc.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _p95(values: list[float]) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))] if v else float("nan")


def stage_switch(args: argparse.Namespace) -> dict:
    import psutil
    from playwright.sync_api import sync_playwright

    from diffgrm.demo import DEMO_RUN, ensure_demo_run
    from diffgrm.explorer import Explorer

    run = Path(args.run or DEMO_RUN)
    if str(run) == DEMO_RUN:
        ensure_demo_run(run)
    users = Explorer(run).users()["user"].astype(str).tolist()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    proc = serve(run, port)
    rows = []
    try:
        wait_health(url, 120, proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            wait_settled(page, f"User {users[0]}: what comes next?")
            first_page = time.monotonic() - t0
            page.close()
            server = psutil.Process(proc.pid)
            for v in args.viewers:
                rec = _lockstep(browser, url, users, v, args.rounds, server)
                print(rec, file=sys.stderr)
                rows.append(rec)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"run": str(run), "rounds": args.rounds, "first_page_s": round(first_page, 2), "rows": rows}


# --------------------------------------------------------------------------- the table


def render(res: dict) -> str:
    lines = [
             "This 2-core machine, quiet (no other job running), Debian's chromium driven by Playwright; "
             "the demo run (MovieLens-100K, beam 32, K 10, history kept out).", ""]
    start = res.get("start")
    if start:
        cold, warm = start["cold"], start["warm"]
        lines += ["### `make app` on a fresh clone", "",
                  f"Commit {start['commit']}, cloned into a temporary folder; seconds from `make app` starting.", "",
                  "| start | set-up done | demo runs installed | server answers | first page drawn |",
                  "|---|---|---|---|---|",
                  f"| cold (new clone) | {cold.get('setup_s', '-')} | {cold.get('demo_runs_s', '-')} | "
                  f"{cold['served_s']} | **{cold['page_s']}** |",
                  f"| warm (second start) | - | - | **{warm['served_s']}** | {warm['page_s']} |", "",
                  "First page drawn: the user's title and the three denoising figures on screen, nothing stale. "
                  f"After the server answers, the browser spends {warm['page_s'] - warm['served_s']:.1f} s loading "
                  "Streamlit's and plotly's JavaScript and drawing (chromium here shares the 2 cores). Nothing is trained: the demo runs are copied from the "
                  "package with their catalogue. The download caches (uv's, pip's, MovieLens') were this "
                  "machine's.", ""]
    setup = res.get("setup")
    if setup:
        lines += ["### Setting up `.venv`", "",
                  f"Commit {setup['commit']}, two fresh clones; seconds. Before: pip (upgraded first) installs torch, "
                  "then every extra (`.[all,cornac]`), for the app and the tests alike. Now: uv, installed into the "
                  "new `.venv` by pip, installs what `make app` needs (`make setup`: torch and the `app` extra), and "
                  "`make test` adds the rest (`make setup-test`). Both read this machine's download caches.", "",
                  "| set-up | seconds |", "|---|---|",
                  f"| before, pip: everything (app and tests) | {setup['pip_s']} |",
                  f"| now, uv: `make app`'s packages | **{setup['uv_app_s']}** |",
                  f"| now, uv: `make test`'s packages (the app's, then the rest) | **{setup['uv_test_s']}** "
                  f"({setup['pip_s'] / setup['uv_test_s']:.1f}x faster) |", ""]
    if res.get("site"):
        lines += render_site(res["site"])
    sw = res.get("switch")
    if sw:
        lines += ["### Switching user", "",
                  f"One server (`diffgrm app`, first page after {sw['first_page_s']} s); V viewers in separate "
                  f"browser contexts of one chromium switch user together, {sw['rounds']} rounds, every switch to a "
                  "user no viewer has seen (no cache hit). A switch ends when that page has settled: new title, "
                  "three figures drawn, nothing stale, no run going. Server CPU: the streamlit process's user + "
                  "system seconds over the switches; browser CPU: all chromium processes' (the viewers' drawing), "
                  "which in a real demo runs on each viewer's own machine.", "",
                  "| viewers | switches | median s | p95 s | max s | errors | CPU s per switch: server | browser | "
                  "server memory MB (growth) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in sw["rows"]:
            lines.append(f"| {r['viewers']} | {r['switches']} | {r['median_s']:.2f} | {r['p95_s']:.2f} | "
                         f"{r['max_s']:.2f} | {r['errors']} | {r['server_cpu_per_switch_s']:.3f} | "
                         f"{r['browser_cpu_per_switch_s']:.2f} | {r['memory_mb_before']:.0f} ({r['memory_growth_mb']:+.0f}) |")
        big = max(sw["rows"], key=lambda r: r["viewers"])
        v, server, browser = big["viewers"], big["server_cpu_per_switch_s"], big["browser_cpu_per_switch_s"]
        lines += ["", f"Reading: with {v} viewers a round costs {v} x ({server:.2f} + {browser:.2f}) = "
                  f"{v * (server + browser):.1f} CPU s, at least {v * (server + browser) / 2:.1f} s on 2 cores, of "
                  f"which the server's part is {v * server:.1f} s: here the browsers, not the server, set the "
                  "pace. In a demo where each viewer's browser runs on their own machine, the server's share is "
                  "what the viewers wait for."]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default=None, help="switch: the run to serve (default: the demo run)")
    p.add_argument("--viewers", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--keep", action="store_true", help="start: keep the temporary clone")
    p.add_argument("--site-users", type=int, default=200, help="site: how many users the static explorer holds")
    p.add_argument("--user", default="1", help="start: the user the demo opens on (its first)")
    p.add_argument("--out", default=None, help="OUT.md and OUT.json (default bench/results/app-speed)")


def stage_site(args: argparse.Namespace) -> dict:
    return _site(args, CHROMIUM, FLAGS, _browser_cpu)


def measured(part: str):
    """The stage that measures one part of the results file (``stage_<part>``) and keeps the other's."""
    def run(args: argparse.Namespace) -> dict:
        out = Path(args.out or RESULTS_DIR / "app-speed")
        res = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").is_file() else {}
        res[part] = globals()[f"stage_{part}"](args)
        publish(out, res, render)
        return res
    return run


STAGES = {"start": measured("start"), "setup": measured("setup"), "switch": measured("switch"), "site": measured("site")}
