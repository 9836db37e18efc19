"""Scale: time and peak memory of prepare, a training epoch and decoding at 10k, 100k and 1M items,
and training samples/s in one process against two (torchrun).

    python -m bench scale run                           # 10k, 100k and 1M items
    python -m bench scale run --items 10000 100000      # some sizes
    python -m bench scale run --quick                   # 2,000 items, a few steps: a smoke run
    python -m bench scale table                         # the committed .md from its .json

Each size gets a synthetic dataset (``diffgrm synth``: clustered 64-d item vectors, the same
number of users at every size, so what grows is the catalogue) and three stages, each in its own
process (``python -m bench.perf.scale STAGE DATA OUT STEPS``) so that its peak memory (max RSS) is its own:

- prepare: ``diffgrm prepare`` with the folder's vectors (no sentence encoder), PSE fit on a
  sample of at most 200,000 items, every item encoded, collisions repaired;
- train: the ``cpu`` preset, one epoch capped at ``--steps`` steps of 256 samples, validated on
  200 users (the epoch's length is held fixed: a full epoch grows with the users, not the items);
- decode: ``Recommender.evaluate`` on 256 test users at beam 32 (the catalogue's validity masks
  and SID lookup built on first use, inside the timing).

Then, at the middle size, training samples/s of one process (2 threads) against two processes
under torchrun with gloo (1 thread each), on the same global batches. The table sets each
stage's growth against linear growth in items, peak memory at 1M items against a laptop's 8 GB,
and two processes' samples/s against one on this 2-core machine. Writes OUT.md and OUT.json (default
``bench/results/scale``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.common import RESULTS_DIR, ROOT, free_port, md_table, say
from bench.results_io import publish

RESULTS = ("scale",)
TARGET_GB = 8.0  # a laptop's memory, the reference the table sets the peak against


def run_stage(stage: str, data: str, out_dir: str, steps: int) -> dict:
    """One stage in this process; returns its seconds, peak memory and numbers."""
    args = argparse.Namespace(stage=stage, data=data, out=out_dir, steps=steps)
    t0 = time.perf_counter()
    out: dict = {}
    if args.stage == "prepare":
        from diffgrm.cli import main as cli

        if cli(["prepare", "--dataset", args.data, "--out", args.out, "--force", "--quiet"]) != 0:
            raise SystemExit(2)
        report = json.loads((Path(args.out) / "tokenizer_report.json").read_text())
        out = {"collisions_before": report["collision_rate_before"], "tokenizer_s": report["seconds"]["tokenizer"]}
    elif args.stage == "train":
        from dataclasses import replace

        from diffgrm.config import preset
        from diffgrm.prepare import load_prepared
        from diffgrm.train import train

        prepared = load_prepared(args.data)
        cat = prepared.catalogue
        model_cfg, cfg = preset("cpu", n_digits=cat.n_digits, codebook_size=cat.codebook_size)
        cfg = replace(cfg, epochs=1, max_steps=args.steps, eval_users=200, eval_beam=16, max_minutes=0)
        result = train(prepared, model_cfg, cfg, args.out, device="cpu", progress=False, force=True)
        out = {"samples_per_second": result.history[0]["samples_per_second"]}
    elif args.stage == "decode":
        from diffgrm.decode import Recommender
        from diffgrm.train import load_run, subsample

        model, prepared, _ = load_run(args.out, device="cpu")
        samples = subsample(prepared.splits["test"], 256, seed=0)
        t1 = time.perf_counter()
        Recommender(model).evaluate(samples, beam=32, progress=False)
        out = {"users_per_second": len(samples) / (time.perf_counter() - t1)}
    out.update(seconds=time.perf_counter() - t0, peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print("STAGE " + json.dumps(out), flush=True)
    return out


def stage(name: str, data: Path, out: Path, steps: int, threads: int = 2) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "bench.perf.scale", name, str(data), str(out), str(steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("STAGE ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"stage {name} on {data} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[6:])


def processes(data: Path, runs: Path, steps: int) -> dict:
    """Training samples/s: one process with 2 threads, two torchrun processes with 1 thread each."""
    script = runs / "train_one_epoch.py"
    script.write_text(
        "import sys\nfrom dataclasses import replace\nfrom diffgrm.config import preset\n"
        "from diffgrm.prepare import load_prepared\nfrom diffgrm.train import train\n"
        "p = load_prepared(sys.argv[1]); c = p.catalogue\n"
        "m, t = preset('cpu', n_digits=c.n_digits, codebook_size=c.codebook_size)\n"
        f"t = replace(t, epochs=1, max_steps={steps}, eval_users=200, eval_beam=16, max_minutes=0)\n"
        "train(p, m, t, sys.argv[2], device='cpu', progress=False, force=True)\n")
    results = {}
    for name, threads, launcher in (
        ("1 process, 2 threads", "2", []),
        ("2 processes, 1 thread each", "1", ["-m", "torch.distributed.run", "--nproc_per_node", "2",
                                              "--master_addr", "127.0.0.1", "--master_port", str(free_port())]),
    ):
        out = runs / ("procs-1" if not launcher else "procs-2")
        env = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, *launcher, str(script), str(data), str(out)], check=True, env=env,
                       capture_output=True)
        row = json.loads((out / "history.jsonl").read_text().splitlines()[0])
        results[name] = row["samples_per_second"]
    return results


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--items", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    p.add_argument("--users", type=int, default=20_000, help="users at every size")
    p.add_argument("--steps", type=int, default=60, help="training steps of the epoch")
    p.add_argument("--runs", default="runs/scale")
    p.add_argument("--out", default=None, help="OUT.md and OUT.json (default bench/results/scale)")
    p.add_argument("--quick", action="store_true")


def run(args: argparse.Namespace) -> dict:
    from diffgrm.synth import synthesize

    if args.quick:
        args.items, args.users, args.steps = [2000], 300, 3
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.items:
        raw, prep, run_dir = runs / f"synth-{n}", runs / f"prep-{n}", runs / f"run-{n}"
        t0 = time.perf_counter()
        synthesize(raw, n, args.users, seed=0, force=True, progress=False)
        row = {"items": n, "users": args.users, "synth_s": time.perf_counter() - t0}
        for name, folder, data in (("prepare", prep, raw), ("train", run_dir, prep), ("decode", run_dir, prep)):
            row[name] = stage(name, data, folder, args.steps)
            say(f"{n:,} items, {name}: {row[name]['seconds']:.1f} s, peak {row[name]['peak_mb']:,.0f} MB")
        rows.append(row)
    procs = processes(runs / f"prep-{args.items[len(args.items) // 2]}", runs, args.steps)
    peak = max(max(r[s]["peak_mb"] for s in ("prepare", "train", "decode")) for r in rows) / 1024
    payload = {"rows": rows, "processes": procs, "peak_gb": peak, "steps": args.steps}
    publish(args.out or RESULTS_DIR / "scale", payload, render, write=not args.quick)
    return payload


def render(payload: dict) -> str:
    rows, procs, peak = payload["rows"], payload["processes"], payload["peak_gb"]
    middle = rows[len(rows) // 2]["items"]
    lines = [f"Synthetic datasets (`diffgrm synth`, 64-d vectors, {rows[0]['users']:,} users at every size); "
             f"2-core CPU, `cpu` preset; seconds and peak memory (max RSS) of each stage's own process", ""]
    lines += md_table(["items", "prepare s", "prepare peak MB", "train s", "train samples/s", "train peak MB",
                       "decode users/s", "decode peak MB"], [
        [f"{r['items']:,}", f"{r['prepare']['seconds']:.1f}", f"{r['prepare']['peak_mb']:,.0f}",
         f"{r['train']['seconds']:.1f}", f"{r['train']['samples_per_second']:,.0f}", f"{r['train']['peak_mb']:,.0f}",
         f"{r['decode']['users_per_second']:,.1f}", f"{r['decode']['peak_mb']:,.0f}"] for r in rows])
    growth = [[f"{name} time, {a['items']:,} -> {b['items']:,} items", f"x{b[name]['seconds'] / a[name]['seconds']:.2f}",
               f"linear: x{b['items'] / a['items']:g}"] for a, b in zip(rows, rows[1:]) for name in ("prepare", "train", "decode")]
    one, two = procs["1 process, 2 threads"], procs["2 processes, 1 thread each"]
    growth += [[f"peak memory at {rows[-1]['items']:,} items", f"{peak:.2f} GB", f"a laptop's {TARGET_GB:g} GB"],
               ["samples/s, 2 processes against 1", f"{two / one:.2f}x", "1 process: 1.00x"]]
    lines += ["", f"Train samples/s at {middle:,} items: " + ", ".join(f"{k}: {v:,.0f}" for k, v in procs.items()), ""]
    return "\n".join(lines + md_table(["what grows", "measured", "reference"], growth))


STAGES = {"run": run}


if __name__ == "__main__":  # one stage in its own process: STAGE DATA OUT STEPS
    run_stage(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
