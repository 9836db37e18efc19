"""The final table: the best DiffGRM setting, AR on the same SIDs and SASRec, on the whole test split,
three seeds, beams 32 and 256, item level, with and without the user's history kept out of the Top-K.

    python -m bench final train --data runs/long/beauty-n4          # train what is missing (resumable)
    python -m bench final evaluate --sasrec-from bench/results/quality.json   # evaluate what exists, table it
    python -m bench final table                                     # the committed .md from its .json
    python -m bench final train --quick --data DIR --runs DIR       # a smoke run

Runs live in RUNS/<variant>-s<seed> (``--preset`` at ``--epochs``; SASRec with ``python -m bench
quality``'s recipe), each evaluation beside its run, so a second call only fills what is missing.
``OUT.json`` has one row per (model, seed, beam, exclude_seen) with ``users``, like quality.json;
the README's copy is generated from ``bench/results/final.json`` by ``python -m bench headline``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.common import RESULTS_DIR, ROOT, evaluate_cached, finished, mean_std, quick, say
from bench.results_io import publish

RESULTS = ("final",)
LABELS = {"diffgrm": "DiffGRM (OCN + CPD)", "ar": "AR decoder, same SIDs", "sasrec": "SASRec (full softmax, item ids)"}
METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
HISTORY = {"both": (False, True), "kept": (False,), "excluded": (True,)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="runs/long/beauty-n4", help="the prepared folder of the chosen SIDs")
    p.add_argument("--runs", default="runs/final")
    p.add_argument("--out", default=None, help="OUT.md and OUT.json (default bench/results/final)")
    p.add_argument("--variants", nargs="+", choices=list(LABELS), default=list(LABELS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--beams", nargs="+", type=int, default=[32, 256])
    p.add_argument("--preset", default="cpu-long", choices=["tiny", "cpu", "cpu-long", "paper"])
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the preset's)")
    p.add_argument("--ocn-views", type=int, default=0, help="DiffGRM: OCN views per sample and step (0 = all n)")
    p.add_argument("--sasrec-epochs", type=int, default=17)
    p.add_argument("--sasrec-from", default=None,
                   help="evaluate: SASRec seeds that have no run here are read from this results file of "
                        "`python -m bench quality` (the same recipe on the same test split, history kept)")
    p.add_argument("--users", type=int, default=0, help="test users (0 = all)")
    p.add_argument("--history", choices=list(HISTORY), default="both",
                   help="evaluate with the user's history items kept in the Top-K, kept out, or both")
    p.add_argument("--quick", action="store_true", help="tiny training for a smoke test")
    p.add_argument("--device", default=None)


def train_stage(args: argparse.Namespace) -> int:
    from bench.experiments.quality import train_variant
    from diffgrm.config import preset
    from diffgrm.prepare import load_prepared
    from diffgrm.train import train

    prepared = load_prepared(args.data)
    cat = prepared.catalogue
    for variant in args.variants:
        for seed in args.seeds:
            run = Path(args.runs) / f"{variant}-s{seed}"
            if finished(run):
                continue
            say(f"training {variant} seed {seed} into {run}")
            if variant == "sasrec":  # quality's SASRec recipe (--sasrec-epochs, constant learning rate)
                train_variant("sasrec", seed, run, prepared, args)
                continue
            model_cfg, cfg = preset("tiny" if args.quick else args.preset, kind=variant, n_digits=cat.n_digits,
                                    codebook_size=cat.codebook_size, seed=seed, epochs=args.epochs, max_minutes=0,
                                    ocn_views=args.ocn_views if variant == "diffgrm" else None)
            train(prepared, model_cfg, quick(cfg) if args.quick else cfg, run, device=args.device,
                  progress=not args.quick)
    return 0


def evaluate_stage(args: argparse.Namespace) -> dict:
    """Evaluate every run that exists at each beam and history setting, and write the table."""
    from diffgrm.prepare import load_prepared

    if min(args.beams) < 10:
        raise SystemExit("error: beams must be at least 10 (the metrics read the Top-10)")
    prepared = load_prepared(args.data)
    rows = []
    for variant in args.variants:
        for seed in args.seeds:
            run = Path(args.runs) / f"{variant}-s{seed}"
            if not finished(run):
                continue
            best_epoch = json.loads((run / "config.json").read_text()).get("best_epoch")
            for beam in args.beams if variant != "sasrec" else args.beams[:1]:
                for seen in HISTORY[args.history]:
                    m = evaluate_cached(run, prepared, "test", beam=beam, users=args.users, exclude_seen=seen,
                                        device=args.device, progress=not args.quick)
                    rows.append({"model": variant, "seed": seed, "beam": beam if variant != "sasrec" else None,
                                 "users": m["users"], "exclude_seen": seen, "item": m["item"], "run": str(run),
                                 "best_epoch": best_epoch})
    if args.sasrec_from and "sasrec" in args.variants:
        rows += borrowed_sasrec(Path(args.sasrec_from), {r["seed"] for r in rows if r["model"] == "sasrec"}, args)
    if not rows:
        raise SystemExit("error: no trained runs to table (`train` first)")
    cat = prepared.catalogue
    payload = {"dataset": prepared.report.get("dataset"), "split": "test", "level": "item", "preset": args.preset,
               "epochs": args.epochs, "ocn_views": args.ocn_views, "n_digits": cat.n_digits,
               "codebook_size": cat.codebook_size, "rows": rows}
    publish(args.out or RESULTS_DIR / "final", payload, render)
    return payload


def borrowed_sasrec(path: Path, have: set[int], args: argparse.Namespace) -> list[dict]:
    """SASRec rows of an earlier ``python -m bench quality`` results file, for the seeds not trained here."""
    quality = json.loads(path.read_text())
    if quality.get("split") != "test" or (args.users and quality.get("users") != args.users):
        raise SystemExit(f"{path} is not a test-split run of `python -m bench quality` on {args.users or 'all'} users")
    if quality.get("dataset") != "amazon-beauty":
        raise SystemExit(f"{path} is not on Amazon Beauty")
    source = str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else str(path)
    return [{"model": "sasrec", "seed": r["seed"], "beam": None, "users": r["users"], "exclude_seen": False,
             "item": r["item"], "run": r["run"], "best_epoch": None, "source": source}
            for r in quality["results"].get("sasrec", []) if r["seed"] in args.seeds and r["seed"] not in have]


def render(payload: dict) -> str:
    """The markdown table: mean ± std over seeds per (model, beam), with and without seen items."""
    rows = payload["rows"]
    users = sorted({r["users"] for r in rows})
    epochs = "" if payload["epochs"] is None else f", {payload['epochs']} epochs"
    head = (f"{payload['dataset']}, test split ({', '.join(f'{u:,}' for u in users)} users), item level; "
            f"`{payload['preset']}` preset{epochs}; "
            f"SIDs {payload['n_digits']} x {payload['codebook_size']}"
            + (f"; DiffGRM supervises {payload['ocn_views']} OCN views per step" if payload.get("ocn_views") else ""))
    lines = [head, "", "| model | beam | history excluded | seeds | R@5 | R@10 | N@5 | N@10 |", "|---|---|---|---|---|---|---|---|"]
    # models in LABELS' order, then beam, then history kept before kept out
    keys = sorted({(r["model"], r["beam"], r["exclude_seen"]) for r in rows},
                  key=lambda k: (list(LABELS).index(k[0]), k[1] or 0, k[2]))
    for model, beam, seen in keys:
        group = [r for r in rows if (r["model"], r["beam"], r["exclude_seen"]) == (model, beam, seen)]
        cells = [mean_std([r["item"][m] for r in group]) for m in METRICS]
        lines.append(f"| {LABELS[model]} | {beam if beam is not None else 'full softmax'} | {'yes' if seen else 'no'} | "
                     f"{len(group)} | " + " | ".join(cells) + " |")
    kept = {}  # the checkpoint each run kept (its best validated epoch), by model and seed
    for r in rows:
        if r.get("best_epoch") is not None:
            kept.setdefault(r["model"], {})[r["seed"]] = r["best_epoch"]
    lines += ["", "Checkpoint kept (best validated epoch) per seed: " + "; ".join(
        f"{LABELS[m]}: " + ", ".join(f"seed {s} epoch {e}" for s, e in sorted(by.items())) for m, by in kept.items()) + "."]
    borrowed = sorted({(r["source"], r["seed"]) for r in rows if r.get("source")})
    if borrowed:
        lines += ["", f"SASRec seeds {', '.join(str(s) for _, s in borrowed)}: read from `{borrowed[0][0]}` "
                  "(`python -m bench quality`: the same recipe and test split, history kept), not trained again here."]
    return "\n".join(lines)



STAGES = {"train": train_stage, "evaluate": evaluate_stage}
