"""Fewer passes than digits: quality and users/s of CPD at S = n, n/2 and 1 network passes beside the cached AR.

    python -m bench passes evaluate --runs runs/ablation/e18/combined runs/ablation/e18/ar-combined \\
        --split valid --beams 32                                  # bench/results/passes.{md,json}
    python -m bench passes evaluate --runs DIFFGRM_RUN AR_RUN --split valid --beams 256 --users 5000 \\
        --out bench/results/passes-b256-u5000
    python -m bench passes table                                  # the committed .md files from their .json

Two trained runs on one catalogue (a DiffGRM run, then an AR run; ``python -m bench ablate`` trains
the `cpu-long` pair). NDCG@10 of each pass count is evaluated once and kept beside its run (the one
evaluation cache); users/s is measured afresh every call by ``python -m bench decode-speed``'s
method on a seeded sample of ``--speed-users`` users of the split (1 thread, batches of 32, best of
3), never cached. A row's own ``users_per_s`` in the JSON is its evaluation's throughput.
"""

from __future__ import annotations

import argparse
import time

from bench.common import RESULTS_DIR, evaluate_cached, md_table, say
from bench.results_io import publish

RESULTS = ("passes", "passes-b256-u5000")
DIFF, AR = "DiffGRM (CPD)", "AR (cached)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", nargs=2, metavar=("DIFFGRM_RUN", "AR_RUN"), help="the two trained runs")
    p.add_argument("--split", default="test", choices=["test", "valid"])
    p.add_argument("--beams", nargs="+", type=int, default=[32, 256])
    p.add_argument("--users", type=int, default=0, help="a seeded sample of this many users (0 = all)")
    p.add_argument("--speed-users", type=int, default=2000,
                   help="users/s measured on a seeded sample of this many users of the split, at most --users "
                        "(0 = as many as --users)")
    p.add_argument("--out", default=None, help="OUT.md and OUT.json (default bench/results/passes)")
    p.add_argument("--quick", action="store_true", help="one timing repeat and nothing written")
    p.add_argument("--device", default=None)


def evaluate_stage(args: argparse.Namespace) -> dict:
    from bench.perf.decode import measure, pass_counts, sample_histories
    from diffgrm.decode import Recommender
    from diffgrm.train import load_run, subsample

    if not args.runs:
        raise SystemExit("error: --runs DIFFGRM_RUN AR_RUN is needed")
    if min(args.beams) < 10:
        raise SystemExit("error: beams must be at least 10 (the metrics read the Top-10)")
    t0 = time.perf_counter()
    (diff, prepared, _), (ar, ar_prepared, _) = (load_run(run, device=args.device) for run in args.runs)
    if diff.config.kind != "diffgrm" or ar.config.kind != "ar":
        raise SystemExit("error: --runs takes a DiffGRM run, then an AR run")
    if prepared.catalogue.fingerprint != ar_prepared.catalogue.fingerprint:
        raise SystemExit("error: the two runs were trained on different catalogues")
    n = diff.config.n_digits
    plan = [(DIFF, args.runs[0], s) for s in pass_counts(n)] + [(AR, args.runs[1], n)]
    models = {DIFF: diff, AR: ar}
    rows = []
    for beam in args.beams:
        for decoder, run, passes in plan:
            metrics = evaluate_cached(run, prepared, args.split, beam=beam, users=args.users,
                                      passes=passes if decoder == DIFF else None, device=args.device,
                                      progress=not args.quick, model=models[decoder])
            rows.append({"beam": beam, "decoder": decoder, "passes": passes, "run": str(run), **metrics,
                         "users_per_s": metrics["users"] / metrics["seconds"]})
    for r in rows:  # quality relative to one digit per pass at the same beam
        full = next(x for x in rows if (x["beam"], x["decoder"], x["passes"]) == (r["beam"], r["decoder"], n))
        r["ndcg10_vs_n_passes"] = r["item"]["ndcg@10"] / max(full["item"]["ndcg@10"], 1e-12)
    samples = subsample(prepared.splits[args.split], args.users, seed=0)
    histories = sample_histories(prepared, args.split, min(args.speed_users or len(samples), len(samples)), seed=0)
    recs = {DIFF: Recommender(diff), AR: Recommender(ar)}
    speed = {}
    for beam in args.beams:
        say(f"timing the decoders at beam {beam} ...")
        found = measure({f"{d} S={s}": (recs[d], s if d == DIFF else None) for d, _, s in plan}, histories, beam=beam,
                        threads=1, repeats=1 if args.quick else 3, sample={"split": args.split, "seed": 0})
        speed[str(beam)] = list(found.values())
    targets = {}
    for beam in args.beams:
        half, ar_row = (_pick(rows, beam, DIFF, max(1, n // 2)), _pick(rows, beam, AR, n))
        targets[beam] = {"half_within_5pct": half["ndcg10_vs_n_passes"] >= 0.95,
                         "half_faster_than_ar": _ups(speed, half) > _ups(speed, ar_row)}
    payload = {"dataset": prepared.report["dataset"], "split": args.split, "users": len(samples), "rows": rows,
               "targets": targets, "speed": speed, "seconds": round(time.perf_counter() - t0, 1)}
    publish(args.out or RESULTS_DIR / "passes", payload, render, write=not args.quick)
    return payload


def _pick(rows: list[dict], beam: int, decoder: str, passes: int) -> dict:
    return next(r for r in rows if (r["beam"], r["decoder"], r["passes"]) == (beam, decoder, passes))


def _ups(speed: dict | None, row: dict) -> float:
    """The users/s column: the decode-speed measurement, or (files made before it existed) the evaluation's."""
    if not speed:
        return row["users_per_s"]
    return next(s["users_per_s"] for s in speed[str(row["beam"])] if s["decoder"] == f"{row['decoder']} S={row['passes']}")


def render(payload: dict) -> str:
    rows, speed = payload["rows"], payload.get("speed")
    n = max(r["passes"] for r in rows)
    runs = " and ".join(dict.fromkeys(r["run"] for r in rows))
    head = f"{payload['dataset']}, {payload['split']} split, {payload['users']:,} users, item level; {runs}; "
    if speed:
        timed = next(iter(speed.values()))[0]
        head += (f"users/s by `python -m bench decode-speed`'s method ({timed['users']:,} seeded {payload['split']} "
                 f"users, batches of 32, 1 thread, encoder + search, best of {timed['repeats']} after a warm-up batch)")
    else:
        head += "users/s end to end on this machine"
    lines = [head, "", *md_table(["beam", "decoder", "passes", "R@10", "N@10", "N@10 vs n passes", "users/s"], [
        [r["beam"], r["decoder"], r["passes"], f"{r['item']['recall@10']:.4f}", f"{r['item']['ndcg@10']:.4f}",
         f"{r['ndcg10_vs_n_passes']:.3f}", f"{_ups(speed, r):,.0f}"] for r in rows])]
    for beam in dict.fromkeys(r["beam"] for r in rows):
        half = _pick(rows, beam, DIFF, max(1, n // 2))
        ratio = _ups(speed, half) / _ups(speed, _pick(rows, beam, AR, n))
        lines += ["", f"Beam {beam}: S = {half['passes']} keeps {half['ndcg10_vs_n_passes']:.1%} of the {n}-pass "
                      f"NDCG@10 at {ratio:.2f}x the cached AR decoder's users/s"
                  + (f" {payload['speed_note']}." if "speed_note" in payload else ".")]
    return "\n".join(lines)


STAGES = {"evaluate": evaluate_stage}
