"""The default demo run (MovieLens-100K, what `make app` trains): candidate settings against popularity.

    .venv/bin/python bench/demo.py                     # every row, table in bench/results/demo.{md,json}
    .venv/bin/python bench/demo.py --rows tiny demo    # some rows

Each row trains the `tiny` preset with some changes on the prepared MovieLens-100K folder and
reports training time and item-level NDCG@10 / Recall@10 on the full test split (943 users,
beam 32), beside recommending the 10 most frequent training items to everyone. The row the demo
uses is `demo` (``diffgrm.demo.DEMO_CHANGES``); the table says why.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.results_io import write_results  # noqa: E402
from diffgrm.demo import DEMO_CHANGES, DEMO_DATA, ensure_demo_data  # noqa: E402
from diffgrm.config import preset  # noqa: E402
from diffgrm.prepare import load_prepared  # noqa: E402
from diffgrm.train import evaluate_split, load_run, popularity_baseline, train  # noqa: E402

ROWS = {
    "tiny": ({}, {}, "the `tiny` preset as it is (3 x 120 batches)"),
    "tiny-item-id": ({"item_id_emb": True}, {}, "+ item-id embedding"),
    "tiny-long": ({}, {"epochs": 8}, "up to 8 x 120 batches (early stopping, patience 2)"),
    "hist50-drop0.3": ({"max_history": 50, "dropout": 0.3}, {"epochs": 6, "eval_users": 0},
                       "history 50, dropout 0.3, 6 epochs, validate on all users"),
    "long-12": ({}, {"epochs": 12, "patience": 4}, "up to 12 x 120 batches (patience 4)"),
    "demo-e6": ({"item_id_emb": True}, {"epochs": 6, "patience": 6}, "item-id embedding, 6 x 120 batches"),
    "demo-e8": ({"item_id_emb": True}, {"epochs": 8, "patience": 3, "eval_users": 0},
                "item-id embedding, up to 8 x 120 batches, validated on all users"),
    "demo-e12": ({"item_id_emb": True}, {"epochs": 12, "patience": 4},
                 "item-id embedding, up to 12 x 120 batches (the demo until it took too long)"),
    "demo": (DEMO_CHANGES["model"], DEMO_CHANGES["train"], "the demo: " + DEMO_CHANGES["label"]),
}


def run_seconds(run: Path) -> float:
    """Training plus validation time of a run, from its history (so a reused run keeps its time)."""
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines() if line.strip()]
    return sum(r.get("train_seconds", 0) + r.get("valid_seconds", 0) for r in rows)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    p.add_argument("--kinds", nargs="+", choices=["diffgrm", "ar"], default=["diffgrm", "ar"])
    p.add_argument("--runs", default="runs/demo-bench")
    p.add_argument("--out", default="bench/results/demo")
    p.add_argument("--beam", type=int, default=32)
    p.add_argument("--quick", action="store_true", help="a few steps per row, 50 users (smoke test)")
    args = p.parse_args(argv)
    data = ensure_demo_data(DEMO_DATA, progress=not args.quick)
    prepared = load_prepared(data)
    test = prepared.splits["test"]
    if args.quick:
        from diffgrm.train import subsample

        test = subsample(test, 50, seed=0)
    pop = popularity_baseline(prepared, test)
    out = Path(args.out)
    results = {"popularity": {"label": "the 10 most frequent training items, for everyone", "item": pop,
                              "distinct_top10": 10}}
    if out.with_suffix(".json").is_file() and not args.quick:  # rows measured by an earlier call stay
        results.update({k: v for k, v in json.loads(out.with_suffix(".json").read_text()).items() if k != "popularity"})
    for name in args.rows:
        model_changes, train_changes, label = ROWS[name]
        for kind in args.kinds:
            key = name if kind == "diffgrm" else f"{name}-ar"
            run = Path(args.runs) / key
            cat = prepared.catalogue
            model_cfg, cfg = preset("tiny", kind=kind, n_digits=cat.n_digits, codebook_size=cat.codebook_size)
            model_cfg, cfg = replace(model_cfg, **model_changes), replace(cfg, **{"max_minutes": 0, **train_changes})
            if name == "demo" and kind == "ar":  # the demo's AR companion trains for less
                cfg = replace(cfg, **DEMO_CHANGES["ar_train"])
            if args.quick:
                cfg = replace(cfg, epochs=1, max_steps=3, eval_users=20)
            if not (run / "model.safetensors").is_file():
                train(prepared, model_cfg, cfg, run, progress=not args.quick)
            seconds = run_seconds(run)
            metrics = evaluate_split(load_run(run, device="cpu")[0], prepared, "test", users=50 if args.quick else 0,
                                     beam=args.beam, progress=not args.quick)
            results[key] = {"label": label + (" (AR)" if kind == "ar" else ""), "item": metrics["item"],
                            "distinct_top10": metrics["distinct_top10"],
                            "train_seconds": round(seconds, 1), "eval_seconds": metrics["seconds"],
                            "epochs": len((run / "history.jsonl").read_text().splitlines())}
            print(f"{key}: N@10 {metrics['item']['ndcg@10']:.4f} ({seconds:.0f} s)", file=sys.stderr)
    for key, r in results.items():  # times from the runs' histories, also for rows measured earlier
        history = Path(args.runs) / key / "history.jsonl"
        base_name = key[:-3] if key.endswith("-ar") else key
        if base_name in ROWS:  # labels from the current ROWS
            r["label"] = ROWS[base_name][2] + (" (AR)" if key.endswith("-ar") else "")
        if key != "popularity" and history.is_file():
            r.update(train_seconds=round(run_seconds(history.parent), 1), epochs=len(history.read_text().splitlines()))
    order = ["popularity"] + [k for name in ROWS for k in (name, f"{name}-ar") if k in results]
    results = {k: results[k] for k in order}
    lines = [f"MovieLens-100K test split ({len(test)} users), item level, beam {args.beam}; training time on this machine",
             "", "| row | setting | N@10 | R@10 | vs popularity | distinct items in the Top-10s | epochs run | training s |",
             "|---|---|---|---|---|---|---|---|"]
    base = pop["ndcg@10"]
    for key, r in results.items():
        n10 = r["item"]["ndcg@10"]
        lines.append(f"| {key} | {r['label']} | {n10:.4f} | {r['item']['recall@10']:.4f} | "
                     f"{'' if key == 'popularity' else f'{n10 / base:.2f}x'} | {r.get('distinct_top10', '')} | "
                     f"{r.get('epochs', '')} | "
                     f"{r.get('train_seconds', '')} |")
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        write_results(out, text, results)
    return results


if __name__ == "__main__":
    main()
