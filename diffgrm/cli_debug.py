"""The commands that debug a whole run: ``diffgrm diagnose`` (calibration, misses, beam width,
order and the Top-K over many users, ``diffgrm.diagnose``) and ``diffgrm import``, which makes a
diffgrm run of a network trained with Cornac or with the reference code (``diffgrm.interop``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffgrm.cli_options import DATA_HELP, _int


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from diffgrm.checkpoint import check_companion
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
        check_companion(args.run, meta, ar, ar_meta)
    result = diagnose(model, prepared, settings, ar_model=ar_model, progress=not args.quiet)
    path = write_diagnostics(args.run, result)
    print(summary(result))
    print(f"\nwrote {path}" + (f" (orders compared with the AR run {ar})" if ar_model is not None else ""),
          file=sys.stderr)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from diffgrm.interop import import_cornac, import_reference

    if args.source == "cornac":
        out = import_cornac(args.export, args.data, args.out, force=args.force)
    else:
        out = import_reference(args.checkpoint, args.tokens, args.data, args.out, n_heads=args.heads,
                               item_ids=args.item_ids, force=args.force)
    print(f"wrote {out}; open it with `diffgrm app {out}`, score it with `diffgrm evaluate {out}`", file=sys.stderr)
    return 0


def add_import_command(sub) -> None:
    """``diffgrm import cornac EXPORT`` and ``diffgrm import reference PYTORCH_MODEL_BIN``."""
    imp = sub.add_parser("import", help="make a diffgrm run of a DiffGRM network trained with Cornac or the "
                         "reference code (never unpickles)")
    src = imp.add_subparsers(dest="source", required=True, metavar="{cornac,reference}")
    c = src.add_parser("cornac", help="a folder written by diffgrm.interop.export_cornac in your Cornac session")
    c.add_argument("export", metavar="EXPORT", help="the export folder (weights.safetensors + export.json)")
    r = src.add_parser("reference", help="a checkpoint of the DiffGRM authors' reference code")
    r.add_argument("checkpoint", metavar="PYTORCH_MODEL_BIN", help="its pytorch_model.bin (read with weights_only)")
    r.add_argument("--tokens", required=True, metavar="NPY", help="its item_id2tokens array (read without pickles)")
    r.add_argument("--heads", type=_int(1), required=True, metavar="H", help="attention heads (the reference's --n_head)")
    r.add_argument("--item-ids", default=None, metavar="FILE",
                   help="the item id of each row (one per line or a JSON list); default: the data's order")
    for p in (c, r):
        p.add_argument("--data", required=True, help="the users and items: a prepared folder, a dataset folder or a "
                       "dataset name (the SID table is matched to its items by item id)")
        p.add_argument("--out", required=True, metavar="RUN", help="the run folder to write")
        p.add_argument("--force", action="store_true", help="replace a run already at --out")
        p.set_defaults(func=_cmd_import)


def add_debug_commands(sub) -> None:
    """The ``diagnose`` and ``import`` subcommands."""
    add_import_command(sub)
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
