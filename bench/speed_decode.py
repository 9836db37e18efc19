"""Sections 1 and 1b of ``bench/speed.py``: CPD against its floor and the AR decoder, and users/s
at S = n, n/2 and 1 network passes.

The *floor* is ``n_digits`` plain passes of the denoiser over ``batch x beam`` rows with the
encoder output cached: exactly the network call a CPD step makes, at full beam every time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import torch

from bench.decode_speed import measure, pass_counts, sample_histories
from bench.speed_setup import (CPD_FLOOR_TARGET, TOPK, best_of, random_catalogue, random_histories, size, table,
                               untrained)
from diffgrm.cpd import cpd_search
from diffgrm.decode import Recommender, pad_histories
from diffgrm.model import MASK
from diffgrm.train import load_run


def decoders(
    diff_model, ar_model, histories: list[np.ndarray], batch: int, beam: int
) -> dict[str, Callable[[], object]]:
    """The four timed ways of producing (or bounding) Top-K for ``histories``, batch by batch."""
    diff_rec, ar_rec = Recommender(diff_model), Recommender(ar_model)
    index = diff_rec.index
    n = diff_model.config.n_digits
    chunks = [histories[s : s + batch] for s in range(0, len(histories), batch)]
    cached = []  # encoder output of each chunk, computed once: the floor and the search-only timing reuse it
    with torch.no_grad():
        for chunk in chunks:
            memory, keep = diff_model.encode(pad_histories(chunk, diff_model.config.max_history))
            rows = torch.full((len(chunk), beam, n), MASK, dtype=torch.long)
            cached.append((diff_model.cross_kv(memory), keep, rows))

    @torch.no_grad()
    def floor() -> None:  # n plain denoiser passes over batch x beam rows: one CPD step's network call, n times
        for kv, keep, rows in cached:
            for _ in range(n):
                diff_model.denoise(rows, kv, keep).log_softmax(-1)

    @torch.no_grad()
    def cpd_only() -> None:
        for kv, keep, rows in cached:

            def logprob_fn(tokens, kv=kv, keep=keep):  # the same call Recommender.search hands CPD
                return diff_model.denoise(tokens, kv, keep, masked_only=True).log_softmax(-1)

            cpd_search(logprob_fn, index, rows.shape[0], beam=beam, topk=TOPK, masked_only=True)

    return {
        "floor": floor,
        "cpd_search": cpd_only,
        "cpd": lambda: [diff_rec.search(c, beam=beam, topk=TOPK) for c in chunks],
        "ar": lambda: [ar_rec.search(c, beam=beam, topk=TOPK) for c in chunks],
    }


# --------------------------------------------------------------------------- 1. decode


def decode_models(args, rng: np.random.Generator, users: int):
    """(DiffGRM, AR, histories, description): the ``--runs`` pair on a seeded sample of validation
    users, or untrained cpu-preset models on a synthetic catalogue."""
    if args.runs:
        diff_model, prepared, _ = load_run(args.runs[0], device="cpu")
        ar_model, ar_prepared, _ = load_run(args.runs[1], device="cpu")
        if prepared.catalogue.fingerprint != ar_prepared.catalogue.fingerprint:
            sys.exit("error: the two runs were trained on different catalogues")
        if diff_model.config.kind != "diffgrm" or ar_model.config.kind != "ar":
            sys.exit("error: --runs takes a DiffGRM run, then an AR run")
        histories = sample_histories(prepared, "valid", users, seed=0)
        return diff_model, ar_model, histories, (f"trained runs {args.runs[0]} / {args.runs[1]}, "
                                                 f"{len(prepared.catalogue.codes):,} items")
    codes = random_catalogue(size("decode_items", args.quick), rng)
    histories = random_histories(users, len(codes), rng)
    return (untrained("diffgrm", codes), untrained("ar", codes), histories,
            f"untrained cpu-preset models, synthetic catalogue of {len(codes):,} items")


def bench_decode(args, rng: np.random.Generator) -> tuple[dict, str]:
    q, repeats = args.quick, args.repeats
    beam, batch = size("decode_beam", q), size("decode_batch", q)
    users = size("decode_users", q)
    diff_model, ar_model, histories, setup = decode_models(args, rng, users)
    best, _ = best_of(decoders(diff_model, ar_model, histories, batch, beam), repeats)
    n = len(histories)
    out = {
        "setup": setup,
        "users": n,
        "batch": batch,
        "beam": beam,
        "topk": TOPK,
        "n_digits": diff_model.config.n_digits,
        "seconds": best,
        "users_per_s": {name: n / s for name, s in best.items()},
        "cpd_vs_floor": best["cpd"] / best["floor"],
        "cpd_search_vs_floor": best["cpd_search"] / best["floor"],
        "cpd_vs_ar": best["cpd"] / best["ar"],
    }
    out["targets"] = {
        f"cpd_within_{CPD_FLOOR_TARGET}x_floor": out["cpd_vs_floor"] <= CPD_FLOOR_TARGET,
        "cpd_not_slower_than_ar": out["cpd_vs_ar"] <= 1.0,
    }
    labels = {
        "floor": f"floor: {out['n_digits']} denoiser passes over {batch} users x {beam} beams (encoder cached)",
        "cpd_search": "CPD search only (encoder cached)",
        "cpd": "CPD, end to end (`Recommender.search`)",
        "ar": "AR trie beam, end to end (`Recommender.search`)",
    }
    rows = [[labels[k], best[k], n / best[k], best[k] / best["floor"]] for k in labels]
    text = (
        f"### 1. Decode: CPD vs AR, beam {beam}, Top-{TOPK}, {n} users in batches of {batch} ({setup})\n\n"
        + table(["what", "seconds", "users/s", "x floor"], rows)
        + "\n\n"
        + table(
            ["target", "measured", "met"],
            [
                [
                    f"CPD end to end within {CPD_FLOOR_TARGET}x of the floor",
                    f"{out['cpd_vs_floor']:.2f}x",
                    out["targets"][f"cpd_within_{CPD_FLOOR_TARGET}x_floor"],
                ],
                [
                    "CPD no slower than AR (time ratio CPD / AR)",
                    f"{out['cpd_vs_ar']:.2f}",
                    out["targets"]["cpd_not_slower_than_ar"],
                ],
            ],
        )
        + f"\n\nThe floor itself takes {best['floor'] / best['ar']:.2f}x AR's time: every CPD pass runs all "
        f"{out['n_digits']} digit slots (bidirectional attention, nothing to cache between steps), while the AR "
        f"decoder, with its key/value cache, computes one new slot per layer per step."
    )
    return out, text


# --------------------------------------------------------------------------- 1b. passes


def bench_passes(args, rng: np.random.Generator) -> tuple[dict, str]:
    """Users/s of CPD at S = n, n/2 and 1 network passes and of the AR decoder with its key/value
    cache (and without, for reference), end to end, at each beam; the n-pass floor beside them."""
    q, repeats = args.quick, args.repeats
    users, batch = size("passes_users", q), size("passes_batch", q)
    diff_model, ar_model, histories, setup = decode_models(args, rng, users)
    diff_rec, ar_rec = Recommender(diff_model), Recommender(ar_model)
    n = diff_model.config.n_digits
    rows, out = [], {"setup": setup, "users": len(histories), "batch": batch, "n_digits": n, "beams": {}}
    for beam in size("passes_beams", q):
        specs = {f"cpd S={steps}": (diff_rec, steps) for steps in pass_counts(n)}
        specs |= {"ar cached": (ar_rec, None, True), "ar uncached": (ar_rec, None, False)}
        timed = measure(specs, histories, beam=beam, topk=TOPK, batch_users=batch, threads=args.threads,
                        repeats=repeats)
        best, _ = best_of({"floor": decoders(diff_model, ar_model, histories, batch, beam)["floor"]}, repeats)
        best |= {name: r["seconds"] for name, r in timed.items()}
        half = f"cpd S={max(1, n // 2)}"
        out["beams"][beam] = {
            "seconds": best,
            "users_per_s": {k: len(histories) / v for k, v in best.items()},
            "targets": {
                "cpd_half_faster_than_cached_ar": best[half] < best["ar cached"],
                f"cpd_n_within_{CPD_FLOOR_TARGET}x_floor": best[f"cpd S={n}"] / best["floor"] <= CPD_FLOOR_TARGET,
            },
        }
        for name, sec in best.items():
            rows.append([beam, name, len(histories) / sec, sec / best["ar cached"], sec / best["floor"]])
    targets = [[f"beam {b}: CPD at S = {max(1, n // 2)} faster than the cached AR",
                f"{r['seconds'][f'cpd S={max(1, n // 2)}'] / r['seconds']['ar cached']:.2f}x AR's time",
                r["targets"]["cpd_half_faster_than_cached_ar"]] for b, r in out["beams"].items()]
    targets += [[f"beam {b}: CPD at S = {n} within {CPD_FLOOR_TARGET}x of its {n}-pass floor",
                 f"{r['seconds'][f'cpd S={n}'] / r['seconds']['floor']:.2f}x",
                 r["targets"][f"cpd_n_within_{CPD_FLOOR_TARGET}x_floor"]] for b, r in out["beams"].items()]
    text = (
        f"### 1b. Network passes: CPD at S = {', '.join(map(str, pass_counts(n)))} and the AR decoder, "
        f"{len(histories)} users in batches of {batch}, Top-{TOPK} ({setup})\n\n"
        + table(["beam", "decoder", "users/s", "x cached AR time", "x floor"], rows)
        + "\n\n" + table(["target", "measured", "met"], targets)
        + f"\n\nfloor: {n} plain denoiser passes over batch x beam rows (encoder cached). `ar uncached` recomputes "
        "the whole prefix at every step (what the AR baseline did before it cached keys and values)."
    )
    return out, text
