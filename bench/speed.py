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

This file is the command line; each section lives in a sibling module (``speed_decode.py``: 1 and
1b, ``speed_train.py``: 2, ``speed_tokenizer.py``: 3, ``speed_scaling.py``: 4) and what they share
(sizes, synthetic models, the timer, the table) in ``speed_setup.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
from threadpoolctl import threadpool_limits  # comes with scikit-learn, a sentence-transformers dependency

from bench.speed_decode import bench_decode, bench_passes
from bench.speed_scaling import bench_scaling
from bench.speed_setup import size
from bench.speed_tokenizer import bench_tokenizer
from bench.speed_train import bench_train

SECTIONS = ("decode", "passes", "train", "tokenizer", "scaling")


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
