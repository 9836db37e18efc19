"""Quality at the same training budget, each run with a schedule sized to it.

    python -m bench same-budget train         # train what is missing (resumable)
    python -m bench same-budget evaluate      # evaluate what is trained; bench/results/same-budget.{md,json}
    python -m bench same-budget table         # the committed .md from its .json

The curve on the "Where diffusion pays" page places every epoch of a 6-epoch run at the minutes it
cost, so an early point is a run whose cosine schedule has not decayed yet. Here every run is
finished: the epochs of each row are chosen so that its training costs about the group's budget
at the row's measured minutes per epoch (``python -m bench long-sids train-speed``, one thread),
and the learning-rate schedule spans exactly those epochs. The AR row of each group gets no more
minutes than any DiffGRM row, so a lead it keeps is not bought with time. Runs are the long-SIDs
rows in RUNS/e<epochs>/<row>; a run this needs may already exist from the 6-epoch screen.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.common import BEAUTY, RESULTS_DIR, eval_file, finished
from bench.experiments import long_sids
from bench.results_io import publish

RESULTS = ("same-budget",)
# group -> (row, epochs): epochs x the row's minutes per epoch lands near the group's budget
GROUPS: dict[str, list[tuple[str, int]]] = {
    "n = 4, about 10 minutes": [("a4", 5), ("d4", 3), ("d4-k2", 5), ("d4-k1", 6)],
    "n = 8, about 13 minutes": [("a8", 6), ("d8-k1", 6)],
}




def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", default="runs/long", help="the long-SIDs runs folder")
    p.add_argument("--dataset", default=str(BEAUTY))
    p.add_argument("--users", type=int, default=5000, help="validation users (as the long-SIDs table)")
    p.add_argument("--beam", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="the thread count the minutes per epoch were timed at")
    p.add_argument("--out", default=None, help="OUT.md and OUT.json (default bench/results/same-budget)")
    p.add_argument("--quick", action="store_true", help="a smoke run (tiny preset, few users)")


def rows_args(args: argparse.Namespace, rows: list[str], epochs: int) -> argparse.Namespace:
    """The long-SIDs options for ``rows`` trained for ``epochs``."""
    return argparse.Namespace(rows=rows, dataset=args.dataset, runs=args.runs, epochs=epochs, users=args.users,
                              beam=args.beam, quick=args.quick, threads=args.threads)


def train_stage(args: argparse.Namespace) -> int:
    for pairs in GROUPS.values():
        for row, epochs in pairs:
            long_sids.train_stage(rows_args(args, [row], epochs))
    return 0


def minutes_per_epoch(runs: Path, row: str, threads: int) -> float | None:
    """The row's training minutes per epoch, as ``train-speed`` timed it (any budget folder holds it)."""
    for path in sorted(runs.glob(f"e*/train-speed-{row}-t{threads}.json")):
        return json.loads(path.read_text())["minutes_per_epoch"]
    return None


def evaluate_stage(args: argparse.Namespace) -> dict:
    records = []
    for group, pairs in GROUPS.items():
        for name, epochs in pairs:
            row, sub = long_sids.ROWS[name], rows_args(args, [name], epochs)
            run = long_sids.run_dir(sub, name)
            per_epoch = minutes_per_epoch(Path(args.runs), name, args.threads)
            rec = {"group": group, "row": name, "label": row.label, "n": row.n, "model": row.kind,
                   "views": row.views_text(), "epochs": epochs, "finished": finished(run), "started": run.is_dir(),
                   "minutes_per_epoch": per_epoch, "minutes": None if per_epoch is None else round(per_epoch * epochs, 1)}
            if finished(run):
                long_sids.evaluate_run(sub, name, run)
                for seen in (False, True):
                    m = json.loads(eval_file(run, "valid", beam=args.beam, users=args.users, passes=row.n,
                                             exclude_seen=seen).read_text())
                    rec["unseen" if seen else "all"] = {"item": m["item"], "users": m["users"], "beam": m["beam"]}
            records.append(rec)
    payload = {"dataset": "amazon-beauty", "split": "valid", "level": "item", "beam": args.beam, "users": args.users,
               "preset": "cpu-long", "seed": 0, "threads": args.threads, "rows": records}
    publish(args.out or RESULTS_DIR / "same-budget", payload, render)
    return payload


def render(payload: dict) -> str:
    records, users, beam, threads = payload["rows"], payload["users"], payload["beam"], payload["threads"]
    lines = [f"amazon-beauty, validation split ({users:,} users), item level, beam {beam}, S = n passes; "
             "`cpu-long` preset, seed 0; each run's cosine schedule spans its own epochs, chosen so that every row of "
             f"a group trains for about the same minutes ({threads} thread, `train-speed` rates)", "",
             "| budget | row | model | OCN views | epochs | training minutes | N@10 | R@10 | N@10, history excluded |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        item = (r.get("all") or {}).get("item") or {}
        unseen = (r.get("unseen") or {}).get("item") or {}
        missing = "" if r["finished"] else "(training)" if r["started"] else "(not run)"
        cell = lambda m, k: f"{m[k]:.4f}" if k in m else missing  # noqa: E731
        lines.append(f"| {r['group']} | {r['row']} | {'DiffGRM' if r['model'] == 'diffgrm' else 'AR (cached)'} | "
                     f"{r['views']} | {r['epochs']} | {'' if r['minutes'] is None else r['minutes']} | "
                     f"{cell(item, 'ndcg@10')} | {cell(item, 'recall@10')} | {cell(unseen, 'ndcg@10')} |")
    return "\n".join(lines)



STAGES = {"train": train_stage, "evaluate": evaluate_stage}
