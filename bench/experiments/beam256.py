"""Beam 256 at full scale: one whole split decoded at the reference's test beam, and where the time goes.

    python -m bench beam256 evaluate --run runs/ablation/e6/baseline      # full Beauty test split, beam 256
    python -m bench beam256 evaluate --run RUN --passes 2 --out bench/results/beam256-s2
    python -m bench beam256 evaluate --run RUN --users 500 --quick         # a smoke run
    python -m bench beam256 table                                          # the committed .md from its .json

Evaluates the run like ``diffgrm evaluate RUN --beam 256`` (item-level metrics, batches of
``--batch`` users), reports the wall time, then profiles
``--profile-users`` users with cProfile and splits their time into the network (encoder and
denoiser passes) and the search's own work (validity mask, keeping beams distinct, top-k and
sorting, the rest). Writes OUT.md and OUT.json (default ``bench/results/beam256``).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from bench.common import RESULTS_DIR, md_table
from bench.results_io import publish

RESULTS = ("beam256",)
TARGET_MINUTES = 15  # the JSON's within_target: the whole split within a quarter hour
# (label, file suffix, function names) of the parts timed by cProfile's cumulative time; a part
# listed later is measured outside the earlier ones only where their calls do not nest
PARTS = [
    ("network: history encoder", "model.py", ("encode",)),
    ("network: denoiser / AR decoder passes", "model.py", ("_decode", "_decode_slots")),  # all slots, or the masked
    ("network: AR decoder steps (cached)", "model.py", ("step_logits",)),
    ("search: validity mask (`_blocked`)", "cpd_validity.py", ("_blocked",)),
    ("search: distinct beams (`_Matches.novel`)", "cpd_validity.py", ("novel",)),
    ("search: AR validity mask (`allowed`)", "ar.py", ("allowed",)),
    ("search: finish (SIDs to items)", "beams.py", ("finish",)),
]


def profile_parts(rec, histories, beam: int, batch: int, passes: int | None) -> tuple[float, dict]:
    """Seconds of the whole decode of ``histories`` and of each part in :data:`PARTS`."""
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for s in range(0, len(histories), batch):
        rec.search(histories[s : s + batch], beam=beam, topk=10, passes=passes)
    prof.disable()
    total = time.perf_counter() - t0
    stats = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}
    parts = {}
    for label, suffix, names in PARTS:
        cum = sum(v[3] for (file, _, fn), v in stats.items() if fn in names and file.endswith(suffix))
        if cum > 0:
            parts[label] = cum
    return total, parts


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default="runs/ablation/e6/baseline", help="a trained run (DiffGRM or AR)")
    p.add_argument("--split", default="test", choices=["test", "valid"])
    p.add_argument("--beam", type=int, default=256)
    p.add_argument("--batch", type=int, default=32, help="users decoded together")
    p.add_argument("--users", type=int, default=0, help="a seeded sample of this many users (0 = all)")
    p.add_argument("--passes", type=int, default=None, help="CPD network passes (default: one per digit)")
    p.add_argument("--profile-users", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="OUT.md and OUT.json (default bench/results/beam256)")
    p.add_argument("--quick", action="store_true", help="no progress bar and no files written")


def evaluate_stage(args: argparse.Namespace) -> dict:
    import torch

    from diffgrm.decode import Recommender
    from diffgrm.train import load_run, subsample

    torch.set_num_threads(args.threads)
    model, prepared, _ = load_run(args.run, device="cpu")
    rec = Recommender(model)
    samples = subsample(prepared.splits[args.split], args.users, seed=0)
    metrics = rec.evaluate(samples, beam=args.beam, batch_users=args.batch, passes=args.passes, progress=not args.quick)
    seconds = metrics["seconds"]
    profiled = subsample(samples, args.profile_users, seed=1)
    total, parts = profile_parts(rec, profiled.histories, args.beam, args.batch, args.passes)
    network = sum(v for k, v in parts.items() if k.startswith("network"))
    search = sum(v for k, v in parts.items() if k.startswith("search"))
    parts["search: top-k, sorting and the rest"] = max(0.0, total - network - search)
    payload = {"run": args.run, "kind": model.config.kind, "split": args.split, "users": len(samples),
               "beam": args.beam, "batch": args.batch, "steps": args.passes or model.config.n_digits,
               "threads": args.threads, "seconds": seconds, "users_per_s": len(samples) / seconds,
               "within_target": seconds <= TARGET_MINUTES * 60, "item": metrics["item"],
               "profile": {"users": len(profiled), "seconds": total, "parts": parts},
               "dataset": prepared.report["dataset"], "d_model": model.config.d_model}
    publish(args.out or RESULTS_DIR / "beam256", payload, render, write=not args.quick)
    return payload


def render(p: dict) -> str:
    prof = p["profile"]
    total = prof["seconds"]
    return "\n".join([
        f"{p['dataset']}, {p['split']} split, {p['users']:,} users, beam {p['beam']}, batches of {p['batch']}, "
        f"{p['kind']} run {p['run']} ({p['d_model']}-d), {p['steps']} passes, {p['threads']} threads", "",
        f"- wall time: {p['seconds'] / 60:.1f} min ({p['users'] / p['seconds']:.1f} users/s)",
        f"- item-level NDCG@10 {p['item']['ndcg@10']:.4f}, Recall@10 {p['item']['recall@10']:.4f}", "",
        f"Where the time goes ({prof['users']:,} users under cProfile, {total:.1f} s; cProfile adds overhead):", "",
        *md_table(["part", "seconds", "share"], [[k, f"{v:.2f}", f"{v / total:.0%}"] for k, v in prof["parts"].items()])])


STAGES = {"evaluate": evaluate_stage}
