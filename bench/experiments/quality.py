"""Quality on one split, side by side: DiffGRM and its ablations against AR and SASRec.

    python -m bench quality train --seeds 0 1 2          # Beauty from ../shared, `cpu` preset (hours)
    python -m bench quality evaluate --seeds 0 1 2       # evaluate the runs that exist, write the table
    python -m bench quality table                        # the committed .md files again from their .json
    python -m bench quality train --quick --data DIR     # a smoke run on any prepared folder

Variants (all on the same prepared data, the same SIDs and the same leave-one-out split):

  diffgrm   DiffGRM trained with OCN, decoded with CPD (confidence order)
  random    DiffGRM trained with random masking (no OCN), decoded with CPD
  fixed     the `diffgrm` checkpoint decoded in a fixed left-to-right digit order (no CPD)
  ar        an autoregressive decoder on the same SIDs, same encoder and sizes
  sasrec    SASRec with a full-softmax loss over item ids (no SIDs)

Each trained model lives in RUNS/<variant>-s<seed> and each evaluation beside it (the one
evaluation cache of ``bench.common``), so a second call reuses both. ``evaluate`` tables the
(variant, seed) runs that exist: mean +- std over seeds, item level and SID level, in OUT.md and
OUT.json. Training budgets are epochs, not minutes (the preset's epochs, its time cap switched
off; ``--sasrec-epochs`` for SASRec), so a loaded machine makes a run slower, never different.
On a 2-core CPU one DiffGRM run takes about half an hour.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from bench.common import BEAUTY, RESULTS_DIR, ensure_prepared, evaluate_cached, finished, md_table, mean_std, quick, say
from bench.results_io import publish

RESULTS = ("quality", "quality-mpnet", "quality-b32-u6000", "quality-b128-u6000")
VARIANTS = ("diffgrm", "random", "fixed", "ar", "sasrec")
LABELS = {
    "diffgrm": "DiffGRM (OCN + CPD)",
    "random": "DiffGRM, random masking (no OCN)",
    "fixed": "DiffGRM, fixed digit order (no CPD)",
    "ar": "AR decoder, same SIDs",
    "sasrec": "SASRec (full softmax)",
}
METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="runs/beauty", help="prepared folder (prepared from --dataset if missing)")
    p.add_argument("--dataset", default=str(BEAUTY), help="raw dataset to prepare when --data does not exist")
    p.add_argument("--runs", default="runs/quality", help="where the trained runs live")
    p.add_argument("--out", default=None, help="OUT.md and OUT.json (default bench/results/quality)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "paper"])
    p.add_argument("--beam", type=int, default=32)
    p.add_argument("--split", default="test", choices=["test", "valid"])
    p.add_argument("--users", type=int, default=0, help="a seeded sample of this many users (0 = all)")
    p.add_argument("--sasrec-epochs", type=int, default=17, help="SASRec training epochs (constant learning rate)")
    p.add_argument("--quick", action="store_true", help="tiny training (a few steps) for smoke tests")
    p.add_argument("--device", default=None)


def run_dir(args: argparse.Namespace, variant: str, seed: int) -> Path:
    """``fixed`` decodes ``diffgrm``'s checkpoint."""
    return Path(args.runs) / f"{'diffgrm' if variant == 'fixed' else variant}-s{seed}"


def train_variant(variant: str, seed: int, run: Path, prepared, args: argparse.Namespace) -> None:
    """Train the checkpoint a variant needs into ``run`` (``final`` trains its SASRec seeds with this recipe)."""
    from diffgrm.config import preset
    from diffgrm.sasrec import SASRecConfig, train_sasrec
    from diffgrm.train import train

    if variant == "sasrec":
        cfg = SASRecConfig(seed=seed, epochs=args.sasrec_epochs, max_minutes=0)
        if args.quick:
            cfg = replace(cfg, d_model=32, n_layers=1, epochs=2, eval_users=50)
        train_sasrec(prepared, cfg, run, device=args.device, progress=not args.quick)
        return
    cat = prepared.catalogue
    model_cfg, cfg = preset(args.preset, kind="ar" if variant == "ar" else "diffgrm", n_digits=cat.n_digits,
                            codebook_size=cat.codebook_size)
    cfg = replace(cfg, seed=seed, noising="random" if variant == "random" else cfg.noising, max_minutes=0)
    train(prepared, model_cfg, quick(cfg) if args.quick else cfg, run, device=args.device, progress=not args.quick)


def train_stage(args: argparse.Namespace) -> int:
    from diffgrm.prepare import load_prepared

    prepared = load_prepared(ensure_prepared(args.data, args.dataset))
    for variant in args.variants:
        for seed in args.seeds:
            run = run_dir(args, variant, seed)
            if not finished(run):
                say(f"training {variant} (seed {seed}) into {run} ...")
                train_variant("diffgrm" if variant == "fixed" else variant, seed, run, prepared, args)
    return 0


def evaluate_stage(args: argparse.Namespace) -> dict:
    """Evaluate every (variant, seed) run that exists, table them and write OUT.{md,json}."""
    from diffgrm.prepare import load_prepared

    prepared = load_prepared(ensure_prepared(args.data, args.dataset))
    results: dict[str, list[dict]] = {}
    t0 = time.perf_counter()
    for variant in args.variants:
        for seed in args.seeds:
            run = run_dir(args, variant, seed)
            if not finished(run):
                say(f"no run for {variant} (seed {seed}) in {run}: left out")
                continue
            metrics = evaluate_cached(run, prepared, args.split, beam=args.beam, users=args.users,
                                      order="fixed" if variant == "fixed" else "confidence", device=args.device,
                                      progress=not args.quick)
            results.setdefault(variant, []).append({**metrics, "seed": seed, "run": str(run)})
    if not results:
        raise SystemExit(f"error: no trained run of {', '.join(args.variants)} in {args.runs} (`train` first)")
    encoder = Path(str(prepared.report.get("encoder", "?"))).name  # a folder path names its model last
    payload = {"dataset": prepared.report["dataset"], "encoder": encoder, "split": args.split, "beam": args.beam,
               "preset": args.preset, "seeds": sorted({r["seed"] for runs in results.values() for r in runs}),
               "users": next(iter(results.values()))[0]["users"], "results": results,
               "seconds": round(time.perf_counter() - t0, 1)}
    publish(args.out or RESULTS_DIR / "quality", payload, render)
    return payload


def level_table(results: dict[str, list[dict]], level: str) -> list[str]:
    headers = [f"model ({level} level)", "seeds", *(m.replace("recall", "R").replace("ndcg", "N") for m in METRICS)]
    return md_table(headers, [[LABELS[variant], len(runs), *(mean_std([r[level][m] for r in runs]) for m in METRICS)]
                              for variant, runs in results.items()])


def render(payload: dict) -> str:
    p = payload
    head = (f"{p['dataset']}, {p['split']} split, {p['users']:,} users, beam {p['beam']}, `{p['preset']}` preset, "
            f"encoder {p['encoder']}, seeds {' '.join(map(str, p['seeds']))}")
    return "\n".join([head, "", *level_table(p["results"], "item"), "", *level_table(p["results"], "sid")])


STAGES = {"train": train_stage, "evaluate": evaluate_stage}
