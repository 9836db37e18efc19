"""Section 4 of ``python -m bench speed``: decode time per user (CPD, AR, the floor) and train step time
against catalogue size, and decode time against beam size."""

from __future__ import annotations

import numpy as np

from bench.perf.decode import best_of, floor_and_search
from bench.perf.synthetic import TOPK, random_catalogue, random_histories, size, synthetic_prepared, table, untrained
from bench.perf.train_step import train_throughput


def per_user(best: dict[str, float], users: int) -> dict[str, float]:
    """One scaling row's decode columns from the best seconds of floor, CPD and AR over ``users``."""
    return {
        "users": users,
        "cpd_ms_per_user": 1000 * best["cpd"] / users,
        "ar_ms_per_user": 1000 * best["ar"] / users,
        "floor_ms_per_user": 1000 * best["floor"] / users,
        "cpd_vs_floor": best["cpd"] / best["floor"],
    }


def bench_scaling(args, rng: np.random.Generator) -> tuple[dict, str]:
    q, repeats = args.quick, args.repeats
    users, beam, steps = size("scale_users", q), size("decode_beam", q), size("scale_steps", q)
    batch = size("train_batch", q)
    by_items = []
    for n_items in size("scale_items", q):
        codes = random_catalogue(n_items, rng)
        diff_model, ar_model = untrained("diffgrm", codes), untrained("ar", codes)
        histories = random_histories(users, n_items, rng)
        fns = floor_and_search(diff_model, ar_model, histories, users, beam, TOPK)
        best, first = best_of({k: fns[k] for k in ("floor", "cpd", "ar")}, repeats)
        sps = train_throughput(synthetic_prepared(codes, steps * batch, rng), "diffgrm", "ocn", steps, batch)
        by_items.append(
            {
                "items": n_items,
                "beam": beam,
                **per_user(best, users),
                "cpd_first_call_s": first["cpd"],
                "ar_first_call_s": first["ar"],
                "train_step_ms": 1000 * batch / sps,
            }
        )
    mid = size("scale_items", q)[min(1, len(size("scale_items", q)) - 1)]
    codes = random_catalogue(mid, rng)
    diff_model, ar_model = untrained("diffgrm", codes), untrained("ar", codes)
    histories = random_histories(users, mid, rng)
    by_beam = []
    for b in size("scale_beams", q):
        fns = floor_and_search(diff_model, ar_model, histories, users, b, TOPK)
        best, _ = best_of({k: fns[k] for k in ("floor", "cpd", "ar")}, repeats)
        by_beam.append(
            {
                "beam": b,
                "items": mid,
                **per_user(best, users),
                "cpd_vs_ar": best["cpd"] / best["ar"],
            }
        )
    text = (
        f"### 4. Scaling (untrained cpu-preset models, {users} users per batch, Top-{TOPK}; "
        f"train steps of {batch} samples with OCN)\n\n"
        f"Catalogue size (beam {beam}):\n\n"
        + table(
            ["items", "CPD ms/user", "AR ms/user", "floor ms/user", "CPD x floor", "CPD first call s", "train ms/step"],
            [
                [
                    r["items"],
                    r["cpd_ms_per_user"],
                    r["ar_ms_per_user"],
                    r["floor_ms_per_user"],
                    r["cpd_vs_floor"],
                    r["cpd_first_call_s"],
                    r["train_step_ms"],
                ]
                for r in by_items
            ],
        )
        + f"\n\nBeam size ({mid:,} items):\n\n"
        + table(
            ["beam", "CPD ms/user", "AR ms/user", "floor ms/user", "CPD x floor", "CPD / AR"],
            [
                [
                    r["beam"],
                    r["cpd_ms_per_user"],
                    r["ar_ms_per_user"],
                    r["floor_ms_per_user"],
                    r["cpd_vs_floor"],
                    r["cpd_vs_ar"],
                ]
                for r in by_beam
            ],
        )
    )
    return {"catalogue": by_items, "beam": by_beam}, text
