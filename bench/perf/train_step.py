"""Where a training step's time goes at the `cpu` preset, and what makes it faster.

    python -m bench train-step run                 # profile + the options table (a few minutes)
    python -m bench train-step run --quick         # smoke run

One optimiser step of DiffGRM with OCN (and of the AR decoder) on batches of 256 real Beauty-like
histories (lengths drawn from the prepared folder when given, else 1-50 skewed short like Amazon
5-core), untrained `cpu`-preset networks, a synthetic one-to-one catalogue of 12,101 items x 4 x 256.
It prints the top operators of a torch.profiler run and a table of samples/s, best of
``--repeats`` timed rounds after warm-up, for:

  eager          the library's step (``train.make_step``), fp32
  torch-dropout  the same with torch's own dropout mask instead of ``model.Dropout``'s cheaper one
  all-slots      the same with the last decoder layer computing every slot of every view, not
                 only the masked ones that carry the loss
  compile        the loss through ``torch.compile(dynamic=True)`` (not offered by the library:
                 slower here)
  bf16           bf16 autocast (``TrainConfig.precision``)
  1thread        eager on one thread

and writes ``bench/results/train_step.json``. Here too: section 2 of ``python -m bench speed``
(:func:`bench_train`: samples/s of whole ``train`` calls for DiffGRM with OCN and random masking and
for AR, and the padding that length-sorted batches save) and :func:`step_rate`, the samples/s of
one run's steps that ``python -m bench long-sids train-speed`` turns into minutes per epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench.common import RESULTS_DIR
from bench.perf.synthetic import CODEBOOK, N_DIGITS, random_catalogue, size, synthetic_prepared, table
from diffgrm import ocn
from diffgrm.config import preset
from diffgrm.decode import pad_histories
from diffgrm.model import Dropout, build_model
from diffgrm.ocn import NESTED, ocn_loss
from diffgrm.prepare import Prepared
from diffgrm.train import ar_loss, length_batches, make_step, train, training_samples


def history_lengths(data: str | None, n: int, rng: np.random.Generator) -> np.ndarray:
    if data:
        from diffgrm.prepare import load_prepared

        lengths = np.array([len(h) for h in load_prepared(data).splits["train"].histories])
        return rng.choice(lengths, n)
    return np.minimum(1 + rng.geometric(0.12, n), 50)


def batches(lengths: np.ndarray, batch: int, n_items: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """Batches of similar length, as ``train.length_batches`` makes them."""
    order = np.argsort(lengths, kind="stable")
    out = []
    for s in range(0, len(order) - batch + 1, batch):
        idx = order[s : s + batch]
        out.append(pad_histories([rng.integers(0, n_items, lengths[i]) for i in idx], 50))
    return [out[i] for i in rng.permutation(len(out))]


def compiled_step(model, cfg, opt, gen):
    """``make_step``'s work with the loss compiled: what ``compile`` measures."""
    def loss_fn(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if model.config.kind == "diffgrm":
            return ocn_loss(model, h, t, strategy=cfg.noising, label_smoothing=cfg.label_smoothing, generator=gen)
        return ar_loss(model, h, t, cfg.label_smoothing)

    compiled = torch.compile(loss_fn, dynamic=True)

    def step(h: torch.Tensor, t: torch.Tensor) -> float:
        loss = compiled(h, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        return float(loss.detach())

    return step


def make_option(kind: str, codes: torch.Tensor, option: str):
    """A ready step function for one option, and the settings it must run under."""
    model_cfg, cfg = preset("cpu", kind=kind)
    cfg = replace(cfg, precision="bf16" if option == "bf16" else "fp32")
    torch.manual_seed(0)
    model = build_model(model_cfg, codes).train()
    if option == "torch-dropout":
        for m in model.modules():
            if isinstance(m, Dropout):
                m.forward = torch.nn.Dropout.forward.__get__(m)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    step = compiled_step(model, cfg, opt, gen) if option == "compile" else make_step(model, cfg, opt, gen)
    return step, {"nested": () if option == "all-slots" else NESTED, "threads": 1 if option == "1thread" else None}


def time_options(kind: str, codes: torch.Tensor, hist: list[torch.Tensor], targets: list[torch.Tensor],
                 steps: int, repeats: int, options: list[str], threads: int) -> dict[str, float]:
    """Samples/s of each option, best of ``repeats`` rounds; the options take turns within each
    round, so a machine that speeds up or slows down during the run affects them alike."""
    made, best = {}, {}
    for option in options:
        try:
            made[option] = make_option(kind, codes, option)
        except Exception as e:  # an option this machine cannot run is reported, not fatal
            print(f"{kind} {option}: failed ({type(e).__name__}: {str(e)[:200]})", file=sys.stderr)
            best[option] = float("nan")

    def run(option: str, batches: range) -> float:
        step, env = made[option]
        ocn.NESTED = env["nested"]
        torch.set_num_threads(env["threads"] or threads)
        t0 = time.perf_counter()
        for i in batches:
            step(hist[i % len(hist)], targets[i % len(hist)])
        return time.perf_counter() - t0

    for option in made:  # warm-up (and compilation)
        run(option, range(3))
    for r in range(repeats):
        for option in made:
            seconds = run(option, range(3 + r * steps, 3 + (r + 1) * steps))
            best[option] = min(best.get(option, float("inf")), seconds)
    ocn.NESTED = NESTED
    torch.set_num_threads(threads)
    return {o: (steps * hist[0].shape[0] / t if t == t else t) for o, t in best.items()}


def profile(kind: str, codes: torch.Tensor, hist: list[torch.Tensor], targets: list[torch.Tensor], steps: int) -> str:
    model_cfg, cfg = preset("cpu", kind=kind)
    model = build_model(model_cfg, codes).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)

    def one(i: int) -> None:
        loss = (ocn_loss(model, hist[i], targets[i], label_smoothing=0.2, generator=gen) if kind == "diffgrm"
                else ar_loss(model, hist[i], targets[i], 0.2))
        opt.zero_grad()
        loss.backward()
        opt.step()

    one(0)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for i in range(1, steps + 1):
            one(i % len(hist))
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18)


def step_rate(prepared: Prepared, model_cfg, cfg, n_steps: int, threads: int) -> tuple[float, int, int]:
    """(samples/s, steps timed, samples per epoch) of ``make_step`` on a run's own length-sorted batches:
    two warm-up steps, then ``n_steps`` timed one by one."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cat = prepared.catalogue
    model = build_model(model_cfg, torch.from_numpy(cat.codes)).train()
    step = make_step(model, cfg, torch.optim.AdamW(model.parameters(), lr=cfg.lr), torch.Generator().manual_seed(0))
    data = training_samples(prepared, cfg.min_history)
    lengths = np.minimum([len(h) for h in data.histories], model_cfg.max_history)
    order = length_batches(lengths, cfg.batch_size, np.random.default_rng(0))
    codes = torch.from_numpy(cat.codes)
    times, seen = [], 0
    for i in range(n_steps + 2):
        idx = order[i % len(order)]
        hist = pad_histories([data.histories[j] for j in idx], model_cfg.max_history)
        t0 = time.perf_counter()
        step(hist, codes[torch.from_numpy(data.targets[idx])])
        if i >= 2:
            times.append(time.perf_counter() - t0)
            seen += len(idx)
    return seen / sum(times), len(times), len(data)


# --------------------------------------------------------------------------- section 2 of the speed benchmark


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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, help="prepared folder whose training history lengths to use")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--options", nargs="+", default=["eager", "torch-dropout", "all-slots", "compile", "1thread"],
                   choices=["eager", "torch-dropout", "all-slots", "compile", "bf16", "1thread"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(RESULTS_DIR / "train_step.json"))


def run_stage(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(0)
    batch = 32 if args.quick else 256
    steps, repeats = (2, 1) if args.quick else (args.steps, args.repeats)
    n_items = 1000 if args.quick else 12_101
    codes = torch.from_numpy(np.stack([rng.permutation(n_items) % 256, rng.integers(0, 256, n_items),
                                       rng.integers(0, 256, n_items), rng.integers(0, 256, n_items)], 1))
    n_batches = 3 + steps * repeats
    hist = batches(history_lengths(args.data, batch * n_batches, rng), batch, n_items, rng)
    targets = [codes[torch.from_numpy(rng.integers(0, n_items, batch))] for _ in hist]
    threads = torch.get_num_threads()
    rows = {}
    if not args.quick:
        print(profile("diffgrm", codes, hist, targets, 5))
    for kind in ("diffgrm", "ar"):
        for opt, sps in time_options(kind, codes, hist, targets, steps, repeats, args.options, threads).items():
            rows[f"{kind} {opt}"] = round(sps, 1)
            print(f"{kind:8s} {opt:14s} {sps:8.1f} samples/s", flush=True)
    result = {"batch": batch, "threads": threads, "samples_per_second": rows, "torch": torch.__version__}
    if not args.quick:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


STAGES = {"run": run_stage}
