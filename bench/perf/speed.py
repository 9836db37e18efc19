"""Speed: decoding, training, the tokenizer, and how decoding and training scale.

    python -m bench speed run [--quick] [--out bench/results/speed.json] [--threads 1] [--repeats R]
                              [--sections decode,passes,train,tokenizer,scaling] [--runs DIFFGRM_RUN AR_RUN]

Prints one markdown table per section and writes every number to a JSON file (default
``bench/results/speed.json``). ``--quick`` runs tiny sizes in well under a minute (a smoke test of
the script); the full mode takes about two minutes on an otherwise idle 2-core CPU.

1. **Decode**: CPD (DiffGRM) and the AR trie beam at the same beam and K on the same users, in
   users/s, against the *floor*: ``n_digits`` plain passes of the denoiser over ``batch x beam``
   rows with the encoder output cached (exactly the network call a CPD step makes, at full beam
   every time). CPD is timed end to end (``Recommender.search``: encoder + search) and search only
   (``cpd_search`` with the encoder output cached, like the floor). Checks: CPD against 1.5x the
   floor, and CPD against AR.
1b. **Passes**: users/s of CPD at S = n, n/2 and 1 network passes (``--steps``) and of the AR
   decoder with its key/value cache (and without it, for reference) at beams 32 and 256, with the
   n-pass floor beside them, all timed by ``bench.perf.decode`` (the one decode-speed method:
   one untimed warm-up batch, best of ``--repeats``, decoders taking turns). Checks: CPD at S = n/2
   against the cached AR at the same beam; CPD at S = n against 1.5x its floor. Its quality
   twin is ``python -m bench passes``; figures for the README come from ``python -m bench
   decode-speed`` itself on 2,000 users (this section's 64 are a quick look).
2. **Train**: samples/s of ``diffgrm.train.train`` for DiffGRM with OCN noising and with random
   masking (and the AR baseline), a fixed number of optimiser steps each, batches of similar
   history length (``train.length_batches``) padded to their longest.
3. **Tokenizer**: items/s of ``diffgrm.text.embed_texts`` with the default offline encoder on fresh
   random texts (``cache=False``: real encoding, not the disk cache), and of the PSE fit
   (``PSETokenizer.fit``, OPQ and PQ) and SID assignment with collision repair
   (``build_catalogue``) on random embeddings.
4. **Scaling**: decode time per user (CPD, AR) and train step time vs catalogue size (1k, 10k, 100k
   items), and decode time vs beam (16 to 128).

Models are untrained (randomly initialised) ``cpu``-preset networks (d 128, 1 encoder + 2 decoder
layers) on synthetic catalogues with random one-to-one SIDs (4 digits x 256 codes) and random
histories of 8-20 items: the network's cost does not depend on its weights, the search's
bookkeeping only a little. ``--runs`` decodes real users with two trained runs on the same
catalogue instead (sections 1 and 1b): a seeded sample of the validation split
(``bench.perf.decode.sample_histories``, the users ``python -m bench passes`` times).

Timing: torch, faiss and numpy's BLAS use ``--threads`` threads (default 1: less noise from
whatever else runs on the machine). Every time is the best of ``--repeats`` rounds after a warm-up
round, and the methods compared in one table are timed in turn within each round, so background
load hits them alike. Compare ratios, not absolute times, across machines.

This module holds the command and sections 1 and 1b; section 2 lives in ``train_step.py``, 3 in
``tokenizer.py``, 4 in ``scaling.py``; what they share (sizes, synthetic models, the table) in
``synthetic.py``, and the timer (``take_turns``) and the floor in ``decode.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from bench.common import RESULTS_DIR, machine
from bench.perf.decode import best_of, floor_and_search, measure, pass_counts, sample_histories
from bench.perf.synthetic import CPD_FLOOR_TARGET, TOPK, random_catalogue, random_histories, size, table, untrained
from diffgrm.decode import Recommender
from diffgrm.train import load_run

SECTIONS = ("decode", "passes", "train", "tokenizer", "scaling")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="tiny sizes, one round: a smoke test (well under a minute)")
    p.add_argument("--out", default=str(RESULTS_DIR / "speed.json"), help="JSON file to write")
    p.add_argument("--threads", type=int, default=1, help="torch, faiss and BLAS threads (default 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per measurement (default 3, quick 1)")
    p.add_argument("--runs", nargs=2, metavar=("DIFFGRM_RUN", "AR_RUN"), help="decode with two trained runs (sections 1, 1b)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--seed", type=int, default=0)


def run_stage(args: argparse.Namespace) -> dict:
    import torch
    from threadpoolctl import threadpool_limits  # comes with scikit-learn, a sentence-transformers dependency

    for name, value in (("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TRANSFORMERS_VERBOSITY", "error"),
                        ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(name, value)
    sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    if not sections or set(sections) - set(SECTIONS):
        raise SystemExit(f"error: --sections takes names from {','.join(SECTIONS)}")
    if args.repeats is None:
        args.repeats = size("repeats", args.quick)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    # numpy's BLAS and faiss' OpenMP get the same thread count as torch: left at their default
    # next to torch's OpenMP threads they contend (numpy's SVD in the PSE fit ran 10x slower
    # after an embedding call in the same process on this machine). The limits cover only the
    # libraries loaded by then, so load them first.
    import faiss  # noqa: F401

    if "tokenizer" in sections:
        import sentence_transformers  # noqa: F401
    with threadpool_limits(limits=args.threads):
        results = run_sections(args, sections, rng)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_file() and not args.quick:  # sections not run this time keep their earlier numbers
        results = {**json.loads(out.read_text()), **results}
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out} ({results['meta']['seconds']:.0f} s in all)")
    return results


def run_sections(args: argparse.Namespace, sections: list[str], rng: np.random.Generator) -> dict:
    from bench.perf.scaling import bench_scaling
    from bench.perf.tokenizer import bench_tokenizer
    from bench.perf.train_step import bench_train

    t0 = time.perf_counter()
    results: dict = {
        "meta": {"quick": args.quick, "threads": args.threads, "repeats": args.repeats, **machine(), "device": "cpu"}
    }
    mode = "quick" if args.quick else "full"
    print(f"# diffgrm speed ({mode} mode, {args.threads} thread(s), best of {args.repeats} round(s))\n")
    for name in sections:
        t = time.perf_counter()
        fn = {"decode": bench_decode, "passes": bench_passes, "train": bench_train, "tokenizer": bench_tokenizer,
              "scaling": bench_scaling}[name]
        results[name], text = fn(args, rng)
        print(text + f"\n\n({name}: {time.perf_counter() - t:.0f} s)\n", flush=True)
    results["meta"]["seconds"] = time.perf_counter() - t0
    return results


# --------------------------------------------------------------------------- 1. decode


def decode_models(args, rng: np.random.Generator, users: int):
    """(DiffGRM, AR, histories, description): the ``--runs`` pair on a seeded sample of validation
    users, or untrained cpu-preset models on a synthetic catalogue."""
    if args.runs:
        diff_model, prepared, _ = load_run(args.runs[0], device="cpu")
        ar_model, ar_prepared, _ = load_run(args.runs[1], device="cpu")
        if prepared.catalogue.fingerprint != ar_prepared.catalogue.fingerprint:
            raise SystemExit("error: the two runs were trained on different catalogues")
        if diff_model.config.kind != "diffgrm" or ar_model.config.kind != "ar":
            raise SystemExit("error: --runs takes a DiffGRM run, then an AR run")
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
    best, _ = best_of(floor_and_search(diff_model, ar_model, histories, batch, beam, TOPK), repeats)
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
        best, _ = best_of({"floor": floor_and_search(diff_model, ar_model, histories, batch, beam, TOPK)["floor"]}, repeats)
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


STAGES = {"run": run_stage}
