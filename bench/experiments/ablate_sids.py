"""What each SID row of ``python -m bench ablate`` carries before any training: bits, collisions.

    python -m bench ablate-sids evaluate          # prepare the SID rows (and the baseline), table them
    python -m bench ablate-sids table             # the committed .md from its .json

Seconds per row once the embeddings are cached; no training. The rows and their prepared folders
(RUNS/data/<setting>) are the lever screen's own.
"""

from __future__ import annotations

import argparse
import json

from bench.common import RESULTS_DIR, md_table
from bench.experiments import ablate
from bench.results_io import publish

RESULTS = ("ablation-sids",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    ablate.add_arguments(p)


def evaluate_stage(args: argparse.Namespace) -> dict[str, dict]:
    info = {}
    for name in args.rows:
        row = ablate.ROWS[name]
        if name != "baseline" and not row.tokenizer:
            continue  # rows that change no SIDs are not SID rows
        report = json.loads((ablate.prepared_for(row, args) / "tokenizer_report.json").read_text())
        label = "OPQ 4 x 256 on whitened PCA-256 (the baseline's SIDs)" if name == "baseline" else row.label
        info[name] = {"label": label, "seconds": report["seconds"], **report["information"]["before"]}
    publish(args.out or RESULTS_DIR / "ablation-sids", info, render)
    return info


def render(info: dict) -> str:
    headers = ["row", "setting", "bits of the first k digits (before repair)", "H(digit \\| others)",
               "items sharing a SID", "items beyond the first", "ceiling log2 items"]
    return "\n".join(md_table(headers, [
        [name, r["label"], " / ".join(f"{b:.1f}" for b in r["prefix_bits"]),
         " / ".join(f"{b:.2f}" for b in r["conditional_bits"]), f"{r['collision_rate_sharing']:.1%}",
         f"{r['collision_rate_beyond_first']:.1%}", f"{r['max_bits']:.2f}"] for name, r in info.items()]))


STAGES = {"evaluate": evaluate_stage}
