"""The commands that debug a whole run: ``diffgrm diagnose`` (calibration, misses, beam width,
order and the Top-K over many users, ``diffgrm.diagnose``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffgrm.cli_options import DATA_HELP, _int
from diffgrm.errors import DiffGRMError


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from diffgrm.diagnose import BEAMS, DiagnoseSettings, diagnose, summary, write_diagnostics
    from diffgrm.train import load_run

    settings = DiagnoseSettings(split=args.split, users=args.users, beam=args.beam, topk=args.k,
                                curve_users=args.curve_users, exclude_seen=args.exclude_seen,
                                beams=tuple(args.beams or BEAMS))
    settings.check()  # before loading anything
    model, prepared, meta = load_run(args.run, data=args.data, device=args.device)
    ar_model = None
    ar = Path(args.ar) if args.ar else Path(f"{args.run}-ar")
    if model.config.kind != "ar" and not args.no_ar and (args.ar or (ar / "config.json").is_file()):
        ar_model, _, ar_meta = load_run(ar, data=args.data, device=args.device)
        if ar_model.config.kind != "ar":
            raise DiffGRMError(f"--ar {ar}: a {ar_model.config.kind} run, not an autoregressive one")
        if ar_meta.get("fingerprint") != meta.get("fingerprint"):
            raise DiffGRMError(f"--ar {ar} was trained on another catalogue: its SIDs are not comparable")
    result = diagnose(model, prepared, settings, ar_model=ar_model, progress=not args.quiet)
    path = write_diagnostics(args.run, result)
    print(summary(result))
    print(f"\nwrote {path}" + (f" (orders compared with the AR run {ar})" if ar_model is not None else ""),
          file=sys.stderr)
    return 0


def add_debug_commands(sub) -> None:
    """The ``diagnose`` subcommand."""
    p = sub.add_parser("diagnose", help="debug a whole run: calibration, where the beam loses items, beam width, "
                       "order, the Top-K (writes RUN/diagnostics.json, shown in the explorer's Run health tab)")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--split", choices=["valid", "test"], default="valid")
    p.add_argument("--users", type=_int(0), default=5000, help="a seeded sample of this many users (0 = all; "
                   "the same sample as `diffgrm evaluate --users`)")
    p.add_argument("--beam", type=_int(1), default=32)
    p.add_argument("--k", type=_int(1), default=10, help="the Top-K a hit is counted in")
    p.add_argument("--beams", type=_int(1), nargs="+", default=None, metavar="B",
                   help="the beam curve's beams (default 8 16 32 64 128 256)")
    p.add_argument("--curve-users", type=_int(1), default=1000,
                   help="the beam curve decodes the first this many of the users (wide beams cost the most)")
    p.add_argument("--exclude-seen", action="store_true", help="keep each user's history items out of the Top-K")
    p.add_argument("--ar", default=None, metavar="AR_RUN",
                   help="an AR run on the same catalogue whose ranks join the order comparison (default: RUN-ar "
                        "when it exists)")
    p.add_argument("--no-ar", action="store_true", help="compare confidence order with fixed order only")
    p.add_argument("--data", default=None, help=DATA_HELP)
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_diagnose)
