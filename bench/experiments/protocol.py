"""The paper's protocol beside ours: one run read at SID level and at item level, on the test split.

    python -m bench long-sids train d4-paper       # the run: collisions kept, checkpoint chosen at SID level
    python -m bench paper-protocol evaluate         # bench/results/paper-protocol.{md,json}
    python -m bench paper-protocol table            # the committed .md from its .json

The run is the long-SIDs screen's `d4-paper` row (RUNS/e<epochs>/d4-paper, the catalogue prepared
without collision repair). At SID level a generated SID counts for every item that shares it (the
paper's reading); at item level a SID names one item. The README's headline leads with this table.
"""

from __future__ import annotations

import argparse
import json

from bench.common import RESULTS_DIR, evaluate_cached, finished, md_table
from bench.experiments import long_sids
from bench.results_io import publish

RESULTS = ("paper-protocol",)
ROW = "d4-paper"
# the reference code's Beauty NDCG@10 read both ways (docs/method.md section 6)
PUBLISHED_BEAUTY = {"sid": 0.050, "item": 0.026, "source": "an independent audit"}
KEYS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")


def add_arguments(p: argparse.ArgumentParser) -> None:
    long_sids.add_arguments(p)


def evaluate_stage(args: argparse.Namespace) -> dict:
    from diffgrm.pse import collision_rate

    run = long_sids.run_dir(args, ROW)
    if not finished(run):
        raise SystemExit(f"error: {run} is not trained yet: python -m bench long-sids train {ROW} --epochs {args.epochs}")
    prepared = long_sids.load(args, long_sids.ROWS[ROW])
    meta = json.loads((run / "config.json").read_text())
    m = evaluate_cached(run, prepared, "test", beam=args.beam, users=args.users)
    m.update(protocol="paper", collision_rate=collision_rate(prepared.catalogue.codes),
             select=meta["train"].get("select", "item"), best_epoch=meta.get("best_epoch"), epochs=args.epochs,
             published=PUBLISHED_BEAUTY)
    publish(args.out or RESULTS_DIR / "paper-protocol", m, render)
    return m


def render(m: dict) -> str:
    pub = m["published"]
    over = m["sid"]["ndcg@10"] / m["item"]["ndcg@10"] - 1 if m["item"]["ndcg@10"] else float("nan")
    head = (f"amazon-beauty, test split ({m['users']:,} users), beam {m['beam']}; one DiffGRM run (`cpu-long`, "
            f"{m['epochs']} epochs, seed 0) trained on the catalogue without collision repair "
            f"({m['collision_rate']:.1%} of items share a SID), checkpoint chosen on the SID-level 0.8 N@10 + 0.2 R@10")
    table = md_table(["protocol", "level", "R@5", "R@10", "N@5", "N@10"], [
        ["the paper's", "SID: a generated SID counts for every item that shares it", *(f"{m['sid'][k]:.4f}" for k in KEYS)],
        ["ours", "item: a SID names one item (the reference's lookup: the lowest index)",
         *(f"{m['item'][k]:.4f}" for k in KEYS)]])
    return "\n".join([head, "", *table, "", f"The SID level reads {over:+.0%} against the item level for the same "
                      f"predictions (published for the reference code on Beauty by {pub['source']}: about "
                      f"{pub['sid']:.3f} against {pub['item']:.3f}, {pub['sid'] / pub['item'] - 1:+.0%})."])


STAGES = {"evaluate": evaluate_stage}
