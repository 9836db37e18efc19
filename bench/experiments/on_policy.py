"""Is OCN on policy? How often CPD fills the digits in the order OCN's views assumed.

    python -m bench on-policy evaluate                        # the shipped demo run, all 943 test users
    python -m bench on-policy evaluate --run RUN --data DATA  # another DiffGRM run
    python -m bench on-policy table                           # the .md and the figure from the committed .json

For every test user: OCN's order (one confidence pass over the fully masked SID, most confident
first: the trajectory its nested views train) against the order in which CPD's best final beam
filled the digits (confidence order, one digit per pass, beam 32, history kept out, as the explorer
decodes). Writes bench/results/on-policy.{md,json} (``agreement``) and the figure's JSON
(on-policy-figure.json), which the docs draw.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench.common import RESULTS_DIR
from bench.results_io import publish

RESULTS = ("on-policy",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default=None, help="a DiffGRM run (default: the shipped demo run, installed in a temporary folder)")
    p.add_argument("--data", default=None, help="where its users come from (default: what the run recorded)")
    p.add_argument("--beam", type=int, default=32)
    p.add_argument("--out", default=None, help="OUT.md and OUT.json (default bench/results/on-policy)")


def evaluate_stage(args: argparse.Namespace) -> dict:
    from diffgrm import demo
    from diffgrm.decode import Recommender
    from diffgrm.onpolicy import measure
    from diffgrm.train import load_run

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else demo.ensure_demo_run(Path(tmp) / "ml-tiny", progress=False)
        model, prepared, _ = load_run(run, data=args.data, device="cpu")
        result, _, _ = measure(Recommender(model), prepared.splits["test"].histories, beam=args.beam)
    label = "The shipped MovieLens-100K demo run" if args.run is None else f"{prepared.report['dataset']} ({run.name})"
    payload = {"run": label, "beam": args.beam, "agreement": result}
    publish(args.out or RESULTS_DIR / "on-policy", payload, render, figures)
    return result


def render(payload: dict) -> str:
    agreement, label = payload["agreement"], payload["run"]
    n = agreement["n_digits"]
    lines = [f"{label}: {agreement['users']:,} test users, CPD in confidence order at beam 32, history kept out. "
             "OCN's order: the digits by the confidence of one pass over the fully masked SID, most confident "
             "first (the trajectory its nested views train). Chance: a uniformly random order.", "",
             "| agreement | share of users | chance |", "|---|---|---|",
             f"| same first digit | {agreement['first']:.1%} | {agreement['first_chance']:.1%} |",
             f"| same whole order | {agreement['exact']:.1%} | {agreement['exact_chance']:.1%} |"]
    lines += [f"| same digit at step {s + 1} | {v:.1%} | {1 / n:.1%} |" for s, v in enumerate(agreement["by_step"])]
    lines += [f"| mean Kendall tau of the two orders | {agreement['kendall_tau']:.2f} | 0.00 |"]
    return "\n".join(lines)




def figures(payload: dict) -> dict[str, str]:
    """``on-policy-figure.json``: the order-agreement heatmap (``diffgrm.viz.order_agreement_figure``)."""
    from diffgrm import viz

    figure = viz.order_agreement_figure(payload["agreement"])
    # plotly's own template, keys sorted: importing streamlit changes the default template and the
    # order in which a template's parts come out
    figure.update_layout(template="plotly")
    return {"on-policy-figure.json": json.dumps(figure.to_plotly_json(), default=str, sort_keys=True)}


STAGES = {"evaluate": evaluate_stage}
