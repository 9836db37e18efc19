"""The ``diffgrm`` command line: one subcommand per job, one clear error line on bad input."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from diffgrm import __version__, distributed
from diffgrm.cli_app import _cmd_app, _cmd_demo, add_share_commands
from diffgrm.cli_debug import add_debug_commands
from diffgrm.cli_options import DATA_HELP, _int, _passes_option, add_config_options, config_overrides
from diffgrm.config import (DATASET_TOKENIZER_PRESET, ORDERS, PRESETS, TOKENIZER_PRESETS, ModelConfig, TokenizerConfig,
                             TrainConfig)
from diffgrm.demo import DEMO_RUN
from diffgrm.errors import DiffGRMError
from diffgrm.safeio import atomic_write, check_output, write_json


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
    from diffgrm.config import tokenizer_preset
    from diffgrm.data import load_dataset
    from diffgrm.prepare import format_report, prepare

    preset = args.preset or DATASET_TOKENIZER_PRESET.get(args.dataset, "default")
    config = tokenizer_preset(preset, **config_overrides(args, TokenizerConfig))
    inputs = tuple(p for p in (args.dataset, args.raw_dir) if p and Path(p).is_dir())
    check_output(args.out, "prepared", force=args.force, inputs=inputs)  # before the slow part
    dataset = load_dataset(args.dataset, raw_dir=args.raw_dir)
    report = prepare(dataset, args.out, config, encoder=args.encoder, progress=not args.quiet, force=args.force)
    print(json.dumps(report) if args.json else format_report(report))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from diffgrm.config import preset
    from diffgrm.model import count_params
    from diffgrm.portable import load_data
    from diffgrm.train import check_configs, train, training_samples

    check_output(args.out, "run", force=args.force, inputs=(args.data,))  # before loading anything
    prepared = load_data(args.data)
    cat = prepared.catalogue
    model_cfg, cfg = preset(args.preset, n_digits=cat.n_digits, codebook_size=cat.codebook_size)
    model_cfg = replace(model_cfg, **config_overrides(args, ModelConfig))
    cfg = replace(cfg, **config_overrides(args, TrainConfig))
    check_configs(model_cfg, cfg)
    kind = model_cfg.kind
    main = distributed.is_main()  # under torchrun only rank 0 prints (and writes)
    if not args.quiet and main:
        n_samples = len(training_samples(prepared, cfg.min_history))
        ranks = f", {distributed.world_size()} processes" if distributed.active() else ""
        print(f"training {kind} ({args.preset} preset) on {args.data}: {n_samples:,} samples{ranks}", file=sys.stderr)
    result = train(prepared, model_cfg, cfg, args.out, device=args.device, progress=not args.quiet, force=args.force)
    v = result.best_valid or {}
    if main:
        print(f"{kind}: {count_params(result.model)} parameters, best epoch {result.best_epoch}, "
              f"valid ndcg@10 {v.get('ndcg@10', float('nan')):.4f}, recall@10 {v.get('recall@10', float('nan')):.4f}")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from diffgrm.pse import collision_rate
    from diffgrm.train import evaluate_split, load_run
    from diffgrm.trace import check_beam

    check_beam(args.beam, 10)
    model, prepared, meta = load_run(args.run, data=args.data, device=args.device, sasrec=True)
    collided = collision_rate(prepared.catalogue.codes)
    if args.protocol == "paper" and model.config.kind == "sasrec":
        raise DiffGRMError(f"--protocol paper compares generated SIDs, but {args.run} is a SASRec run: it ranks item "
                           "ids, so only the item level is defined")
    if args.protocol == "paper" and collided == 0:
        raise DiffGRMError(
            f"--protocol paper measures on a catalogue with SID collisions, but {args.run}'s catalogue is one-to-one "
            f"(SID level = item level); prepare the data with --no-repair and train with --select sid")
    metrics = evaluate_split(model, prepared, args.split, users=args.users, beam=args.beam, order=args.order,
                             passes=_passes(args.passes, model), progress=not args.quiet,
                             exclude_seen=args.exclude_seen)
    metrics.update(protocol=args.protocol, collision_rate=collided, select=(meta.get("train") or {}).get("select", "item"))
    if distributed.is_main():  # under torchrun the ranks share the users and rank 0 reports
        print(format_metrics(metrics))
        write_json(Path(args.run) / "metrics.json", metrics)
    return 0


def _passes(passes: int | None, model) -> int | None:
    """``--passes`` checked against the run: 1..n for a denoising decoder; the AR decoder has one pass per digit."""
    from diffgrm.model import DiffGRM

    n = model.config.n_digits
    if passes is None:
        return None
    if model.config.kind == "sasrec":
        raise DiffGRMError("--passes applies to DiffGRM runs; this SASRec run scores every item in one pass")
    if not isinstance(model, DiffGRM) and passes != n:
        raise DiffGRMError(f"--passes applies to DiffGRM runs; this AR run fills its {n} digits one per pass")
    if passes > n:
        raise DiffGRMError(f"--passes must be at most the SID's {n} digits, got {passes}")
    return passes


def format_metrics(m: dict) -> str:
    """A small table: item level and SID level, Recall/NDCG at 5 and 10; the protocol's level first.

    Under ``protocol == "paper"`` the SID level leads (the paper's numbers) and a last line says
    how much it overstates the item level, where a shared SID counts as a hit for all its items.
    """
    keys = ["recall@5", "recall@10", "ndcg@5", "ndcg@10"]
    paper = m.get("protocol") == "paper"
    search = f"beam {m['beam']}" if m.get("beam") else "every item scored"
    lines = [f"{m['model']} on {m['split']} ({m['users']:,} users, {search}, {m['seconds']:.0f} s)"
             + (", the paper's protocol" if paper else "") + (", history items excluded" if m.get("exclude_seen") else ""),
             f"{'level':<7}" + "".join(f"{k:>11}" for k in keys)]
    for level in (("sid", "item") if paper else ("item", "sid")):
        if level in m:
            lines.append(f"{level:<7}" + "".join(f"{m[level][k]:>11.4f}" for k in keys))
    if "sid" not in m:
        lines.append(f"sid     not defined: {m['model']} ranks item ids, it generates no SIDs")
    if paper:
        item, sid = m["item"]["ndcg@10"], m["sid"]["ndcg@10"]
        over = f"{sid / item - 1:+.0%}" if item > 0 else "n/a"
        lines.append(f"{m.get('collision_rate', 0):.1%} of items share a SID: the SID-level NDCG@10 is {over} "
                     f"against the item level (a shared SID names its lowest-index item, as the reference's lookup)")
        if m.get("select") != "sid":
            lines.append("note: this run's checkpoint was chosen at item level; the paper chooses at SID level "
                         "(train with --select sid)")
    return "\n".join(lines)


def _cmd_recommend(args: argparse.Namespace) -> int:
    from diffgrm.decode import Recommender
    from diffgrm.sid_index import sid_text
    from diffgrm.train import load_run
    from diffgrm.trace import check_beam

    check_beam(args.beam, args.k)
    if args.trace:
        trace = Path(args.trace)
        if trace.suffix not in (".csv", ".jsonl") or not trace.parent.is_dir() or trace.is_dir():
            raise DiffGRMError(f"--trace {trace}: give a .csv or .jsonl file in an existing folder")
    model, prepared, _ = load_run(args.run, data=args.data, device=args.device)
    if args.user not in prepared.users:
        raise DiffGRMError(f"user {args.user!r} is not in {prepared.source} (e.g. {prepared.users[0]!r})")
    u = prepared.users.index(args.user)
    test = prepared.splits["test"]
    row = int(np.flatnonzero(test.users == u)[0])
    history, target = test.histories[row], int(test.targets[row])
    res = Recommender(model).search([history], beam=args.beam, topk=args.k, order=args.order, trace=bool(args.trace),
                                    passes=_passes(args.passes, model))
    titles = prepared.items["title"].tolist()
    print(f"user {args.user}: {len(history)} items in history; most recent last")
    for i in history[-args.history :]:
        print(f"  - {titles[i]}")
    print(f"\nTop-{args.k} ({model.config.kind}, beam {args.beam}):")
    for rank, (item, score) in enumerate(zip(res.items[0].tolist(), res.scores[0].tolist()), 1):
        if item < 0:
            break
        sid = sid_text(prepared.catalogue.codes[item])
        mark = "  <- held-out next item" if item == target else ""
        print(f"{rank:>3}. {titles[item][:70]:<70} SID {sid:<15} log p {score:8.3f}{mark}")
    hit = target in res.items[0].tolist()
    print(f"\nheld-out next item: {titles[target]} ({'hit' if hit else 'not in the Top-' + str(args.k)})")
    if args.trace:
        frame = res.traces[0].to_frame()
        path = Path(args.trace)
        atomic_write(path, (lambda p: frame.to_csv(p, index=False)) if path.suffix == ".csv"
                     else (lambda p: frame.to_json(p, orient="records", lines=True)))
        print(f"wrote the denoising trace to {path}", file=sys.stderr)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from diffgrm.report import write_report
    from diffgrm.trace import check_beam

    check_beam(args.beam, args.k)
    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm") or not out.parent.is_dir() or out.is_dir():
        raise DiffGRMError(f"--out {out}: give an .html file in an existing folder")
    if args.slides:
        from diffgrm.slides import write_deck

        write_deck(args.run, args.user, out, data=args.data, beam=args.beam, k=args.k, order=args.order)
    else:
        write_report(args.run, args.user, out, data=args.data, beam=args.beam, k=args.k, order=args.order,
                     items=args.item or ())
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, opens offline in any browser)", file=sys.stderr)
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from diffgrm.synth import synthesize

    counts = synthesize(args.out, args.items, args.users, dim=args.dim, topics=args.topics,
                        length=(args.min_length, args.max_length), seed=args.seed, force=args.force,
                        progress=not args.quiet)
    print(f"wrote {args.out}: {counts['items']:,} items in {counts['topics']:,} topics ({counts['dim']}-d vectors), "
          f"{counts['users']:,} users, {counts['interactions']:,} interactions; next: "
          f"diffgrm prepare --dataset {args.out} --out DIR", file=sys.stderr)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one ``error:`` line, like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")



def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="diffgrm", description="Diffusion-based generative recommendation.")
    parser.add_argument("--version", action="version", version=f"diffgrm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fetch", help="download a named dataset into the cache (the only step that goes online)")
    p.add_argument("dataset", help="movielens-100k, amazon-beauty, amazon-sports or amazon-toys")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("synth", help="write a synthetic dataset (clustered item vectors, texts, sequences) for scale tests")
    p.add_argument("--items", type=_int(10), required=True, metavar="N")
    p.add_argument("--users", type=_int(1), required=True, metavar="U")
    p.add_argument("--out", required=True, metavar="DIR", help="data folder to write (items.jsonl, user_sequence.txt, "
                   "item_embeddings.npy)")
    p.add_argument("--dim", type=_int(2, 4096), default=64, help="vector dimensions (default 64)")
    p.add_argument("--topics", type=_int(2), default=None, help="item clusters (default about sqrt(items))")
    p.add_argument("--min-length", type=_int(2), default=5, help="shortest user sequence (default 5)")
    p.add_argument("--max-length", type=_int(2), default=20, help="longest user sequence (default 20)")
    p.add_argument("--seed", type=_int(0), default=0)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--force", action="store_true", help="replace a dataset folder already at --out")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("prepare", help="tokenize a dataset into semantic IDs and write a prepared folder")
    p.add_argument("--dataset", required=True, metavar="NAME_OR_FOLDER",
                   help="movielens-100k, amazon-beauty/-sports/-toys, or a folder with user_sequence.txt + items.jsonl")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--encoder", default=None, help="sentence-transformers model id or folder (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--preset", choices=tuple(TOKENIZER_PRESETS), default=None,
                   help="tokenizer preset (default: by dataset: " + ", ".join(
                       f"{preset} for {name}" for name, preset in DATASET_TOKENIZER_PRESET.items()) + ", else default)")
    p.add_argument("--raw-dir", default=None, help="folder holding the Amazon raw files (no download)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true", help="replace a prepared folder already at --out")
    add_config_options(p, TokenizerConfig, TOKENIZER_PRESETS)
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("train", help="train DiffGRM (OCN), the AR baseline or SASRec on a prepared folder")
    p.add_argument("data", metavar="DIR", help="a folder written by `diffgrm prepare`, or a run folder (its own "
                   "catalogue and users: a companion on the very same SIDs, on any machine)")
    p.add_argument("--preset", choices=tuple(PRESETS), default="cpu",
                   help="sizes and optimiser: tiny (MovieLens demo), cpu (Beauty within a half-hour cap on 2 cores), "
                        "cpu-long (cpu + the winning levers, 18 epochs), paper")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder to write")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--force", action="store_true",
                   help="replace the run already at --out, as a whole, once the new one is complete (it trains in .RUN.forced "
                        "beside it; the same command continues it after an interrupt); an unfinished run with the same "
                        "settings continues without --force")
    add_config_options(p, ModelConfig, {name: model for name, (model, _) in PRESETS.items()})
    add_config_options(p, TrainConfig, {name: train for name, (_, train) in PRESETS.items()})
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="Recall/NDCG@5/10 of a run, item level and SID level (SASRec: item level, every "
                       "item scored); writes RUN/metrics.json")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--split", choices=["test", "valid"], default="test")
    p.add_argument("--exclude-seen", action="store_true",
                   help="keep each user's history items out of the Top-K, inside the search (the paper does not)")
    p.add_argument("--protocol", choices=["ours", "paper"], default="ours",
                   help="ours: item level leads (a one-to-one catalogue); paper: SID level leads, on a catalogue "
                        "prepared with --no-repair, item level beside it")
    p.add_argument("--beam", type=_int(1), default=32, help="search beam of DiffGRM and AR runs (default 32)")
    p.add_argument("--order", choices=ORDERS, default="confidence", help="CPD fill order")
    _passes_option(p, "CPD network passes, 1..n (default n: one digit per pass; fewer fill several digits per pass)")
    p.add_argument("--users", type=_int(0), default=0, help="evaluate a seeded sample of this many users (0 = all)")
    p.add_argument("--data", default=None, help=DATA_HELP)
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("recommend", help="a user's recent history and Top-K next items")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--user", required=True, metavar="ID")
    p.add_argument("--k", type=_int(1), default=10)
    p.add_argument("--beam", type=_int(1), default=32)
    p.add_argument("--order", choices=ORDERS, default="confidence")
    p.add_argument("--history", type=_int(0), default=10, help="how many recent history items to show")
    _passes_option(p, "CPD network passes, 1..n (default n)")
    p.add_argument("--trace", default=None, metavar="FILE", help="write the denoising trace (.csv or .jsonl)")
    p.add_argument("--data", default=None, help=DATA_HELP)
    p.add_argument("--device", default=None)
    p.set_defaults(func=_cmd_recommend)

    p = sub.add_parser("report", help="one user's Top-K, denoising and 'why not?' as a self-contained HTML file")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--user", required=True, metavar="ID")
    p.add_argument("--out", required=True, metavar="FILE.html")
    p.add_argument("--k", type=_int(1), default=10)
    p.add_argument("--beam", type=_int(1), default=32)
    p.add_argument("--order", choices=ORDERS, default="confidence")
    p.add_argument("--item", type=_int(0), action="append", metavar="INDEX",
                   help="also explain why this item (catalogue index) was or was not recommended; repeatable")
    p.add_argument("--slides", action="store_true", help="a slide deck instead: one screen per slide (the history, "
                   "every denoising step, the Top-K, why not), for a class or a meeting room")
    p.add_argument("--data", default=None, help=DATA_HELP)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("app", help="open the Streamlit explorer (installs the shipped demo runs if missing)")
    p.add_argument("run", metavar="RUN", nargs="?", default=DEMO_RUN,
                   help=f"run folder, or a file written by `diffgrm pack` (default {DEMO_RUN})")
    p.add_argument("--data", default=None, help=DATA_HELP)
    p.add_argument("--address", default="127.0.0.1", help="address to serve on (default: this machine only)")
    p.add_argument("--port", type=_int(1, 65535), default=8501)
    p.add_argument("--ar", default=None, metavar="AR_RUN",
                   help="an AR run on the same data to compare with (default: RUN-ar when it exists)")
    p.add_argument("--dry-run", action="store_true", help="prepare everything, print the streamlit command, exit")
    p.set_defaults(func=_cmd_app)

    p = sub.add_parser("demo", help="the demo runs shipped in the package: where they are and what they score")
    p.add_argument("--retrain", action="store_true",
                   help="rebuild them: train both with the recipe (diffgrm.demo.DEMO_RECIPE), evaluate, write into the package")
    p.add_argument("--work", default="runs/demo-retrain", metavar="RUN",
                   help="where --retrain trains (RUN and RUN-ar; a finished run there with the recipe's settings is kept)")
    p.add_argument("--data", default="runs/movielens-100k", help="the prepared MovieLens-100K folder (made if missing)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)
    add_share_commands(sub)
    add_debug_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a bad option already reported in one line
        return int(exc.code or 0)
    try:
        if args.command in ("train", "evaluate"):  # one of several processes under torchrun: join the group
            device = distributed.setup(getattr(args, "device", None))
            args.device = str(device) if device is not None else None
        return args.func(args)
    except DiffGRMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: files already written are complete; run the same command again to continue",
              file=sys.stderr)
        return 130
    except OSError as exc:  # the disk, not diffgrm: full, read-only, no permission
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    finally:
        distributed.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
