"""Scale: time and peak memory of prepare, a training epoch and decoding at 10k, 100k and 1M items,
and training samples/s in one process against two (torchrun).

    .venv/bin/python bench/scale.py                           # 10k, 100k and 1M items
    .venv/bin/python bench/scale.py --items 10000 100000      # some sizes
    .venv/bin/python bench/scale.py --quick                   # 2,000 items, a few steps: a smoke run

Each size gets a synthetic dataset (``diffgrm synth``: clustered 64-d item vectors, the same
number of users at every size, so what grows is the catalogue) and three stages, each in its own
process so that its peak memory (max RSS) is its own:

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
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_GB = 8.0


def run_stage(args: argparse.Namespace) -> dict:
    """One stage in this process; returns its seconds, peak memory and numbers."""
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
    cmd = [sys.executable, __file__, "--stage", name, "--data", str(data), "--out", str(out), "--steps", str(steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
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
                                              "--master_addr", "127.0.0.1", "--master_port", str(_free_port())]),
    ):
        out = runs / ("procs-1" if not launcher else "procs-2")
        env = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, *launcher, str(script), str(data), str(out)], check=True, env=env,
                       capture_output=True)
        row = json.loads((out / "history.jsonl").read_text().splitlines()[0])
        results[name] = row["samples_per_second"]
    return results


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    p.add_argument("--users", type=int, default=20_000, help="users at every size")
    p.add_argument("--steps", type=int, default=60, help="training steps of the epoch")
    p.add_argument("--runs", default="runs/scale")
    p.add_argument("--out", default="bench/results/scale")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--stage", choices=["prepare", "train", "decode"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.stage:
        return run_stage(args)
    if args.quick:
        args.items, args.users, args.steps = [2000], 300, 3
    from bench.results_io import write_results
    from diffgrm.synth import synthesize

    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.items:
        raw, prep, run = runs / f"synth-{n}", runs / f"prep-{n}", runs / f"run-{n}"
        t0 = time.perf_counter()
        synthesize(raw, n, args.users, seed=0, force=True, progress=False)
        row = {"items": n, "users": args.users, "synth_s": time.perf_counter() - t0}
        for name, folder, data in (("prepare", prep, raw), ("train", run, prep), ("decode", run, prep)):
            row[name] = stage(name, data, folder, args.steps)
            print(f"{n:,} items, {name}: {row[name]['seconds']:.1f} s, peak {row[name]['peak_mb']:,.0f} MB",
                  file=sys.stderr, flush=True)
        rows.append(row)
    middle = args.items[len(args.items) // 2]
    procs = processes(runs / f"prep-{middle}", runs, args.steps)

    lines = [f"Synthetic datasets (`diffgrm synth`, 64-d vectors, {args.users:,} users at every size); "
             f"2-core CPU, `cpu` preset; seconds and peak memory (max RSS) of each stage's own process", "",
             "| items | prepare s | prepare peak MB | train s | train samples/s | train peak MB | decode users/s "
             "| decode peak MB |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['items']:,} | {r['prepare']['seconds']:.1f} | {r['prepare']['peak_mb']:,.0f} | "
                     f"{r['train']['seconds']:.1f} | {r['train']['samples_per_second']:,.0f} | "
                     f"{r['train']['peak_mb']:,.0f} | {r['decode']['users_per_second']:,.1f} | "
                     f"{r['decode']['peak_mb']:,.0f} |")
    growth = []
    for a, b in zip(rows, rows[1:]):
        factor = b["items"] / a["items"]
        for name in ("prepare", "train", "decode"):
            growth.append((f"{name} time, {a['items']:,} -> {b['items']:,} items", b[name]["seconds"] / a[name]["seconds"],
                           factor))
    peak = max(max(r[s]["peak_mb"] for s in ("prepare", "train", "decode")) for r in rows) / 1024
    lines += ["", f"Train samples/s at {middle:,} items: " + ", ".join(f"{k}: {v:,.0f}" for k, v in procs.items()), "",
              "| what grows | measured | reference |", "|---|---|---|"]
    lines += [f"| {what} | x{ratio:.2f} | linear: x{factor:g} |" for what, ratio, factor in growth]
    lines.append(f"| peak memory at {rows[-1]['items']:,} items | {peak:.2f} GB | a laptop's {TARGET_GB:g} GB |")
    one, two = procs["1 process, 2 threads"], procs["2 processes, 1 thread each"]
    lines.append(f"| samples/s, 2 processes against 1 | {two / one:.2f}x | 1 process: 1.00x |")
    text = "\n".join(lines)
    print(text)
    payload = {"rows": rows, "processes": procs, "peak_gb": peak, "steps": args.steps}
    if not args.quick:
        write_results(args.out, text, payload)
    return payload


if __name__ == "__main__":
    main()
