"""The final table (issue 21, part 4): the best DiffGRM setting, AR on the same SIDs and SASRec,
on the whole test split, three seeds, beams 32 and 256, item level, with and without the user's
history kept out of the Top-K.

    .venv/bin/python bench/final.py --data runs/long/beauty-n8 --ocn-views 4       # train what is missing, evaluate
    .venv/bin/python bench/final.py --trained-only                                 # the table of what exists
    .venv/bin/python bench/final.py --quick --data DIR --runs DIR --out FILE       # a smoke run

Runs live in RUNS/<variant>-s<seed> (trained with bench/quality.py's recipe at ``--preset`` and
``--epochs``), each evaluation beside its run, so a second call only fills what is missing.
``OUT.json`` has one row per (model, seed, beam, exclude_seen) with ``users``, like quality.json;
the README's copy is generated from ``bench/results/final.json`` by ``bench/headline.py --readme``,
never typed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.results_io import write_results  # noqa: E402

LABELS = {"diffgrm": "DiffGRM (OCN + CPD)", "ar": "AR decoder, same SIDs", "sasrec": "SASRec (full softmax, item ids)"}
METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="runs/long/beauty-n4", help="the prepared folder of the chosen SIDs")
    p.add_argument("--runs", default="runs/final")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "final"))
    p.add_argument("--variants", nargs="+", choices=list(LABELS), default=list(LABELS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--beams", nargs="+", type=int, default=[32, 256])
    p.add_argument("--preset", default="cpu-long", choices=["tiny", "cpu", "cpu-long", "paper"])
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the preset's)")
    p.add_argument("--ocn-views", type=int, default=0, help="DiffGRM: OCN views per sample and step (0 = all n)")
    p.add_argument("--sasrec-epochs", type=int, default=17)
    p.add_argument("--sasrec-from", default=None,
                   help="with --trained-only: SASRec seeds that have no run here are read from this results file of "
                        "bench/quality.py (the same recipe on the same test split, history kept)")
    p.add_argument("--users", type=int, default=0, help="test users (0 = all)")
    p.add_argument("--history", choices=["both", "kept", "excluded"], default="both",
                   help="evaluate with the user's history items kept in the Top-K, kept out, or both")
    p.add_argument("--trained-only", action="store_true", help="train and evaluate nothing; table what exists")
    p.add_argument("--quick", action="store_true", help="tiny training for a smoke test")
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    if min(args.beams) < 10:
        p.error("beams must be at least 10 (the metrics read the Top-10)")
    return args


def train_run(variant: str, seed: int, run: Path, prepared, args: argparse.Namespace) -> None:
    from bench.quality import train_variant
    from diffgrm.config import preset
    from diffgrm.train import train

    if variant == "sasrec":  # bench/quality.py's SASRec recipe (--sasrec-epochs, constant learning rate)
        train_variant("sasrec", seed, run, prepared, args)
        return
    cat = prepared.catalogue
    model_cfg, cfg = preset("tiny" if args.quick else args.preset, kind=variant, n_digits=cat.n_digits,
                            codebook_size=cat.codebook_size, seed=seed, epochs=args.epochs, max_minutes=0,
                            ocn_views=args.ocn_views if variant == "diffgrm" else None)
    if args.quick:
        cfg = replace(cfg, epochs=1, max_steps=3, eval_users=20, eval_beam=16)
    train(prepared, model_cfg, cfg, run, device=args.device, progress=not args.quick)


def evaluation_file(run: Path, beam: int, exclude_seen: bool, args: argparse.Namespace) -> Path:
    return run / f"final_test_b{beam}_u{args.users}{'_unseen' if exclude_seen else ''}.json"


def evaluate_run(variant: str, run: Path, prepared, beam: int, exclude_seen: bool, args: argparse.Namespace) -> dict:
    from diffgrm.decode import Recommender
    from diffgrm.sasrec import evaluate_sasrec, load_sasrec
    from diffgrm.train import load_run, subsample

    cached = evaluation_file(run, beam, exclude_seen, args)
    if cached.is_file():
        return json.loads(cached.read_text())
    samples = subsample(prepared.splits["test"], args.users, seed=0)
    if variant == "sasrec":
        device = args.device or "cpu"
        m = evaluate_sasrec(load_sasrec(run, device=device), samples, prepared.catalogue.codes, device=device,
                            exclude_seen=exclude_seen)
    else:
        model, _, _ = load_run(run, data=prepared.path, device=args.device)
        m = Recommender(model).evaluate(samples, beam=beam, progress=not args.quick, exclude_seen=exclude_seen)
    out = {"item": m["item"], "users": len(samples), "beam": beam if variant != "sasrec" else None,
           "exclude_seen": exclude_seen}
    cached.write_text(json.dumps(out, indent=1))
    return out


def collect(args: argparse.Namespace) -> dict:
    from diffgrm.prepare import load_prepared

    prepared = load_prepared(args.data)
    rows = []
    for variant in args.variants:
        for seed in args.seeds:
            run = Path(args.runs) / f"{variant}-s{seed}"
            done = (run / "config.json").is_file() and not (run / "resume.json").is_file()
            if not done:
                if args.trained_only:
                    continue
                print(f"training {variant} seed {seed} into {run}", file=sys.stderr)
                train_run(variant, seed, run, prepared, args)
            best_epoch = json.loads((run / "config.json").read_text()).get("best_epoch")
            for beam in args.beams if variant != "sasrec" else args.beams[:1]:
                for seen in {"both": (False, True), "kept": (False,), "excluded": (True,)}[args.history]:
                    if args.trained_only and not evaluation_file(run, beam, seen, args).is_file():
                        continue
                    m = evaluate_run(variant, run, prepared, beam, seen, args)
                    rows.append({"model": variant, "seed": seed, "beam": m["beam"], "users": m["users"],
                                 "exclude_seen": seen, "item": m["item"], "run": str(run),
                                 "best_epoch": best_epoch})
    if args.sasrec_from and "sasrec" in args.variants:
        rows += borrowed_sasrec(Path(args.sasrec_from), {r["seed"] for r in rows if r["model"] == "sasrec"}, args)
    cat = prepared.catalogue
    return {"dataset": prepared.report.get("dataset"), "split": "test", "level": "item", "preset": args.preset,
            "epochs": args.epochs, "ocn_views": args.ocn_views, "n_digits": cat.n_digits,
            "codebook_size": cat.codebook_size, "rows": rows}


def borrowed_sasrec(path: Path, have: set[int], args: argparse.Namespace) -> list[dict]:
    """SASRec rows of an earlier ``bench/quality.py`` results file, for the seeds not trained here."""
    if not args.trained_only:
        raise SystemExit("--sasrec-from only fills a table (--trained-only); without it the seeds are trained here")
    quality = json.loads(path.read_text())
    if quality.get("split") != "test" or (args.users and quality.get("users") != args.users):
        raise SystemExit(f"{path} is not a test-split run of bench/quality.py on {args.users or 'all'} users")
    if quality.get("dataset") != "amazon-beauty":
        raise SystemExit(f"{path} is not on Amazon Beauty")
    source = str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else str(path)
    return [{"model": "sasrec", "seed": r["seed"], "beam": None, "users": r["users"], "exclude_seen": False,
             "item": r["item"], "run": r["run"], "best_epoch": None, "source": source}
            for r in quality["results"].get("sasrec", []) if r["seed"] in args.seeds and r["seed"] not in have]


def mean_std(values: list[float]) -> str:
    """One table cell: the value of one seed, or mean ± std over several (empty for none)."""
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


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
                  "(bench/quality.py: the same recipe and test split, history kept), not trained again here."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    payload = collect(args)
    if not payload["rows"]:
        raise SystemExit("no trained runs to table (drop --trained-only to train)")
    table = render(payload)
    write_results(args.out, table, payload)
    print(table)
    return payload


if __name__ == "__main__":
    main()
