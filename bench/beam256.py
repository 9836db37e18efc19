"""Beam 256 at full scale: one whole split decoded at the reference's test beam, and where the time goes.

    .venv/bin/python bench/beam256.py runs/ablation/e6/baseline            # full Beauty test split, beam 256
    .venv/bin/python bench/beam256.py RUN --steps 2 --out bench/results/beam256-s2
    .venv/bin/python bench/beam256.py RUN --users 500 --quick               # a smoke run

Evaluates the run like ``diffgrm evaluate RUN --beam 256`` (item-level metrics, batches of
``--batch`` users), reports the wall time against the 15-minute target, then profiles
``--profile-users`` users with cProfile and splits their time into the network (encoder and
denoiser passes) and the search's own work (validity mask, keeping beams distinct, top-k and
sorting, the rest). Writes OUT.md and OUT.json (default ``bench/results/beam256``).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.results_io import write_results  # noqa: E402
from diffgrm.decode import Recommender  # noqa: E402
from diffgrm.train import load_run, subsample  # noqa: E402

TARGET_MINUTES = 15
# (label, file suffix, function name) of the parts timed by cProfile's cumulative time; a part
# listed later is measured outside the earlier ones only where their calls do not nest
PARTS = [
    ("network: history encoder", "model.py", "encode"),
    ("network: denoiser / AR decoder passes", "model.py", "_decode"),
    ("network: AR decoder steps (cached)", "model.py", "step_logits"),
    ("search: validity mask (`_blocked`)", "cpd_validity.py", "_blocked"),
    ("search: distinct beams (`_Matches.novel`)", "cpd_validity.py", "novel"),
    ("search: AR validity mask (`allowed`)", "ar.py", "allowed"),
    ("search: finish (SIDs to items)", "cpd.py", "_finish"),
]


def profile_parts(rec: Recommender, histories, beam: int, batch: int, steps: int | None) -> tuple[float, dict]:
    """Seconds of the whole decode of ``histories`` and of each part in :data:`PARTS`."""
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for s in range(0, len(histories), batch):
        rec.search(histories[s : s + batch], beam=beam, topk=10, passes=steps)
    prof.disable()
    total = time.perf_counter() - t0
    stats = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}
    parts = {}
    for label, suffix, name in PARTS:
        cum = sum(v[3] for (file, _, fn), v in stats.items() if fn == name and file.endswith(suffix))
        if cum > 0:
            parts[label] = cum
    return total, parts


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="a trained run (DiffGRM or AR)")
    p.add_argument("--split", default="test", choices=["test", "valid"])
    p.add_argument("--beam", type=int, default=256)
    p.add_argument("--batch", type=int, default=32, help="users decoded together")
    p.add_argument("--users", type=int, default=0, help="a seeded sample of this many users (0 = all)")
    p.add_argument("--steps", type=int, default=None, help="CPD network passes (default: one per digit)")
    p.add_argument("--profile-users", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/results/beam256")
    p.add_argument("--quick", action="store_true", help="no progress bar and no files written")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, prepared, _ = load_run(args.run, device="cpu")
    rec = Recommender(model)
    samples = subsample(prepared.splits[args.split], args.users, seed=0)

    metrics = rec.evaluate(samples, beam=args.beam, batch_users=args.batch, passes=args.steps, progress=not args.quick)
    seconds = metrics["seconds"]
    profiled = subsample(samples, args.profile_users, seed=1)
    total, parts = profile_parts(rec, profiled.histories, args.beam, args.batch, args.steps)
    network = sum(v for k, v in parts.items() if k.startswith("network"))
    search = {k: v for k, v in parts.items() if k.startswith("search")}
    rows = [(k, v) for k, v in parts.items()]
    rows.append(("search: top-k, sorting and the rest", max(0.0, total - network - sum(search.values()))))

    kind = model.config.kind
    lines = [
        f"{prepared.report['dataset']}, {args.split} split, {len(samples):,} users, beam {args.beam}, batches of "
        f"{args.batch}, {kind} run {args.run} ({model.config.d_model}-d), "
        f"{args.steps or model.config.n_digits} passes, {args.threads} threads",
        "",
        f"- wall time: {seconds / 60:.1f} min ({len(samples) / seconds:.1f} users/s)",
        f"- item-level NDCG@10 {metrics['item']['ndcg@10']:.4f}, Recall@10 {metrics['item']['recall@10']:.4f}",
        "",
        f"Where the time goes ({len(profiled):,} users under cProfile, {total:.1f} s; cProfile adds overhead):",
        "",
        "| part | seconds | share |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v:.2f} | {v / total:.0%} |" for k, v in rows]
    text = "\n".join(lines)
    print(text)
    payload = {"run": args.run, "kind": kind, "split": args.split, "users": len(samples), "beam": args.beam,
               "batch": args.batch, "steps": args.steps or model.config.n_digits, "threads": args.threads,
               "seconds": seconds, "users_per_s": len(samples) / seconds,
               "within_target": seconds <= TARGET_MINUTES * 60, "item": metrics["item"],
               "profile": {"users": len(profiled), "seconds": total, "parts": dict(rows)}}
    if not args.quick:
        write_results(args.out, text, payload)
    return payload


if __name__ == "__main__":
    main()
