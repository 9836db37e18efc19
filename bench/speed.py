"""Speed: decoding, training, the tokenizer, and how decoding and training scale.

    .venv/bin/python bench/speed.py [--quick] [--out bench/results/speed.json] [--threads 1]
                                    [--repeats R] [--sections decode,train,tokenizer,scaling]
                                    [--runs DIFFGRM_RUN AR_RUN]

Prints one markdown table per section and writes every number to a JSON file (default
``bench/results/speed.json``). ``--quick`` runs tiny sizes in well under a minute (a smoke test of
the script); the full mode takes about two minutes on an otherwise idle 2-core CPU.

1. **Decode**: CPD (DiffGRM) and the AR trie beam at the same beam and K on the same users, in
   users/s, against the *floor*: ``n_digits`` plain passes of the denoiser over ``batch x beam``
   rows with the encoder output cached (exactly the network call a CPD step makes, at full beam
   every time). CPD is timed end to end (``Recommender.search``: encoder + search) and search only
   (``cpd_search`` with the encoder output cached, like the floor). Targets: CPD within 1.5x of
   the floor, and CPD no slower than AR.
1b. **Passes**: users/s of CPD at S = n, n/2 and 1 network passes (``--steps``) and of the AR
   decoder with its key/value cache (and without it, for reference) at beams 32 and 256, with the
   n-pass floor beside them, all timed by ``bench/decode_speed.py`` (the one decode-speed method:
   one untimed warm-up batch, best of ``--repeats``, decoders taking turns). Targets: CPD at S = n/2
   faster than the cached AR at the same beam; CPD at S = n within 1.5x of its floor. Its quality
   twin is ``bench/quality.py --passes``; figures for the README come from ``bench/decode_speed.py``
   itself on 2,000 users (this section's 64 are a quick look).
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
(``decode_speed.sample_histories``, the users ``quality.py --passes`` times).

Timing: torch, faiss and numpy's BLAS use ``--threads`` threads (default 1: less noise from
whatever else runs on the machine). Every time is the best of ``--repeats`` rounds after a warm-up
round, and the methods compared in one table are timed in turn within each round, so background
load hits them alike. Compare ratios, not absolute times, across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits  # comes with scikit-learn, a sentence-transformers dependency

from diffgrm.config import TokenizerConfig, preset
from diffgrm.cpd import cpd_search
from diffgrm.data import Samples
from diffgrm.decode import Recommender, pad_histories
from diffgrm.model import MASK, build_model
from diffgrm.prepare import Prepared
from diffgrm.pse import Catalogue, PSETokenizer, build_catalogue
from diffgrm.train import length_batches, load_run, train

from bench.decode_speed import measure, pass_counts, sample_histories

SECTIONS = ("decode", "passes", "train", "tokenizer", "scaling")
N_DIGITS, CODEBOOK = 4, 256
TOPK = 10
CPD_FLOOR_TARGET = 1.5

# sizes: (full, quick)
SIZES = {
    "decode_items": (10_000, 1_000),
    "decode_users": (128, 8),
    "decode_batch": (32, 8),
    "decode_beam": (32, 16),
    "train_items": (10_000, 1_000),
    "train_steps": (12, 2),
    "train_batch": (256, 32),
    "embed_texts": (1_000, 16),
    "fit_items": (12_000, 512),
    "fit_codebook": (256, 16),
    "scale_items": ((1_000, 10_000, 100_000), (1_000,)),
    "scale_beams": ((16, 32, 64, 128), (16, 32)),
    "scale_users": (32, 4),
    "scale_steps": (6, 2),
    "passes_users": (64, 8),
    "passes_batch": (32, 8),
    "passes_beams": ((32, 256), (16, 32)),
    "repeats": (3, 1),
}


# --------------------------------------------------------------------------- synthetic data


def random_catalogue(n_items: int, rng: np.random.Generator) -> np.ndarray:
    """``n_items`` distinct random SIDs, ``[n_items, 4]`` in 0..255 (one-to-one)."""
    flat = rng.choice(CODEBOOK**N_DIGITS, size=n_items, replace=False)
    return np.stack([(flat // CODEBOOK**d) % CODEBOOK for d in range(N_DIGITS)], axis=1).astype(np.int64)


def random_histories(n: int, n_items: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Histories of 8-20 random items, oldest first."""
    return [rng.integers(0, n_items, size=int(rng.integers(8, 21))) for _ in range(n)]


def synthetic_prepared(codes: np.ndarray, n_train: int, rng: np.random.Generator) -> Prepared:
    """A prepared dataset in memory: random training samples, a few validation users."""
    n_items = len(codes)

    def samples(n: int) -> Samples:
        return Samples(random_histories(n, n_items, rng), rng.integers(0, n_items, size=n), np.arange(n))

    items = pd.DataFrame({"item_id": [f"I{i}" for i in range(n_items)], "title": "", "text": ""})
    return Prepared(
        path=Path(tempfile.gettempdir()),
        items=items,
        splits={"train": samples(n_train), "valid": samples(8), "test": samples(8)},
        users=[f"U{u}" for u in range(n_train)],
        catalogue=Catalogue(codes, codes, CODEBOOK),
        embeddings=np.zeros((n_items, 1), dtype=np.float32),
        report={},
    )


def untrained(kind: str, codes: np.ndarray, seed: int = 0):
    torch.manual_seed(seed)
    model_cfg, _ = preset("cpu", kind=kind, n_digits=N_DIGITS, codebook_size=CODEBOOK)
    return build_model(model_cfg, torch.from_numpy(codes)).eval()


# --------------------------------------------------------------------------- timing


def best_of(fns: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """(best, first) wall seconds of each function: one warm-up round (its times are "first"), then
    ``repeats`` rounds calling the functions in turn."""
    first, runs = {}, {name: [] for name in fns}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - t0
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - t0)
    return {name: min(ts) for name, ts in runs.items()}, first


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


def table(headers: list[str], rows: list[list[object]]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, bool):
            return "yes" if v else "**no**"
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def size(name: str, quick: bool):
    return SIZES[name][1 if quick else 0]


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


# --------------------------------------------------------------------------- 2. train


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


# --------------------------------------------------------------------------- 3. tokenizer

WORDS = [
    "matte",
    "red",
    "lipstick",
    "long",
    "lasting",
    "shampoo",
    "for",
    "dry",
    "hair",
    "nail",
    "polish",
    "gel",
    "top",
    "coat",
    "sunscreen",
    "spf",
    "50",
    "eyeliner",
    "waterproof",
    "black",
    "brown",
    "serum",
    "vitamin",
    "face",
    "cream",
    "night",
    "moisturizer",
    "organic",
    "oil",
    "argan",
    "perfume",
    "eau",
    "de",
    "parfum",
    "spray",
    "women",
    "men",
    "travel",
    "size",
    "pack",
    "mascara",
    "volume",
    "curl",
    "brush",
    "set",
    "kit",
    "foundation",
    "liquid",
    "powder",
    "blush",
    "palette",
    "shimmer",
    "glow",
    "cleanser",
    "gentle",
    "foam",
    "scrub",
    "exfoliating",
    "mask",
    "clay",
    "charcoal",
    "toner",
    "rose",
    "water",
    "lotion",
    "body",
    "butter",
    "shea",
    "cocoa",
    "coconut",
    "lip",
    "balm",
    "tinted",
]


STAGES = {"opq": "whitened PCA + rotation + k-means", "pq": "whitened PCA + k-means"}


def random_texts(n: int, rng: np.random.Generator) -> list[str]:
    """Item texts in the PSE template, about 20-40 words each, all distinct."""
    out = []
    for i in range(n):
        title = " ".join(rng.choice(WORDS, size=int(rng.integers(4, 10))))
        cats = ", ".join(rng.choice(WORDS, size=3))
        desc = " ".join(rng.choice(WORDS, size=int(rng.integers(10, 25))))
        out.append(f"Title: {title} {i}. Brand: {rng.choice(WORDS)}. Category: Beauty, {cats}. Description: {desc}.")
    return out


def bench_tokenizer(args, rng: np.random.Generator) -> tuple[dict, str]:
    from diffgrm.text import embed_texts

    q = args.quick
    n_texts = size("embed_texts", q)
    embed_texts(random_texts(2, rng), cache=False, progress=False)  # warm-up: first use of the encoder files
    t0 = time.perf_counter()
    embed_texts(random_texts(1, rng), cache=False, progress=False)
    load = time.perf_counter() - t0
    texts = random_texts(n_texts, rng)
    t0 = time.perf_counter()
    emb = embed_texts(texts, cache=False, progress=False)
    total = time.perf_counter() - t0
    embedding = {
        "items": n_texts,
        "dim": int(emb.shape[1]),
        "seconds": total,
        "load_seconds": load,
        "items_per_s": n_texts / total,
        "items_per_s_after_load": n_texts / max(total - load, 1e-9),
    }

    n_items, codebook = size("fit_items", q), size("fit_codebook", q)
    x = rng.normal(size=(n_items, emb.shape[1])).astype(np.float32)
    fits = {}
    for method in ("opq", "pq"):
        tok = PSETokenizer(TokenizerConfig(method=method, n_digits=N_DIGITS, codebook_size=codebook, seed=0))
        t0 = time.perf_counter()
        tok.fit(x)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_catalogue(tok, x)  # fitted: assign every item its nearest codes, then repair collisions
        t_assign = time.perf_counter() - t0
        fits[method] = {
            "items": n_items,
            "codebook_size": codebook,
            "fit_seconds": t_fit,
            "fit_items_per_s": n_items / t_fit,
            "assign_seconds": t_assign,
            "assign_items_per_s": n_items / t_assign,
        }
    rows = [
        [
            f"embedding, {embedding['dim']}-d default encoder (incl. {load:.1f} s model load)",
            n_texts,
            total,
            n_texts / total,
        ],
        ["embedding, after the model load", n_texts, total - load, embedding["items_per_s_after_load"]],
    ]
    for method, f in fits.items():
        rows.append(
            [
                f"PSE fit, {method.upper()} {N_DIGITS} x {codebook} ({STAGES[method]})",
                n_items,
                f["fit_seconds"],
                f["fit_items_per_s"],
            ]
        )
        rows.append(
            [
                f"SIDs + collision repair ({method.upper()}, `build_catalogue`)",
                n_items,
                f["assign_seconds"],
                f["assign_items_per_s"],
            ]
        )
    text = "### 3. Tokenizer (random texts and embeddings)\n\n" + table(["step", "items", "seconds", "items/s"], rows)
    return {"embedding": embedding, "fit": fits}, text


# --------------------------------------------------------------------------- 4. scaling


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
        fns = decoders(diff_model, ar_model, histories, users, beam)
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
        fns = decoders(diff_model, ar_model, histories, users, b)
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


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one round: a smoke test (well under a minute)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "speed.json"), help="JSON file to write")
    ap.add_argument("--threads", type=int, default=1, help="torch, faiss and BLAS threads (default 1)")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds per measurement (default 3, quick 1)")
    ap.add_argument(
        "--runs", nargs=2, metavar=("DIFFGRM_RUN", "AR_RUN"), help="decode with two trained runs (sections 1, 1b)"
    )
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    if not sections or set(sections) - set(SECTIONS):
        ap.error(f"--sections takes names from {','.join(SECTIONS)}")
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
    t0 = time.perf_counter()
    results: dict = {
        "meta": {
            "quick": args.quick,
            "threads": args.threads,
            "repeats": args.repeats,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "device": "cpu",
        }
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


if __name__ == "__main__":
    main()
