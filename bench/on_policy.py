"""Is OCN on policy? How often CPD fills the digits in the order OCN's views assumed.

    .venv/bin/python bench/on_policy.py                       # the shipped demo run, all 943 test users
    .venv/bin/python bench/on_policy.py --run RUN --data DATA # another DiffGRM run

For every test user: OCN's order (one confidence pass over the fully masked SID, most confident
first: the trajectory its nested views train) against the order in which CPD's best final beam
filled the digits (confidence order, one digit per pass, beam 32, history kept out, as the explorer
decodes). Writes bench/results/on-policy.{md,json} (``agreement``) and the figure's JSON
(on-policy-figure.json), which the docs draw.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.results_io import write_results  # noqa: E402


def render(agreement: dict, label: str) -> str:
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


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=None, help="a DiffGRM run (default: the shipped demo run, installed in a temporary folder)")
    p.add_argument("--data", default=None, help="where its users come from (default: what the run recorded)")
    p.add_argument("--beam", type=int, default=32)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "on-policy"))
    args = p.parse_args(argv)
    from diffgrm import demo, viz
    from diffgrm.decode import Recommender
    from diffgrm.onpolicy import measure
    from diffgrm.train import load_run

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else demo.ensure_demo_run(Path(tmp) / "ml-tiny", progress=False)
        model, prepared, _ = load_run(run, data=args.data, device="cpu")
        result, _, _ = measure(Recommender(model), prepared.splits["test"].histories, beam=args.beam)
    label = "The shipped MovieLens-100K demo run" if args.run is None else f"{prepared.report['dataset']} ({run.name})"
    text = render(result, label)
    print(text)
    write_results(args.out, text, {"run": label, "beam": args.beam, "agreement": result})
    figure = viz.order_agreement_figure(result)
    Path(args.out).with_name("on-policy-figure.json").write_text(json.dumps(figure.to_plotly_json(), default=str))
    return result


if __name__ == "__main__":
    main()
