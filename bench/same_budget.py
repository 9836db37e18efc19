"""Quality at the same training budget, each run with a schedule sized to it (issue 21, part 2).

    .venv/bin/python bench/same_budget.py train      # train and evaluate what is missing (resumable)
    .venv/bin/python bench/same_budget.py table      # bench/results/same-budget.{md,json}

The curve on the "Where diffusion pays" page places every epoch of a 6-epoch run at the minutes it
cost, so an early point is a run whose cosine schedule has not decayed yet. Here every run is
finished: the epochs of each row are chosen so that its training costs about the group's budget
at the row's measured minutes per epoch (``bench/long_sids.py train-speed``, one thread), and the
learning-rate schedule spans exactly those epochs. The AR row of each group gets no more minutes
than any DiffGRM row, so a lead it keeps is not bought with time. Runs are ``bench/long_sids.py``'s
rows in RUNS/e<epochs>/<row>; a run this script needs may already exist from the 6-epoch screen.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.long_sids import ROWS, eval_file, finished  # noqa: E402
from bench.long_sids import main as long_sids  # noqa: E402
from bench.results_io import write_results  # noqa: E402

# group -> (row, epochs): epochs x the row's minutes per epoch lands near the group's budget
GROUPS: dict[str, list[tuple[str, int]]] = {
    "n = 4, about 10 minutes": [("a4", 5), ("d4", 3), ("d4-k2", 5), ("d4-k1", 6)],
    "n = 8, about 13 minutes": [("a8", 6), ("d8-k1", 6)],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("stage", choices=["train", "table"])
    p.add_argument("--runs", default="runs/long", help="bench/long_sids.py's --runs")
    p.add_argument("--dataset", default=None, help="bench/long_sids.py's --dataset (default: Amazon Beauty)")
    p.add_argument("--users", type=int, default=5000, help="validation users (as the long-SIDs table)")
    p.add_argument("--beam", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="the thread count the minutes per epoch were timed at")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "same-budget"))
    p.add_argument("--quick", action="store_true", help="a smoke run (tiny preset, few users)")
    return p.parse_args(argv)


def minutes_per_epoch(runs: Path, row: str, threads: int) -> float | None:
    """The row's training minutes per epoch, as ``train-speed`` timed it (any budget folder holds it)."""
    for path in sorted(runs.glob(f"e*/train-speed-{row}-t{threads}.json")):
        return json.loads(path.read_text())["minutes_per_epoch"]
    return None


def stage_train(args: argparse.Namespace) -> None:
    common = ["--runs", args.runs, "--users", str(args.users), "--beam", str(args.beam)] + (["--quick"] if args.quick else [])
    common += ["--dataset", args.dataset] if args.dataset else []
    for pairs in GROUPS.values():
        for row, epochs in pairs:
            for stage in ("train", "evaluate"):
                long_sids([stage, row, "--epochs", str(epochs), *common])


def collect(args: argparse.Namespace) -> list[dict]:
    runs, records = Path(args.runs), []
    for group, pairs in GROUPS.items():
        for name, epochs in pairs:
            row, run = ROWS[name], runs / f"e{epochs}" / name
            per_epoch = minutes_per_epoch(runs, name, args.threads)
            rec = {"group": group, "row": name, "label": row.label, "n": row.n, "model": row.kind,
                   "views": row.views_text(), "epochs": epochs, "finished": finished(run), "started": run.is_dir(),
                   "minutes_per_epoch": per_epoch, "minutes": None if per_epoch is None else round(per_epoch * epochs, 1)}
            for seen in (False, True):
                path = eval_file(run, "valid", args.beam, args.users, row.n, seen)
                if path.is_file():
                    m = json.loads(path.read_text())
                    rec["unseen" if seen else "all"] = {"item": m["item"], "users": m["users"], "beam": m["beam"]}
            records.append(rec)
    return records


def render(records: list[dict], args: argparse.Namespace) -> str:
    lines = [f"amazon-beauty, validation split ({args.users:,} users), item level, beam {args.beam}, S = n passes; "
             "`cpu-long` preset, seed 0; each run's cosine schedule spans its own epochs, chosen so that every row of "
             f"a group trains for about the same minutes ({args.threads} thread, `train-speed` rates)", "",
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stage == "train":
        stage_train(args)
        return 0
    records = collect(args)
    text = render(records, args)
    write_results(args.out, text, {"dataset": "amazon-beauty", "split": "valid", "level": "item", "beam": args.beam,
                                   "users": args.users, "preset": "cpu-long", "seed": 0, "threads": args.threads,
                                   "rows": records})
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
