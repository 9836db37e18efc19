"""The commands around the explorer: ``diffgrm app`` (check the demo runs and the codebook map,
then serve Streamlit in this process beside a preload of the run), ``diffgrm demo`` (where the
shipped demo runs are and what they score; ``--retrain`` rebuilds them), ``diffgrm pack`` /
``diffgrm unpack`` (a run as one file for a colleague) and ``diffgrm export`` (the explorer of N
users as a static folder, :mod:`diffgrm.export`). ``diffgrm.cli`` parses the command line
and calls these.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffgrm.cli_options import DATA_HELP, _int
from diffgrm.demo import DEMO_RUN
from diffgrm.errors import DiffGRMError
from diffgrm.safeio import read_json


def _cmd_app(args: argparse.Namespace) -> int:
    import os
    import threading
    from importlib import resources

    # The app ships as diffgrm.app (app/ in the repository, mapped in pyproject.toml): found the
    # same way in a wheel install and an editable one.
    try:
        app = Path(str(resources.files("diffgrm.app") / "streamlit_app.py"))
    except ModuleNotFoundError:  # a clone put on sys.path by hand, or an editable install from before the mapping
        app = Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"
    if not app.is_file():
        raise DiffGRMError(f"the explorer app is missing ({app}); reinstall diffgrm (`pip install \"diffgrm[app]\"`, "
                           "or `pip install -e .` in a clone)")
    run = Path(args.run)
    if run.is_file():  # a packed run: unpacked once beside the demo's runs, then served like any run
        run = _unpacked(run, args.data)
    if args.run == DEMO_RUN:
        from diffgrm.demo import ensure_demo_run

        ensure_demo_run(run, data=args.data)  # trains and evaluates only what is missing
    elif not (run / "model.safetensors").is_file():
        raise DiffGRMError(f"{run} holds no checkpoint; train one with `diffgrm train` or omit RUN for the demo")
    _check_users(run, args.data)
    from diffgrm.coords_cache import cached_coords

    method = os.environ.get("DIFFGRM_PROJECTION", "umap")
    if cached_coords(run, method) is None:  # missing, damaged or of an older layout: load the run only then
        from diffgrm.explorer import Explorer

        print(f"projecting the codebooks with {method} (once per run) ...", file=sys.stderr)
        Explorer(run, data=args.data).codebook_coords(method)
    # Served for viewers, not edited: toolbarMode minimal hides the "Deploy" button; no file watcher
    # (it polled and hashed the app's modules all the time); no full garbage collection after every
    # rerun (with torch, pandas and plotly loaded it cost CPU time on every user switch; memory is
    # still freed by reference counting and Python's own collector). The docs hold the app's timings.
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", args.address,
           "--server.port", str(args.port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "minimal", "--server.fileWatcherType", "none", "--runner.postScriptGC", "false",
           "--", "--run", str(run)] + (["--ar", str(args.ar)] if args.ar else []) + (
               ["--data", str(args.data)] if args.data else [])
    for folder in (run, Path(args.ar) if args.ar else Path(f"{run}-ar")):  # the scores the sidebar shows, here too
        path = folder / "metrics.json"
        if path.is_file():
            m = read_json(path)
            pop = (m.get("popularity") or {}).get("ndcg@10")
            ratio = f" = {m['item']['ndcg@10'] / pop:.1f}x popularity" if pop else ""
            print(f"{folder}: {m.get('model', '?')} {m.get('split', 'test')} NDCG@10 {m['item']['ndcg@10']:.4f}{ratio}"
                  f"{', history kept out' if m.get('exclude_seen') else ''}", file=sys.stderr)
    print(f"diffgrm explorer on http://{args.address}:{args.port} (Ctrl+C to stop)", file=sys.stderr)
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    # One thread per decoding: a viewer's search is a batch of one, and several viewers' reruns run in
    # parallel threads of the server; torch's default pool made them spin against each other.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # The server runs in this process, so the run loads (torch imported, model and catalogue read)
    # while Streamlit starts, not when the first viewer arrives.
    threading.Thread(target=_preload, args=(run, args.data), name="diffgrm-preload", daemon=True).start()
    from streamlit.web import cli as streamlit_cli

    streamlit_cli.main(args=cmd[3:], prog_name="streamlit")  # `streamlit run APP ...`; exits when stopped
    return 0  # pragma: no cover


def _preload(run: Path, data: str | None) -> None:
    """Load the app's run into ``explorer.open_explorer``'s cache; a failure is the app's to report."""
    try:
        from diffgrm import viz  # noqa: F401  (the figures' imports, on the first page's path too)
        from diffgrm.explorer import open_explorer

        open_explorer(run, data)
    except Exception:  # noqa: BLE001  (the page shows the same error with its explanation)
        pass


def _cmd_demo(args: argparse.Namespace) -> int:
    from diffgrm import demo

    if args.retrain:
        demo.ship(args.work, data=args.data, progress=not args.quiet,
                  command=f"diffgrm demo --retrain --work {args.work} --data {args.data}")
    print(demo.describe())
    return 0


UNPACK_ROOT = "runs"
"""Where ``diffgrm app FILE`` unpacks a packed run: ``runs/<file name without .zip>``."""


def _unpacked(file: Path, data: str | None) -> Path:
    """The folder ``diffgrm app FILE`` serves: the pack unpacked into ``runs/NAME`` (reused when it
    already holds this very pack)."""
    from diffgrm.pack import unpack, unpacked_here

    dest = Path(UNPACK_ROOT) / file.name.removesuffix(".zip")
    if dest.exists() and unpacked_here(file, dest):
        return dest
    if dest.exists():
        raise DiffGRMError(f"{dest} already holds something else; unpack the file yourself "
                           f"(`diffgrm unpack {file} --out DIR`) and run `diffgrm app DIR`")
    folders = unpack(file, dest, data=data)
    print(f"unpacked {file} into {', '.join(map(str, folders.values()))}", file=sys.stderr)
    return dest


def _check_users(run: Path, data: str | None) -> None:
    """Before serving: the data a portable run's users come from is on this machine (one clear error if not)."""
    from diffgrm.portable import CATALOGUE, check_data, resolve_data

    if (run / CATALOGUE).is_dir() and (run / "config.json").is_file():
        check_data(resolve_data(run, read_json(run / "config.json"), data))


def _cmd_pack(args: argparse.Namespace) -> int:
    from diffgrm.pack import pack

    run = Path(args.run)
    ar = None if args.no_ar else Path(args.ar) if args.ar else Path(f"{run}-ar")
    if ar is not None and not ar.is_dir():
        if args.ar:
            raise DiffGRMError(f"--ar {ar} is not a run folder")
        ar = None  # no companion next to the run: the pack holds the run alone
    out = pack(run, args.out, ar=ar)
    what = f"{run} and its AR companion {ar}" if ar else str(run)
    print(f"packed {what} into {out} ({out.stat().st_size / 1e6:.1f} MB); open it with `diffgrm app {out}`",
          file=sys.stderr)
    return 0


def _cmd_unpack(args: argparse.Namespace) -> int:
    from diffgrm.pack import unpack

    folders = unpack(args.file, args.out, data=args.data, force=args.force)
    print(f"unpacked {args.file} into {', '.join(map(str, folders.values()))}; open it with "
          f"`diffgrm app {folders['run']}`", file=sys.stderr)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from diffgrm.export import export

    if args.run == DEMO_RUN:
        from diffgrm.demo import ensure_demo_run

        ensure_demo_run(args.run, data=args.data, progress=not args.quiet)  # installs only what is missing
    summary = export(args.run, args.out, users=args.users, ar=args.ar, no_ar=args.no_ar, beams=args.beams,
                     ks=args.k, exclude_seen=args.exclude_seen, passes=args.passes or (None,), data=args.data,
                     force=args.force, seed=args.seed, progress=not args.quiet)
    settings = f", {summary.settings} settings" if summary.settings > 1 else ""
    print(f"exported {summary.users} users{settings} into {summary.out} ({summary.bytes / 1e6:.1f} MB in "
          f"{summary.files} files, {summary.seconds:.0f} s); open {summary.out / 'index.html'} in a browser, "
          "or put the folder on any static web host", file=sys.stderr)
    return 0


def add_share_commands(sub) -> None:
    """The ``pack``, ``unpack`` and ``export`` subcommands."""
    p = sub.add_parser("export", help="write the explorer for N users as a static folder that opens without "
                       "Python or a server (from file:// or any static host)")
    p.add_argument("run", metavar="RUN", nargs="?", default=DEMO_RUN, help=f"run folder (default {DEMO_RUN})")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (open DIR/index.html)")
    p.add_argument("--users", type=_int(1), default=200, metavar="N",
                   help="how many test users: the first ones and a seeded sample of the rest (default 200)")
    p.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0: the same users each time)")
    companion = p.add_mutually_exclusive_group()
    companion.add_argument("--ar", nargs="?", const="", default=None, metavar="AR_RUN",
                           help="the AR run to compare the fill orders with (default: RUN-ar when it exists; "
                                "--ar alone requires RUN-ar)")
    companion.add_argument("--no-ar", action="store_true", help="export without an AR companion")
    p.add_argument("--beams", type=_int(1), nargs="+", default=[32], metavar="B",
                   help="beam sizes to precompute (default 32; several: the page switches between them)")
    p.add_argument("--k", type=_int(1), nargs="+", default=[10], metavar="K", help="Top-K sizes (default 10)")
    p.add_argument("--passes", type=_int(1), nargs="+", default=None, metavar="S",
                   help="network passes of a DiffGRM decoding (default: one per digit)")
    seen = p.add_mutually_exclusive_group()
    seen.add_argument("--exclude-seen", dest="exclude_seen", action="store_true", default=True,
                      help="keep each user's history out of the recommendations (the default, as in the app)")
    seen.add_argument("--include-seen", dest="exclude_seen", action="store_false",
                      help="let history items into the recommendations")
    p.add_argument("--data", default=None, help=DATA_HELP)
    p.add_argument("--force", action="store_true", help="replace an export already at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("pack", help="write a run (and its AR companion) as one checksummed file for a colleague")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write (a zip), e.g. my-run.zip")
    p.add_argument("--ar", default=None, metavar="AR_RUN", help="the AR companion to pack with it (default: RUN-ar "
                   "when it exists)")
    p.add_argument("--no-ar", action="store_true", help="pack the run alone")
    p.set_defaults(func=_cmd_pack)

    p = sub.add_parser("unpack", help="unpack a file written by `diffgrm pack` into a run folder (checked)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", required=True, metavar="DIR", help="the run folder to write (its AR companion: DIR-ar)")
    p.add_argument("--data", default=None, help="where the run's users come from, when not where it was trained "
                   "(a prepared folder, a dataset folder or a dataset name)")
    p.add_argument("--force", action="store_true", help="replace a run already at --out")
    p.set_defaults(func=_cmd_unpack)
