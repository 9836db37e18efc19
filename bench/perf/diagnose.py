"""How long ``diffgrm diagnose`` takes on Amazon Beauty's validation split, part by part.

Prepares ``../shared/data/amazon-beauty`` into ``runs/beauty`` and trains a ``cpu``-preset DiffGRM
into ``runs/beauty-d`` when they are not there yet (``--epochs``, 2 by default: the time of a
diagnosis does not depend on how well the run is trained, only on how many users miss), then
diagnoses ``--users`` users at ``--beam`` with the default beam curve and times it.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from bench.common import BEAUTY, RESULTS_DIR, commit, ensure_prepared, loadavg, machine, md_table, say, train_or_reuse
from bench.results_io import publish

RESULTS = ("diagnose",)
TARGET_SECONDS = 300.0


OPTIONS = {"prepared": "runs/beauty", "run": "runs/beauty-d", "epochs": 2, "users": 5000, "beam": 32, "threads": 2}
"""The options and their defaults; ``--out`` (default bench/results/diagnose) and ``--quick`` beside them."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    for name, default in OPTIONS.items():
        p.add_argument(f"--{name}", type=type(default), default=default)
    p.add_argument("--out", default=None, help="OUT.md and OUT.json (default bench/results/diagnose)")
    p.add_argument("--quick", action="store_true", help="a tiny run on 50 users; no files written")


def run(args: argparse.Namespace) -> dict:
    import torch

    from diffgrm.config import preset
    from diffgrm.diagnose import DiagnoseSettings, diagnose, summary
    from diffgrm.prepare import load_prepared
    from diffgrm.train import load_run

    torch.set_num_threads(args.threads)
    prepared = load_prepared(ensure_prepared(args.prepared, BEAUTY))
    model_cfg, cfg = preset("cpu", n_digits=prepared.catalogue.n_digits, codebook_size=prepared.catalogue.codebook_size)
    cfg = replace(cfg, epochs=1, max_steps=3, eval_users=20) if args.quick else replace(cfg, epochs=args.epochs)
    train_or_reuse(args.run, prepared, model_cfg, cfg)
    model, prepared, _ = load_run(args.run, data=prepared.path, device="cpu")
    users = 50 if args.quick else args.users
    settings = DiagnoseSettings(split="valid", users=users, beam=args.beam, curve_users=min(1000, users))
    before = loadavg()
    t0 = time.perf_counter()
    diag = diagnose(model, prepared, settings, progress=False)
    seconds = time.perf_counter() - t0
    say(summary(diag))
    payload = {"users": diag["users"], "beam": args.beam, "curve_users": settings.curve_users,
               "beams": list(settings.beams), "seconds": round(seconds, 1), "parts": diag["seconds"],
               "missed": diag["misses"]["missed"], "threads": args.threads, "target_seconds": TARGET_SECONDS,
               "machine": machine(), "loadavg_before": before, "code": commit(short=True)}
    publish(args.out or RESULTS_DIR / "diagnose", payload, render, write=not args.quick)
    return payload


def render(payload: dict) -> str:
    p = payload
    lines = [f"`diffgrm diagnose` on Amazon Beauty's validation split: {p['users']:,} users at beam {p['beam']}, the "
             f"beam curve ({', '.join(map(str, p['beams']))}) on the first {p['curve_users']:,}; {p['threads']} "
             f"threads on a {p['machine']['cpus']}-core CPU (load {p['loadavg_before']} before), commit "
             f"{p['code']['commit']}; {p['missed']:,} users missed at beam {p['beam']}", ""]
    rows = [[name, f"{sec:.1f}"] for name, sec in p["parts"].items()]
    rows.append(["**total**", f"**{p['seconds']:.1f}**"])
    lines += md_table(["part", "seconds"], rows)
    verdict = "within" if p["seconds"] <= p["target_seconds"] else "over"
    lines += ["", f"{p['seconds'] / 60:.1f} minutes in all, {verdict} {p['target_seconds'] / 60:.0f} minutes. The search "
              "row includes finding, for every missed user, the digit whose fill would have kept the target in "
              "the beam (one more network pass over the beams that still agreed with it)."]
    return "\n".join(lines)


STAGES = {"run": run}
