"""Where diffusion decoding pays: long SIDs, cheaper OCN views and fewer passes, beside AR.

    python -m bench long-sids train d4 a4          # train rows (resumable; OMP_NUM_THREADS=1 per queue)
    python -m bench long-sids speed d4 a4          # decode users/s (`python -m bench decode-speed`'s method)
    python -m bench long-sids train-speed d4 a4    # training samples/s, one row at a time
    python -m bench long-sids evaluate             # validation metrics, then bench/results/long-sids.{md,json}
    python -m bench long-sids table                # the .md and the ocn-cost figure again from the .json

Every row trains the `cpu-long` preset (item-id embedding, input dropout 0.1, label smoothing 0.1)
for the same number of epochs (``--epochs``, 6 for this screen, a cosine schedule over them) on
Amazon Beauty SIDs made by PSE with OPQ (n digits x 256 codes unless a row says otherwise,
collisions repaired, one k-means seed per digit). The rows differ only in n, the decoder (DiffGRM
or AR) and how many of OCN's n nested views a step supervises. Runs live in RUNS/e<epochs>/<row>;
each stage writes its result beside the run, so every command resumes, and ``evaluate`` tables
whatever exists (speeds and training rates included). The `d4-paper` row is read under both
protocols by ``python -m bench paper-protocol``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from bench.common import (BEAUTY, RESULTS_DIR, ensure_prepared, evaluate_cached, finished, read_history, say,
                          train_or_reuse)
from bench.experiments.long_sids_table import figures, render, screen_passes
from bench.results_io import publish

RESULTS = ("long-sids",)


@dataclass(frozen=True)
class Row:
    n: int
    kind: str = "diffgrm"
    views: int = 0  # OCN views per sample and step (0 = all n)
    pick: str = "random"
    repair: bool = True
    select: str = "item"
    label: str = ""
    codebook: int = 256  # codes per digit

    @property
    def data(self) -> str:
        return f"beauty-n{self.n}" + ("" if self.codebook == 256 else f"-c{self.codebook}") + ("" if self.repair else "-norepair")

    def views_text(self) -> str:
        if self.kind == "ar":
            return "-"
        k = self.views or self.n
        return f"{k} of {self.n}" + (" (shallowest)" if self.pick == "shallowest" else "")


ROWS: dict[str, Row] = {
    "d4": Row(4, label="DiffGRM, OCN on all 4 views (the paper)"),
    "a4": Row(4, "ar", label="AR on the same 4-digit SIDs"),
    "d4-k2": Row(4, views=2, label="DiffGRM, 2 random views of 4"),
    "d4-k1": Row(4, views=1, label="DiffGRM, 1 random view of 4"),
    "d8-k4": Row(8, views=4, label="DiffGRM, 4 random views of 8"),
    "a8": Row(8, "ar", label="AR on the same 8-digit SIDs"),
    "d8": Row(8, label="DiffGRM, OCN on all 8 views"),
    "d8-k1": Row(8, views=1, label="DiffGRM, 1 random view of 8"),
    "d8-ref4": Row(8, views=4, pick="shallowest", label="DiffGRM, the 4 shallowest views of 8 (the reference)"),
    "d8c16-k1": Row(8, views=1, codebook=16, label="DiffGRM, 1 random view of 8, 16 codes per digit (32 bits, as 4 x 256)"),
    "a8c16": Row(8, "ar", codebook=16, label="AR on the same 8 x 16 SIDs"),
    "d4-paper": Row(4, repair=False, select="sid", label="DiffGRM, the paper's protocol: collisions kept, chosen at SID level"),
}



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("rows", nargs="*", help=f"rows (default: all): {', '.join(ROWS)}")
    p.add_argument("--dataset", default=str(BEAUTY))
    p.add_argument("--runs", default="runs/long", help="prepared folders in RUNS/beauty-n<n>, runs in RUNS/e<epochs>/<row>")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--users", type=int, default=0, help="validation users to evaluate (0 = all 22,363)")
    p.add_argument("--beam", type=int, default=32)
    p.add_argument("--speed-users", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1, help="threads for the speed stages")
    p.add_argument("--repeats", type=int, default=3, help="speed: best of this many passes over the sample")
    p.add_argument("--out", default=None, help="OUT.md and OUT.json (default bench/results/long-sids); the "
                                               "ocn-cost.json figure beside them")
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny preset, one epoch, few users")


def chosen(args: argparse.Namespace) -> list[str]:
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"error: unknown rows {unknown}; choose among {', '.join(ROWS)}")
    return args.rows or list(ROWS)


def run_dir(args: argparse.Namespace, name: str, epochs: int | None = None) -> Path:
    return Path(args.runs) / f"e{epochs or args.epochs}" / name


def prepared_folder(args: argparse.Namespace, row: Row) -> Path:
    options = ["--digits", str(row.n)]
    if args.quick or row.codebook != 256:
        options += ["--codebook", str(16 if args.quick else row.codebook)]
    return ensure_prepared(Path(args.runs) / row.data, args.dataset, *options, *([] if row.repair else ["--no-repair"]))


def load(args: argparse.Namespace, row: Row):
    from diffgrm.prepare import load_prepared

    return load_prepared(prepared_folder(args, row))


def configs(args: argparse.Namespace, row: Row, prepared, **overrides):
    """The `cpu-long` preset (`tiny` with --quick) for this row's decoder, SIDs and OCN views."""
    from diffgrm.config import preset

    cat = prepared.catalogue
    return preset("tiny" if args.quick else "cpu-long", kind=row.kind, n_digits=cat.n_digits,
                  codebook_size=cat.codebook_size, ocn_views=row.views or None,
                  ocn_pick=row.pick if row.views else None, **overrides)


# --------------------------------------------------------------------------- stages


def train_stage(args: argparse.Namespace, epochs: int | None = None) -> int:
    for name in chosen(args):
        row = ROWS[name]
        prepared = load(args, row)
        model_cfg, cfg = configs(args, row, prepared, epochs=epochs or args.epochs, eval_start=1, select=row.select)
        train_or_reuse(run_dir(args, name, epochs), prepared, model_cfg, replace(cfg, max_steps=3) if args.quick else cfg,
                       progress=False)  # quick: the `tiny` preset, a few steps per epoch, every epoch kept
    return 0


def evaluations(row: Row) -> list[tuple[int, bool]]:
    """(passes, exclude_seen) pairs evaluated per row: S = n, n/2 and n/4 for DiffGRM (n/4 shows what the
    faster searches cost in quality), n for AR."""
    passes = sorted(set(screen_passes(row.n)), reverse=True) if row.kind == "diffgrm" else [row.n]
    return [(s, seen) for s in passes for seen in (False, True)]


def evaluate_run(args: argparse.Namespace, name: str, run: Path, prepared=None) -> dict:
    """The row's validation metrics by key (``s4``, ``s4-unseen`` ...), evaluated once and kept in the run."""
    row, out = ROWS[name], {}
    for passes, seen in evaluations(row):
        prepared = prepared or load(args, row)
        m = evaluate_cached(run, prepared, "valid", beam=args.beam, users=args.users,
                            passes=passes if row.kind == "diffgrm" else None, exclude_seen=seen)
        out[f"s{passes}{'-unseen' if seen else ''}"] = m
    return out


def speed_file(args: argparse.Namespace, n: int) -> Path:
    return run_dir(args, "").parent / f"speed-n{n}-t{args.threads}-u{args.speed_users}.json"


def speed_stage(args: argparse.Namespace) -> int:
    """Users/s of every decoder of one SID length, taking turns on the same users."""
    from bench.perf.decode import measure, sample_histories
    from diffgrm.decode import Recommender
    from diffgrm.train import load_run

    names = [name for name in chosen(args) if finished(run_dir(args, name))]
    for n in sorted({ROWS[name].n for name in names}):
        path = speed_file(args, n)
        done = json.loads(path.read_text()) if path.is_file() else {}
        decoders, prepared = {}, None
        for name in (x for x in names if ROWS[x].n == n):
            row = ROWS[name]
            model, prepared, _ = load_run(run_dir(args, name))
            rec = Recommender(model)
            for s in (screen_passes(row.n) if row.kind == "diffgrm" else [row.n]):
                decoders[f"{name}-s{s}"] = (rec, s if row.kind == "diffgrm" else None)
        histories = sample_histories(prepared, "valid", args.speed_users, 0)
        for beam in (32, 256):
            todo = {k: v for k, v in decoders.items() if f"b{beam}-{k}" not in done}
            if todo:
                say(f"n = {n}: speed at beam {beam}: {', '.join(todo)} ({time.strftime('%H:%M')})")
                res = measure(todo, histories, beam=beam, threads=args.threads, repeats=args.repeats,
                              sample={"split": "valid", "seed": 0})
                done.update({f"b{beam}-{k}": v for k, v in res.items()})
                path.write_text(json.dumps(done, indent=1))
    return 0


def train_speed_file(args: argparse.Namespace, name: str) -> Path:
    return run_dir(args, name).parent / f"train-speed-{name}-t{args.threads}.json"


def train_speed_stage(args: argparse.Namespace) -> int:
    """Training samples/s of each row's step, one row at a time (what minutes per epoch come from)."""
    from bench.perf.train_step import step_rate

    for name in chosen(args):
        path = train_speed_file(args, name)
        if path.is_file():
            continue
        row = ROWS[name]
        prepared = load(args, row)
        model_cfg, cfg = configs(args, row, prepared)
        rate, steps, epoch_samples = step_rate(prepared, model_cfg, cfg, 3 if args.quick else 40, args.threads)
        result = {"row": name, "threads": args.threads, "steps": steps, "samples_per_second": round(rate, 1),
                  "epoch_samples": epoch_samples, "minutes_per_epoch": round(epoch_samples / rate / 60, 2)}
        say(f"{name}: {rate:.0f} samples/s, {result['minutes_per_epoch']} min per epoch")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))
    return 0


# --------------------------------------------------------------------------- the results


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def collect(args: argparse.Namespace) -> list[dict]:
    """One record per row that has a run: settings, validation metrics, speeds, per-epoch curve."""
    records = []
    for name, row in ROWS.items():
        run = run_dir(args, name)
        hist = read_history(run)
        if not hist:
            continue
        rec: dict = {"row": name, "label": row.label, "n": row.n, "codebook": row.codebook, "model": row.kind,
                     "views": row.views_text(), "finished": finished(run), "epochs": len(hist),
                     "budget_epochs": args.epochs,
                     "wall_minutes_per_epoch": round(sum(r["train_seconds"] for r in hist) / len(hist) / 60, 2)}
        ts = _read(train_speed_file(args, name))
        if ts:
            rec["train_speed"] = ts
        evals = evaluate_run(args, name, run) if finished(run) else {}
        rec["valid"] = {k: {"item": m["item"], "sid": m["sid"], "users": m["users"], "beam": m["beam"],
                            "popularity": m.get("popularity"), "distinct_top10": m.get("distinct_top10")}
                        for k, m in evals.items()}
        # the speed file of this SID length at --speed-users, else one measured on another sample size
        found = [speed_file(args, row.n)] + sorted(speed_file(args, row.n).parent.glob(f"speed-n{row.n}-t{args.threads}-u*.json"))
        speed = next((_read(p) for p in found if p.is_file()), None) or {}
        # each entry names its decoder ("d8-k4-s4": the row, then its passes) and its beam
        mine = {f"b{v['beam']}-s{v['steps']}": v for v in speed.values() if v["decoder"].rsplit("-s", 1)[0] == name}
        if mine:
            keep = ("threads", "users", "beam", "steps", "batch_users", "spread")
            rec["speed"] = {k: {"users_per_second": v["users_per_s"], **{x: v.get(x) for x in keep}}
                            for k, v in mine.items()}
        rec["curve"] = [{"epoch": r["epoch"], "train_seconds": r["train_seconds"], "valid": r.get("valid"),
                         "valid_sid": r.get("valid_sid")} for r in hist]
        records.append(rec)
    return records


def evaluate_stage(args: argparse.Namespace) -> dict:
    """Evaluate every finished row, then write the table of what exists (and the ocn-cost figure)."""
    payload = {"dataset": "amazon-beauty", "split": "valid", "level": "item", "beam": args.beam,
               "users": args.users or 22363, "epochs": args.epochs, "preset": "cpu-long", "seed": 0,
               "rows": collect(args)}
    publish(args.out or RESULTS_DIR / "long-sids", payload, render, figures)
    return payload


STAGES = {"train": train_stage, "evaluate": evaluate_stage, "speed": speed_stage, "train-speed": train_speed_stage}
