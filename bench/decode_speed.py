"""Decode speed, one way: users/s of ``Recommender.search`` on a fixed seeded sample of users.

    .venv/bin/python bench/decode_speed.py DIFFGRM_RUN [AR_RUN ...] [--split valid] [--users 2000]
                                           [--beams 32] [--steps 4 2 1] [--batch 32] [--threads 1]
                                           [--repeats 3] [--out FILE.json]

Every decode speed number (``bench/speed.py`` section 1b, ``bench/quality.py --passes``, the
README) comes from :func:`measure` (or its one-decoder form :func:`users_per_second`):

- **threads**: torch's intra-op threads are set with ``torch.set_num_threads`` (and numpy's BLAS
  with threadpoolctl) for the timing and restored after; default 1. Two OpenMP threads on this
  2-core machine ran 3-20x slower than one while other jobs ran, and unevenly (the cached AR, many
  small ops per step, suffered most), so a 2-thread number says more about the load than the code.
- **users**: a seeded sample (``train.subsample``, seed 0: the same users as ``quality.py
  --users``) of ``users`` users of one split (default valid, 2,000), in batches of ``batch_users``
  (default 32, what ``Recommender.evaluate`` uses), in user order. A few thousand users make the
  mean stable to a few per cent (the per-batch time varies by ~20% with history lengths); the
  first 64 test users, say, have 1.6x longer padded histories than the average batch.
- **what is timed**: the history encoder, the cross-attention keys/values and the search, batch by
  batch (``Recommender.search``); not the metrics. The catalogue index (``SIDIndex``, built by
  ``Recommender()``) is built before and timed apart (``index_seconds``); ``warmup_batches``
  batches run first, untimed in the result (``warmup_seconds``): they build the tables the
  decoders cache per index (CPD's matches, the AR's children table) and pay first-call costs.
- **repeats**: each repeat decodes the whole sample once; the decoders of one :func:`measure` call
  take turns within each repeat (so background load hits them alike), and a decoder's users/s is
  ``users / best repeat`` (load only ever adds time). The median, the spread (slowest / fastest
  repeat) and the load average before and after are kept so a disturbed measurement shows.
- **provenance**: every result names its split, sample, batch, beam, passes, threads, repeats,
  torch, CPUs, git commit (and whether the tree had changes) and time, and is never cached.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from diffgrm.data import Samples
from diffgrm.decode import Recommender
from diffgrm.errors import DiffGRMError
from diffgrm.model import ARGenerator, GenerativeRecommender
from diffgrm.prepare import Prepared, load_prepared
from diffgrm.train import load_run, subsample

METHOD = ("Recommender.search (encoder + cross-attention keys/values + search), batch by batch over a seeded "
          "sample; index built before timing; warm-up batches untimed; users / best repeat; decoders interleaved")
_INDEX_SECONDS: "weakref.WeakKeyDictionary[Recommender, float]" = weakref.WeakKeyDictionary()
"""Seconds each Recommender built here took to build its catalogue index (``SIDIndex``)."""
INCLUDES = {"history_encoder": True, "search": True, "index_build": False,
            "warmup_and_lazy_tables": False, "metrics": False}


def pass_counts(n: int) -> list[int]:
    """The pass counts a speed/quality curve compares: n (one digit per pass), n/2 and 1."""
    return sorted({n, max(1, n // 2), 1}, reverse=True)


def _git() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "diffgrm"], cwd=ROOT,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return {"commit": commit or None, "diffgrm_changed": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "diffgrm_changed": None}


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def sample_histories(prepared: Prepared | str | Path, split: str = "valid", users: int = 2000,
                     seed: int = 0) -> list[np.ndarray]:
    """The histories of the seeded sample of ``users`` users of ``split`` (all where fewer)."""
    if not isinstance(prepared, Prepared):
        prepared = load_prepared(prepared)
    if split not in prepared.splits:
        raise DiffGRMError(f"no split {split!r} (have {', '.join(prepared.splits)})")
    samples: Samples = subsample(prepared.splits[split], users, seed=seed)
    return list(samples.histories)


def _recommender(run_or_model, data=None) -> tuple[Recommender, float | None, Prepared | None]:
    """(Recommender, seconds to build its index or None when given one, the run's prepared data)."""
    prepared = None
    if isinstance(run_or_model, Recommender):
        return run_or_model, None, None
    if isinstance(run_or_model, (str, Path)):
        data_path = data if isinstance(data, (str, Path)) else (data.path if isinstance(data, Prepared) else None)
        run_or_model, loaded, _ = load_run(run_or_model, data=data_path, device="cpu")
        prepared = data if isinstance(data, Prepared) else loaded
    if not isinstance(run_or_model, GenerativeRecommender):
        raise DiffGRMError(f"expected a run folder, a model or a Recommender, got {type(run_or_model).__name__}")
    t0 = time.perf_counter()
    rec = Recommender(run_or_model)
    _INDEX_SECONDS[rec] = seconds = time.perf_counter() - t0
    return rec, seconds, prepared


def measure(decoders: Mapping[str, tuple], histories: Sequence[np.ndarray], *, beam: int = 32, topk: int = 10,
            batch_users: int = 32, threads: int = 1, warmup_batches: int = 1, repeats: int = 3,
            sample: Mapping | None = None) -> dict[str, dict]:
    """Users/s of several decoders on the same ``histories``, taking turns within each repeat.

    ``decoders``: label -> ``(recommender, steps)`` or ``(recommender, steps, kv_cache)``, with
    ``steps`` the network passes (DiffGRM: 1..n or None for n; AR: None or n). ``sample``: what to
    record about where the histories came from (split, seed). Returns label -> result (see
    :func:`users_per_second`)."""
    if not decoders:
        raise DiffGRMError("measure needs at least one decoder")
    if threads < 1 or repeats < 1 or warmup_batches < 0 or batch_users < 1 or beam < 1 or topk < 1:
        raise DiffGRMError("threads, repeats, batch_users, beam and topk must be at least 1, warmup_batches at least 0")
    if len(histories) == 0:
        raise DiffGRMError("no users to decode")
    histories = list(histories)
    batches = [histories[s : s + batch_users] for s in range(0, len(histories), batch_users)]
    plans = {}
    for label, spec in decoders.items():
        rec, steps, kv_cache = (*spec, True) if len(spec) == 2 else spec
        n = rec.model.config.n_digits
        is_ar = isinstance(rec.model, ARGenerator)
        if is_ar and steps not in (None, n):
            raise DiffGRMError(f"{label}: the AR decoder takes n = {n} passes, not {steps}")
        if not is_ar and steps is not None and not 1 <= steps <= n:
            raise DiffGRMError(f"{label}: steps must be in 1..{n}, got {steps}")
        kw = {"beam": beam, "topk": topk}
        if is_ar:
            kw["kv_cache"] = kv_cache
        else:
            kw["passes"] = steps
        plans[label] = (rec, kw, n if steps is None else steps, is_ar, kv_cache)

    def run(rec: Recommender, kw: dict, part: list) -> float:
        t0 = time.perf_counter()
        for chunk in part:
            res = rec.search(chunk, **kw)
            res.items.cpu().numpy()  # what evaluate reads back
        return time.perf_counter() - t0

    old_threads = torch.get_num_threads()
    load_before = _load()
    warm, times = {}, {label: [] for label in plans}
    try:
        torch.set_num_threads(threads)
        with threadpool_limits(limits=threads):
            used_threads = torch.get_num_threads()
            for label, (rec, kw, *_rest) in plans.items():
                warm[label] = run(rec, kw, batches[:warmup_batches])
            for _ in range(repeats):
                for label, (rec, kw, *_rest) in plans.items():
                    times[label].append(run(rec, kw, batches))
    finally:
        torch.set_num_threads(old_threads)
    load_after = _load()
    lengths = np.array([len(h) for h in histories])
    common = {
        "users": len(histories),
        "batch_users": batch_users,
        "batches": len(batches),
        "beam": beam,
        "topk": topk,
        "threads": used_threads,
        "repeats": repeats,
        "warmup_batches": min(warmup_batches, len(batches)),
        **dict(sample or {}),
        "history_mean": float(lengths.mean()),
        "method": METHOD,
        "includes": dict(INCLUDES),
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
                    "loadavg_before": load_before, "loadavg_after": load_after},
        "code": _git(),
        "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    out = {}
    for label, (rec, kw, passes, is_ar, kv_cache) in plans.items():
        ts = times[label]
        best = min(ts)
        max_len = rec.model.config.max_history
        padded = [min(max(len(h) for h in b), max_len) for b in batches]
        out[label] = {
            "decoder": label,
            "model": rec.kind,
            "steps": passes,
            "kv_cache": kv_cache if is_ar else None,
            "users_per_s": len(histories) / best,
            "seconds": best,
            "seconds_median": statistics.median(ts),
            "seconds_all": ts,
            "spread": max(ts) / best,
            "warmup_seconds": warm[label],
            "index_seconds": _INDEX_SECONDS.get(rec),
            **common,
            "padded_history_mean": float(np.mean(padded)),
        }
    return out


def users_per_second(run_or_model, prepared: Prepared | str | Path | None = None, *, split: str = "valid",
                     users: int = 2000, beam: int = 32, steps: int | None = None, topk: int = 10,
                     batch_users: int = 32, threads: int = 1, warmup_batches: int = 1, repeats: int = 3,
                     seed: int = 0, kv_cache: bool = True, histories: Sequence[np.ndarray] | None = None) -> dict:
    """Users/s of one decoder: ``run_or_model`` is a run folder (``train.load_run``), a model or a
    ``Recommender``; the users are the seeded sample of ``users`` users of ``prepared``'s ``split``
    (the run's own data when ``prepared`` is None), or ``histories`` when given.

    The result holds ``users_per_s`` (users / best repeat), ``seconds`` (best), ``seconds_median``,
    ``seconds_all``, ``spread``, ``warmup_seconds``, ``index_seconds`` (None when given a
    Recommender), ``model`` (diffgrm | ar), ``steps`` (network passes), ``beam``, ``topk``,
    ``threads``, ``batch_users``, ``users``, ``split``, ``seed``, ``history_mean``,
    ``padded_history_mean``, ``includes`` (what the time holds), ``machine``, ``code``, ``when``."""
    rec, _, run_prepared = _recommender(run_or_model, prepared)
    sample = {"split": None, "seed": None}
    if histories is None:
        source = prepared if prepared is not None else run_prepared
        if source is None:
            raise DiffGRMError("pass the prepared data (or histories) with a model or Recommender")
        histories = sample_histories(source, split, users, seed)
        sample = {"split": split, "seed": seed}
    label = f"{'AR' if rec.kind == 'ar' else 'DiffGRM'} S={steps or rec.model.config.n_digits}"
    return measure({label: (rec, steps, kv_cache)}, histories, beam=beam, topk=topk, batch_users=batch_users,
                   threads=threads, warmup_batches=warmup_batches, repeats=repeats, sample=sample)[label]


def recommenders(runs: Sequence[str | Path], data: str | Path | None = None
                 ) -> tuple[list[Recommender], Prepared]:
    """A Recommender per run (index build timed) and the first run's prepared data; the runs must
    share a catalogue."""
    recs, prepared = [], None
    for run in runs:
        rec, _, run_prepared = _recommender(run, data)
        if prepared is None:
            prepared = run_prepared
        elif run_prepared.catalogue.fingerprint != prepared.catalogue.fingerprint:
            raise DiffGRMError(f"{run} was trained on another catalogue than {runs[0]}")
        recs.append(rec)
    return recs, prepared


def decoder_specs(recs: Sequence[Recommender], steps: Sequence[int] | None = None) -> dict[str, tuple]:
    """Label -> (recommender, steps): each DiffGRM run at every pass count of ``steps`` (default
    n, n/2 and 1), each AR run (cached) at n."""
    specs = {}
    for i, rec in enumerate(recs):
        n = rec.model.config.n_digits
        tag = f" #{i + 1}" if len(recs) > 1 and sum(r.kind == rec.kind for r in recs) > 1 else ""
        if rec.kind == "ar":
            specs[f"AR (cached){tag}"] = (rec, None)
        else:
            for s in steps or pass_counts(n):
                specs[f"DiffGRM (CPD) S={s}{tag}"] = (rec, s)
    return specs


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="trained runs on one catalogue (DiffGRM and/or AR)")
    ap.add_argument("--data", default=None, help="prepared folder (default: the first run's)")
    ap.add_argument("--split", default="valid", choices=["train", "valid", "test"])
    ap.add_argument("--users", type=int, default=2000, help="seeded sample size (0 = the whole split)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--beams", type=int, nargs="+", default=[32])
    ap.add_argument("--steps", type=int, nargs="+", default=None, help="DiffGRM pass counts (default n, n/2, 1)")
    ap.add_argument("--batch", type=int, default=32, help="users per batch")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up batches")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    recs, prepared = recommenders(args.runs, args.data)
    histories = sample_histories(prepared, args.split, args.users, args.seed)
    specs = decoder_specs(recs, args.steps)
    results = []
    for beam in args.beams:
        found = measure(specs, histories, beam=beam, batch_users=args.batch, threads=args.threads,
                        warmup_batches=args.warmup, repeats=args.repeats,
                        sample={"split": args.split, "seed": args.seed})
        results += list(found.values())
    first = results[0]
    print(f"{len(histories):,} {args.split} users (seed {args.seed}), batches of {args.batch}, "
          f"{first['threads']} thread(s), best of {args.repeats} after {args.warmup} warm-up batch(es); "
          f"load {first['machine']['loadavg_before']} -> {results[-1]['machine']['loadavg_after']}\n")
    print("| beam | decoder | passes | users/s | median users/s | spread | index s | warm-up s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        idx = "-" if r["index_seconds"] is None else f"{r['index_seconds']:.2f}"
        print(f"| {r['beam']} | {r['decoder']} | {r['steps']} | {r['users_per_s']:,.0f} | "
              f"{r['users'] / r['seconds_median']:,.0f} | {r['spread']:.2f} | {idx} | {r['warmup_seconds']:.2f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"runs": [str(r) for r in args.runs], "results": results}, indent=2))
    return {"results": results}


if __name__ == "__main__":
    main()
