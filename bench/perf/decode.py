"""Decode speed, one way: users/s of ``Recommender.search`` on a fixed seeded sample of users.

    python -m bench decode-speed run DIFFGRM_RUN [AR_RUN ...] [--split valid] [--users 2000] [--beams 32]
                                     [--passes 4 2 1] [--batch 32] [--threads 1] [--repeats 3] [--out FILE.json]

Every decode speed number (``python -m bench speed`` sections 1 and 1b, ``passes``, ``long-sids``,
``gpu``, the README) comes from :func:`measure` (or its one-decoder form :func:`users_per_second`),
and every timing of the speed benchmarks from its timer, :func:`take_turns`:

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
import statistics
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from bench.common import commit, loadavg, machine

from diffgrm.cpd import cpd_search
from diffgrm.data import Samples
from diffgrm.decode import Recommender, pad_histories
from diffgrm.errors import DiffGRMError
from diffgrm.model import MASK, ARGenerator, GenerativeRecommender
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


def take_turns(fns: Mapping[str, Callable[[], object]], repeats: int,
               warmups: Mapping[str, Callable[[], object]] | None = None) -> tuple[dict[str, list[float]], dict[str, float]]:
    """The benchmarks' one timer: each function's warm-up (``warmups[name]``, else the function itself)
    once, untimed in the result, then ``repeats`` rounds calling the functions in turn, so that
    background load hits them alike. Returns (seconds of every round, seconds of the warm-up)."""
    warm, times = {}, {name: [] for name in fns}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        (warmups or {}).get(name, fn)()
        warm[name] = time.perf_counter() - t0
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times, warm


def best_of(fns: Mapping[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """(best, first call) seconds of each function, timed by :func:`take_turns`."""
    times, warm = take_turns(fns, repeats)
    return {name: min(ts) for name, ts in times.items()}, warm


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

    ``decoders``: label -> ``(recommender, passes)`` or ``(recommender, passes, kv_cache)``, with
    ``passes`` the network passes (DiffGRM: 1..n or None for n; AR: None or n). ``sample``: what to
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
        rec, passes, kv_cache = (*spec, True) if len(spec) == 2 else spec
        n = rec.model.config.n_digits
        is_ar = isinstance(rec.model, ARGenerator)
        if is_ar and passes not in (None, n):
            raise DiffGRMError(f"{label}: the AR decoder takes n = {n} passes, not {passes}")
        if not is_ar and passes is not None and not 1 <= passes <= n:
            raise DiffGRMError(f"{label}: passes must be in 1..{n}, got {passes}")
        kw = {"beam": beam, "topk": topk}
        if is_ar:
            kw["kv_cache"] = kv_cache
        else:
            kw["passes"] = passes
        plans[label] = (rec, kw, n if passes is None else passes, is_ar, kv_cache)

    def run(rec: Recommender, kw: dict, part: list) -> Callable[[], None]:
        def decode() -> None:
            for chunk in part:
                rec.search(chunk, **kw).items.cpu().numpy()  # what evaluate reads back
        return decode

    old_threads = torch.get_num_threads()
    load_before = loadavg()
    try:
        torch.set_num_threads(threads)
        with threadpool_limits(limits=threads):
            used_threads = torch.get_num_threads()
            times, warm = take_turns({label: run(rec, kw, batches) for label, (rec, kw, *_) in plans.items()}, repeats,
                                     {label: run(rec, kw, batches[:warmup_batches]) for label, (rec, kw, *_) in plans.items()})
    finally:
        torch.set_num_threads(old_threads)
    load_after = loadavg()
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
        "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": load_after},
        "code": commit(),
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
            "steps": passes,  # the JSON key the committed results use
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


def floor_and_search(diff_model, ar_model, histories: list[np.ndarray], batch: int, beam: int,
                     topk: int = 10) -> dict[str, Callable[[], object]]:
    """The four timed ways of producing (or bounding) Top-K for ``histories``, batch by batch, as
    functions for :func:`take_turns`: ``floor`` (``n_digits`` plain denoiser passes over ``batch x
    beam`` rows with the encoder output cached: exactly the network call a CPD step makes, at full
    beam every time), ``cpd_search`` (the search with the encoder cached), ``cpd`` and ``ar`` (end to
    end, ``Recommender.search``)."""
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
                return diff_model.denoise_masked(tokens, kv, keep).log_softmax(-1)

            cpd_search(logprob_fn, index, rows.shape[0], beam=beam, topk=topk, masked_only=True)

    return {
        "floor": floor,
        "cpd_search": cpd_only,
        "cpd": lambda: [diff_rec.search(c, beam=beam, topk=topk) for c in chunks],
        "ar": lambda: [ar_rec.search(c, beam=beam, topk=topk) for c in chunks],
    }


def users_per_second(run_or_model, prepared: Prepared | str | Path | None = None, *, split: str = "valid",
                     users: int = 2000, beam: int = 32, passes: int | None = None, topk: int = 10,
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
    label = f"{'AR' if rec.kind == 'ar' else 'DiffGRM'} S={passes or rec.model.config.n_digits}"
    return measure({label: (rec, passes, kv_cache)}, histories, beam=beam, topk=topk, batch_users=batch_users,
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


def decoder_specs(recs: Sequence[Recommender], passes: Sequence[int] | None = None) -> dict[str, tuple]:
    """Label -> (recommender, passes): each DiffGRM run at every pass count of ``passes`` (default
    n, n/2 and 1), each AR run (cached) at n."""
    specs = {}
    for i, rec in enumerate(recs):
        n = rec.model.config.n_digits
        tag = f" #{i + 1}" if len(recs) > 1 and sum(r.kind == rec.kind for r in recs) > 1 else ""
        if rec.kind == "ar":
            specs[f"AR (cached){tag}"] = (rec, None)
        else:
            for s in passes or pass_counts(n):
                specs[f"DiffGRM (CPD) S={s}{tag}"] = (rec, s)
    return specs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", help="trained runs on one catalogue (DiffGRM and/or AR)")
    p.add_argument("--data", default=None, help="prepared folder (default: the first run's)")
    p.add_argument("--split", default="valid", choices=["train", "valid", "test"])
    p.add_argument("--users", type=int, default=2000, help="seeded sample size (0 = the whole split)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--beams", type=int, nargs="+", default=[32])
    p.add_argument("--passes", type=int, nargs="+", default=None, help="DiffGRM pass counts (default n, n/2, 1)")
    p.add_argument("--batch", type=int, default=32, help="users per batch")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up batches")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="write the results as JSON here")


def run_stage(args: argparse.Namespace) -> dict:
    if not args.runs:
        raise SystemExit("error: name at least one trained run")
    recs, prepared = recommenders(args.runs, args.data)
    histories = sample_histories(prepared, args.split, args.users, args.seed)
    specs = decoder_specs(recs, args.passes)
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


STAGES = {"run": run_stage}
