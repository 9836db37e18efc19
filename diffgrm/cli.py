"""The ``diffgrm`` command line: one subcommand per job, one clear error line on bad input."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from diffgrm import __version__
from diffgrm.errors import DiffGRMError


def _cmd_fetch(args: argparse.Namespace) -> int:
    from diffgrm import sources

    if args.dataset == "movielens-100k":
        path = sources.fetch_movielens(quiet=args.quiet)
        print(f"movielens-100k: {path}")
        return 0
    if args.dataset in sources.AMAZON_CATEGORIES:
        folder = sources.cache_dir() / "amazon"
        for fname in sources.amazon_files(sources.AMAZON_CATEGORIES[args.dataset]):
            sources.download_file(f"{sources.AMAZON_BASE_URL}/{fname}", folder / fname, progress=not args.quiet)
        print(f"{args.dataset}: {folder}")
        return 0
    raise DiffGRMError(f"nothing to fetch for {args.dataset!r}; choose movielens-100k or {', '.join(sources.AMAZON_CATEGORIES)}")


def _cmd_prepare(args: argparse.Namespace) -> int:
    from diffgrm.config import DATASET_TOKENIZER_PRESET, tokenizer_preset
    from diffgrm.data import load_dataset
    from diffgrm.prepare import format_report, prepare

    preset = args.preset or DATASET_TOKENIZER_PRESET.get(args.dataset, "default")
    config = tokenizer_preset(
        preset,
        method=args.tokenizer,
        n_digits=args.digits,
        codebook_size=args.codebook,
        seed=args.seed,
        repair=False if args.no_repair else None,
    )
    dataset = load_dataset(args.dataset, raw_dir=args.raw_dir)
    report = prepare(dataset, args.out, config, encoder=args.encoder, progress=not args.quiet)
    print(json.dumps(report) if args.json else format_report(report))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffgrm", description="Diffusion-based generative recommendation.")
    parser.add_argument("--version", action="version", version=f"diffgrm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fetch", help="download a named dataset into the cache (the only step that goes online)")
    p.add_argument("dataset", help="movielens-100k, amazon-beauty, amazon-sports or amazon-toys")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("prepare", help="tokenize a dataset into semantic IDs and write a prepared folder")
    p.add_argument("--dataset", required=True, metavar="NAME_OR_FOLDER",
                   help="movielens-100k, amazon-beauty/-sports/-toys, or a folder with user_sequence.txt + items.jsonl")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--encoder", default=None, help="sentence-transformers model id or folder (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--digits", type=int, default=None, metavar="N", help="SID digits (default 4)")
    p.add_argument("--codebook", type=int, default=None, metavar="K", help="codes per digit, a power of two (default 256; 64 for movielens-100k)")
    p.add_argument("--tokenizer", choices=["opq", "pq", "rq", "random"], default=None, help="PSE (opq, default) or an ablation baseline")
    p.add_argument("--preset", choices=["default", "small"], default=None, help="tokenizer preset (default: by dataset)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--raw-dir", default=None, help="folder holding the Amazon raw files (no download)")
    p.add_argument("--no-repair", action="store_true", help="keep SID collisions (for teaching; metrics become SID-level)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_prepare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except DiffGRMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
