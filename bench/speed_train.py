"""Section 2 of ``bench/speed.py``: training throughput of DiffGRM (OCN noising and random
masking) and the AR baseline, and the padding that length-sorted batches save."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from bench.speed_setup import CODEBOOK, N_DIGITS, random_catalogue, size, synthetic_prepared, table
from diffgrm.config import preset
from diffgrm.prepare import Prepared
from diffgrm.train import length_batches, train


def train_throughput(prepared: Prepared, kind: str, noising: str, steps: int, batch: int) -> float:
    """Samples/s of ``train.train`` over ``steps`` optimiser steps (validation excluded)."""
    model_cfg, cfg = preset("cpu", kind=kind, n_digits=N_DIGITS, codebook_size=CODEBOOK)
    cfg = replace(
        cfg,
        epochs=1,
        max_steps=steps,
        batch_size=batch,
        noising=noising,
        eval_users=4,
        eval_beam=16,
        max_minutes=0,
        warmup_steps=1,
    )
    result = train(prepared, model_cfg, cfg, device="cpu", progress=False)
    return float(result.history[0]["samples_per_second"])


def padding_cost(lengths: np.ndarray, batch: int, rng: np.random.Generator) -> dict[str, float]:
    """Padded tokens per real token: ``length_batches`` vs plain shuffled batches."""

    def cost(batches: list[np.ndarray]) -> float:
        return float(sum(lengths[b].max() * len(b) for b in batches) / lengths.sum())

    perm = rng.permutation(len(lengths))
    shuffled = [perm[i : i + batch] for i in range(0, len(perm), batch)]
    return {"length_batches": cost(length_batches(lengths, batch, rng)), "shuffled_batches": cost(shuffled)}


def bench_train(args, rng: np.random.Generator) -> tuple[dict, str]:
    q = args.quick
    steps, batch = size("train_steps", q), size("train_batch", q)
    prepared = synthetic_prepared(random_catalogue(size("train_items", q), rng), steps * batch, rng)
    configs = {
        "DiffGRM, OCN noising": ("diffgrm", "ocn"),
        "DiffGRM, random masking": ("diffgrm", "random"),
        "AR, teacher forcing": ("ar", "ocn"),
    }
    runs: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(max(1, args.repeats - 1)):  # a whole train() call per round: its first steps are the warm-up
        for name, (kind, noising) in configs.items():
            runs[name].append(train_throughput(prepared, kind, noising, steps, batch))
    lengths = np.array([len(h) for h in prepared.splits["train"].histories])
    rows, out = [], {"steps": steps, "batch": batch, "items": prepared.n_items, "models": {}}
    for name, (kind, noising) in configs.items():
        sps = max(runs[name])
        out["models"][name] = {
            "kind": kind,
            "noising": noising if kind == "diffgrm" else "teacher forcing",
            "samples_per_s": sps,
            "step_ms": 1000 * batch / sps,
        }
        rows.append([name, sps, 1000 * batch / sps])
    ocn, rnd = (out["models"][k]["samples_per_s"] for k in ("DiffGRM, OCN noising", "DiffGRM, random masking"))
    out["ocn_vs_random_time"] = rnd / ocn
    out["padding"] = padding_cost(lengths, batch, rng)
    text = (
        f"### 2. Training throughput ({steps} steps of {batch} samples, histories of 8-20 items, cpu preset)\n\n"
        + table(["model", "samples/s", "ms per step"], rows)
        + f"\n\nOCN costs {out['ocn_vs_random_time']:.2f}x the time of random masking per step (its extra no-grad "
        f"confidence pass). Padded tokens per real token: {out['padding']['length_batches']:.2f} with "
        f"`length_batches`, {out['padding']['shuffled_batches']:.2f} with shuffled batches."
    )
    return out, text
