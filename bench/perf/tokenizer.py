"""Section 3 of ``python -m bench speed``: items/s of the sentence encoder, of the PSE fit (OPQ and PQ)
and of SID assignment with collision repair, on random texts and embeddings."""

from __future__ import annotations

import time

import numpy as np

from bench.perf.synthetic import N_DIGITS, size, table
from diffgrm.config import TokenizerConfig
from diffgrm.pse import PSETokenizer, build_catalogue

WORDS = """
matte red lipstick long lasting shampoo for dry hair nail polish gel top coat sunscreen spf 50
eyeliner waterproof black brown serum vitamin face cream night moisturizer organic oil argan perfume
eau de parfum spray women men travel size pack mascara volume curl brush set kit foundation liquid
powder blush palette shimmer glow cleanser gentle foam scrub exfoliating mask clay charcoal toner
rose water lotion body butter shea cocoa coconut lip balm tinted
""".split()
"""Words of the random item texts (beauty products, like Amazon Beauty)."""

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
