"""Where diffusion decoding pays (issue 21): long SIDs, cheaper OCN, and the paper's protocol.

    .venv/bin/python bench/long_sids.py train d4 a4          # train rows (resumable; OMP_NUM_THREADS=1 per queue)
    .venv/bin/python bench/long_sids.py evaluate d4 a4       # validation metrics, with and without seen items
    .venv/bin/python bench/long_sids.py speed d4 a4          # decode users/s (bench/decode_speed.py's method)
    .venv/bin/python bench/long_sids.py train-speed d4 a4    # training samples/s, one row at a time
    .venv/bin/python bench/long_sids.py table                # bench/results/long-sids.{md,json} + ocn-cost figure
    .venv/bin/python bench/long_sids.py protocol --epochs 3  # the d4-paper run under both protocols (test split)

Every row trains the `cpu-long` preset (item-id embedding, input dropout 0.1, label smoothing 0.1)
for the same number of epochs (``--epochs``, 6 for this screen, a cosine schedule over them) on
Amazon Beauty SIDs made by PSE with OPQ (n digits x 256 codes unless a row says otherwise, collisions repaired, one k-means
seed per digit). The rows differ only in n, the decoder (DiffGRM or AR) and how many of OCN's n
nested views a step supervises. Runs live in RUNS/e<epochs>/<row>; each stage writes its result
beside the run, so every command resumes and the table is rebuilt from whatever exists.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.results_io import write_results  # noqa: E402

BEAUTY = ROOT.parent / "shared" / "data" / "amazon-beauty"
# the reference code's Beauty NDCG@10 read both ways (docs/method.md section 6)
PUBLISHED_BEAUTY = {"sid": 0.050, "item": 0.026, "source": "an independent audit"}


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("stage", choices=["train", "evaluate", "speed", "train-speed", "table", "protocol"])
    p.add_argument("rows", nargs="*", help=f"rows (default: all): {', '.join(ROWS)}")
    p.add_argument("--dataset", default=str(BEAUTY))
    p.add_argument("--runs", default="runs/long", help="prepared folders in RUNS/beauty-n<n>, runs in RUNS/e<epochs>/<row>")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--users", type=int, default=0, help="validation users to evaluate (0 = all 22,363)")
    p.add_argument("--beam", type=int, default=32)
    p.add_argument("--speed-users", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1, help="threads for the speed stages")
    p.add_argument("--repeats", type=int, default=3, help="speed: best of this many passes over the sample")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "long-sids"))
    p.add_argument("--figure", default=str(ROOT / "bench" / "results" / "ocn-cost.json"),
                   help="the quality-per-training-minute figure (plotly JSON, drawn by the docs)")
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny preset, one epoch, few users")
    args = p.parse_args(argv)
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}; choose among {', '.join(ROWS)}")
    args.rows = args.rows or list(ROWS)
    args.runs = Path(args.runs)
    return args


def run_dir(args: argparse.Namespace, name: str) -> Path:
    return args.runs / f"e{args.epochs}" / name


def finished(run: Path) -> bool:
    """A complete run: its config was written last, and no resumable state is left."""
    return (run / "config.json").is_file() and not (run / "resume.json").is_file()


def prepared_folder(args: argparse.Namespace, row: Row) -> Path:
    from diffgrm.cli import main as cli

    folder = args.runs / row.data
    if not (folder / "tokenizer_report.json").is_file():
        argv = ["prepare", "--dataset", args.dataset, "--out", str(folder), "--digits", str(row.n), "--quiet", "--force"]
        if args.quick or row.codebook != 256:
            argv += ["--codebook", str(16 if args.quick else row.codebook)]
        if not row.repair:
            argv.append("--no-repair")
        if cli(argv) != 0:
            raise SystemExit(f"preparing {folder} failed")
    return folder


# --------------------------------------------------------------------------- stages


def stage_train(args: argparse.Namespace) -> None:
    from diffgrm.cli import main as cli

    for name in args.rows:
        row, run = ROWS[name], run_dir(args, name)
        if finished(run):
            print(f"{name}: trained", file=sys.stderr)
            continue
        data = prepared_folder(args, row)
        argv = ["train", str(data), "--preset", "tiny" if args.quick else "cpu-long", "--model", row.kind,
                "--epochs", str(args.epochs), "--eval-start", "1", "--out", str(run), "--quiet", "--select", row.select]
        if args.quick:
            argv += ["--max-steps", "3"]
        if row.kind == "diffgrm" and row.views:
            argv += ["--ocn-views", str(row.views), "--ocn-pick", row.pick]
        print(f"{name}: training ({time.strftime('%H:%M')})", file=sys.stderr)
        if cli(argv) != 0:
            raise SystemExit(f"training {name} failed")


def screen_passes(n: int) -> list[int]:
    """The pass counts this screen scores and times a DiffGRM row at: S = n, n/2 and n/4."""
    return [n, max(1, n // 2), max(1, n // 4)]


def _evaluations(row: Row) -> list[tuple[int, bool]]:
    """(passes, exclude_seen) pairs evaluated per row: S = n, n/2 and n/4 for DiffGRM (the target reads S <= n/2;
    n/4 shows what the faster searches cost in quality), n for AR."""
    steps = sorted(set(screen_passes(row.n)), reverse=True) if row.kind == "diffgrm" else [row.n]
    return [(s, seen) for s in steps for seen in (False, True)]


def eval_file(run: Path, split: str, beam: int, users: int, steps: int, seen: bool) -> Path:
    return run / f"eval-{split}-b{beam}-u{users or 'all'}-s{steps}{'-unseen' if seen else ''}.json"


def stage_evaluate(args: argparse.Namespace) -> None:
    from diffgrm.train import evaluate_split, load_run

    for name in args.rows:
        row, run = ROWS[name], run_dir(args, name)
        if not finished(run):
            print(f"{name}: not trained yet", file=sys.stderr)
            continue
        model, prepared, _ = load_run(run)
        for steps, seen in _evaluations(row):
            path = eval_file(run, "valid", args.beam, args.users, steps, seen)
            if path.is_file():
                continue
            print(f"{name}: valid, beam {args.beam}, {steps} passes{', history excluded' if seen else ''} "
                  f"({time.strftime('%H:%M')})", file=sys.stderr)
            m = evaluate_split(model, prepared, "valid", users=args.users, beam=args.beam, progress=False,
                               passes=steps if row.kind == "diffgrm" else None, exclude_seen=seen)
            path.write_text(json.dumps(m, indent=1))


def speed_file(args: argparse.Namespace, n: int) -> Path:
    return args.runs / f"e{args.epochs}" / f"speed-n{n}-t{args.threads}-u{args.speed_users}.json"


def stage_speed(args: argparse.Namespace) -> None:
    """Users/s of every decoder of one SID length, taking turns on the same users (bench/decode_speed.py)."""
    from bench.decode_speed import measure, sample_histories
    from diffgrm.decode import Recommender
    from diffgrm.train import load_run

    for n in sorted({ROWS[name].n for name in args.rows}):
        names = [name for name in args.rows if ROWS[name].n == n and finished(run_dir(args, name))]
        if not names:
            continue
        path = speed_file(args, n)
        done = json.loads(path.read_text()) if path.is_file() else {}
        decoders, prepared = {}, None
        for name in names:
            row = ROWS[name]
            model, prepared, _ = load_run(run_dir(args, name))
            rec = Recommender(model)
            for s in (screen_passes(row.n) if row.kind == "diffgrm" else [row.n]):
                decoders[f"{name}-s{s}"] = (rec, s if row.kind == "diffgrm" else None)
        histories = sample_histories(prepared, "valid", args.speed_users, 0)
        for beam in (32, 256):
            todo = {k: v for k, v in decoders.items() if f"b{beam}-{k}" not in done}
            if not todo:
                continue
            print(f"n = {n}: speed at beam {beam}: {', '.join(todo)} ({time.strftime('%H:%M')})", file=sys.stderr)
            res = measure(todo, histories, beam=beam, threads=args.threads, repeats=args.repeats,
                          sample={"split": "valid", "seed": 0})
            done.update({f"b{beam}-{k}": v for k, v in res.items()})
            path.write_text(json.dumps(done, indent=1))


def stage_train_speed(args: argparse.Namespace) -> None:
    """Training samples/s of each row's step, one row at a time (what minutes per epoch come from)."""
    import torch

    from diffgrm.config import preset
    from diffgrm.decode import pad_histories
    from diffgrm.model import build_model
    from diffgrm.prepare import load_prepared
    from diffgrm.train import length_batches, make_step, training_samples

    import numpy as np

    torch.set_num_threads(args.threads)
    for name in args.rows:
        row = ROWS[name]
        path = run_dir(args, name).parent / f"train-speed-{name}-t{args.threads}.json"
        if path.is_file():
            continue
        prepared = load_prepared(prepared_folder(args, row))
        cat = prepared.catalogue
        model_cfg, cfg = preset("tiny" if args.quick else "cpu-long", kind=row.kind, n_digits=cat.n_digits,
                                codebook_size=cat.codebook_size, ocn_views=row.views, ocn_pick=row.pick)
        torch.manual_seed(0)
        model = build_model(model_cfg, torch.from_numpy(cat.codes)).train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        step = make_step(model, cfg, opt, torch.Generator().manual_seed(0))
        data = training_samples(prepared, cfg.min_history)
        lengths = np.minimum([len(h) for h in data.histories], model_cfg.max_history)
        batches = length_batches(lengths, cfg.batch_size, np.random.default_rng(0))
        n_steps = 3 if args.quick else 40
        codes = torch.from_numpy(cat.codes)
        times, seen = [], 0
        for i in range(n_steps + 2):
            idx = batches[i % len(batches)]
            hist = pad_histories([data.histories[j] for j in idx], model_cfg.max_history)
            t0 = time.perf_counter()
            step(hist, codes[torch.from_numpy(data.targets[idx])])
            if i >= 2:  # two warm-up steps
                times.append(time.perf_counter() - t0)
                seen += len(idx)
        rate = seen / sum(times)
        result = {"row": name, "threads": args.threads, "steps": len(times), "samples_per_second": round(rate, 1),
                  "epoch_samples": len(data), "minutes_per_epoch": round(len(data) / rate / 60, 2)}
        print(f"{name}: {rate:.0f} samples/s, {result['minutes_per_epoch']} min per epoch", file=sys.stderr)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))


# --------------------------------------------------------------------------- table


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _history(run: Path) -> list[dict]:
    path = run / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def collect(args: argparse.Namespace) -> list[dict]:
    """One record per row that has a run: settings, validation metrics, speeds, per-epoch curve."""
    records = []
    for name, row in ROWS.items():
        run = run_dir(args, name)
        hist = _history(run)
        if not hist:
            continue
        rec: dict = {"row": name, "label": row.label, "n": row.n, "codebook": row.codebook, "model": row.kind,
                     "views": row.views_text(),
                     "finished": finished(run), "epochs": len(hist), "budget_epochs": args.epochs,
                     "wall_minutes_per_epoch": round(sum(r["train_seconds"] for r in hist) / len(hist) / 60, 2)}
        ts = _read(run.parent / f"train-speed-{name}-t{args.threads}.json")
        if ts:
            rec["train_speed"] = ts
        evals = {}
        for steps, seen in _evaluations(row):
            m = _read(eval_file(run, "valid", args.beam, args.users, steps, seen))
            if m:
                evals[f"s{steps}{'-unseen' if seen else ''}"] = {
                    "item": m["item"], "sid": m["sid"], "users": m["users"], "beam": m["beam"],
                    "popularity": m.get("popularity"), "distinct_top10": m.get("distinct_top10")}
        rec["valid"] = evals
        # the speed file of this SID length at --speed-users, else one measured on another sample size
        found = [speed_file(args, row.n)] + sorted(args.runs.glob(f"e{args.epochs}/speed-n{row.n}-t{args.threads}-u*.json"))
        speed = next((_read(p) for p in found if p.is_file()), None) or {}
        # each entry names its decoder ("d8-k4-s4": the row, then its passes) and its beam
        mine = {f"b{v['beam']}-s{v['steps']}": v for v in speed.values() if v["decoder"].rsplit("-s", 1)[0] == name}
        if mine:
            rec["speed"] = {k: {"users_per_second": v["users_per_s"], **{x: v.get(x) for x in ("threads", "users", "beam", "steps", "batch_users", "spread")}}
                            for k, v in mine.items()}
        rec["curve"] = [{"epoch": r["epoch"], "train_seconds": r["train_seconds"], "valid": r.get("valid"),
                         "valid_sid": r.get("valid_sid")} for r in hist]
        records.append(rec)
    return records


def _f(x: float | None, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}f}".lstrip("0") if x < 1 else f"{x:.{digits}f}"


def render(records: list[dict], args: argparse.Namespace) -> str:
    users = f"{args.users:,} users" if args.users else "all 22,363 users"
    lines = [
        f"amazon-beauty, validation split ({users}), item level, beam {args.beam}, Top-10; `cpu-long` preset, "
        f"{args.epochs} epochs for every row (cosine schedule over them), seed 0; OPQ n x 256 SIDs (rows named c16: 16 codes per digit), collisions repaired",
        "",
        "| row | n | model | OCN views | N@10 | R@10 | N@10, history excluded | R@10, history excluded | "
        "N@10 at S = n/2 / n/4 | N@10 at S = n/2 / n/4, history excluded | train min/epoch | users/s b32 (S = n, n/2, n/4) | users/s b256 (S = n, n/2, n/4) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    timed_like = {}  # OCN views change training only: a DiffGRM row decodes as fast as the timed one of its n
    for r in records:
        if r["model"] == "diffgrm" and r.get("speed"):
            timed_like.setdefault((r["n"], r.get("codebook", 256)), r["row"])
    for r in records:
        if r["row"] == "d4-paper":
            continue
        v, n = r["valid"], r["n"]
        full, unseen = v.get(f"s{n}", {}), v.get(f"s{n}-unseen", {})
        fewer = screen_passes(n)[1:]  # S = n/2 and n/4: CPD with fewer passes than digits
        ts = r.get("train_speed")
        mins = f"{ts['minutes_per_epoch']:.1f}" if ts else f"({r['wall_minutes_per_epoch']:.1f} wall)"
        speeds = {}
        for beam in (32, 256):
            keys = screen_passes(n) if r["model"] == "diffgrm" else [n]
            vals = [r.get("speed", {}).get(f"b{beam}-s{s}", {}).get("users_per_second") for s in keys]
            speeds[beam] = " / ".join("" if x is None else f"{x:.0f}" for x in vals)
            if all(x is None for x in vals):
                like = timed_like.get((n, r.get("codebook", 256)))
                speeds[beam] = f"as {like}" if r["model"] == "diffgrm" and like else ""
        it = lambda m, k: _f((m.get("item") or {}).get(k))  # noqa: E731
        few = {tag: " / ".join(it(v.get(f"s{s}{tag}", {}), "ndcg@10") for s in fewer) if r["model"] == "diffgrm" else ""
               for tag in ("", "-unseen")}
        lines.append(
            f"| {r['row']}{'' if r['finished'] else ' (training)'} | {n} | {'DiffGRM' if r['model'] == 'diffgrm' else 'AR (cached)'} "
            f"| {r['views']} | {it(full, 'ndcg@10')} | {it(full, 'recall@10')} | {it(unseen, 'ndcg@10')} | "
            f"{it(unseen, 'recall@10')} | {few['']} | {few['-unseen']} | {mins} | {speeds[32]} | {speeds[256]} |")
    timed = sorted({(r["n"], v.get("users"), v.get("threads")) for r in records for v in (r.get("speed") or {}).values()})
    lines += ["", "`d4-paper` (collisions kept, chosen at SID level) is not a row here: it is read on the test split "
              "under both protocols in `paper-protocol.md`."] if any(r["row"] == "d4-paper" for r in records) else []
    if timed:
        lines += ["", "Decode users/s: `bench/decode_speed.py` (the decoders of one n taking turns on the same seeded "
                  "validation users, best of repeats): " + "; ".join(f"n = {n}: {u:,} users, {t} thread" for n, u, t in timed)
                  + ". Training minutes per epoch: `train-speed` (one row at a time, 1 thread, 40 steps; the machine was "
                  "not idle) where given, else the run's wall time (in parentheses; runs shared the two cores)."]
    return "\n".join(lines)


def ocn_cost_figure(records: list[dict]) -> dict:
    """Validation NDCG@10 (the 2,000 users training monitors) against training minutes, per row."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for r in records:
        if r["row"] == "d4-paper":  # another catalogue and another protocol: not on this axis
            continue
        ts = r.get("train_speed")
        per_epoch = ts["minutes_per_epoch"] if ts else r["wall_minutes_per_epoch"]
        pts = [(c["epoch"] * per_epoch, c["valid"]["ndcg@10"]) for c in r["curve"] if c.get("valid")]
        if not pts:
            continue
        dash = "solid" if r["model"] == "ar" else "dot" if r["views"].startswith("1 ") else "dash" if r["views"] != f"{r['n']} of {r['n']}" else "solid"
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=r["row"],
                                 line={"dash": dash}, hovertemplate=f"{r['label']}<br>%{{x:.0f}} min: NDCG@10 %{{y:.4f}}<extra></extra>"))
    fig.update_layout(title="What each decoder costs: validation NDCG@10 against training minutes",
                      xaxis_title="training minutes (1 thread, per-epoch rate measured alone)",
                      yaxis_title="validation NDCG@10 (2,000 users)", height=480, template="plotly_white",
                      margin={"t": 60, "l": 60, "r": 20, "b": 50})
    return json.loads(fig.to_json())


def stage_table(args: argparse.Namespace) -> None:
    records = collect(args)
    text = render(records, args)
    payload = {"dataset": "amazon-beauty", "split": "valid", "level": "item", "beam": args.beam,
               "users": args.users or 22363, "epochs": args.epochs, "preset": "cpu-long", "seed": 0, "rows": records}
    write_results(args.out, text, payload)
    Path(args.figure).write_text(json.dumps(ocn_cost_figure(records)))
    print(text)


def stage_protocol(args: argparse.Namespace) -> None:
    """The same run under both protocols (issue 21, part 3): the paper's SID level beside the item level."""
    from diffgrm.cli import format_metrics
    from diffgrm.pse import collision_rate
    from diffgrm.train import evaluate_split, load_run

    name = "d4-paper"
    run = run_dir(args, name)
    if not finished(run):
        raise SystemExit(f"{run} is not trained yet: bench/long_sids.py train {name} --epochs {args.epochs}")
    path = run / f"protocol-test-b{args.beam}-u{args.users or 'all'}.json"
    if not path.is_file():
        model, prepared, meta = load_run(run)
        m = evaluate_split(model, prepared, "test", users=args.users, beam=args.beam, progress=False)
        m.update(protocol="paper", collision_rate=collision_rate(prepared.catalogue.codes),
                 select=meta["train"].get("select", "item"), best_epoch=meta.get("best_epoch"))
        path.write_text(json.dumps(m, indent=1))
    m = json.loads(path.read_text())
    m["published"] = pub = PUBLISHED_BEAUTY
    over = m["sid"]["ndcg@10"] / m["item"]["ndcg@10"] - 1 if m["item"]["ndcg@10"] else float("nan")
    keys = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
    lines = [f"amazon-beauty, test split ({m['users']:,} users), beam {m['beam']}; one DiffGRM run (`cpu-long`, "
             f"{args.epochs} epochs, seed 0) trained on the catalogue without collision repair "
             f"({m['collision_rate']:.1%} of items share a SID), checkpoint chosen on the SID-level 0.8 N@10 + 0.2 R@10",
             "", "| protocol | level | R@5 | R@10 | N@5 | N@10 |", "|---|---|---|---|---|---|",
             "| the paper's | SID: a generated SID counts for every item that shares it | "
             + " | ".join(f"{m['sid'][k]:.4f}" for k in keys) + " |",
             "| ours | item: a SID names one item (the reference's lookup: the lowest index) | "
             + " | ".join(f"{m['item'][k]:.4f}" for k in keys) + " |",
             "", f"The SID level reads {over:+.0%} against the item level for the same predictions "
             f"(published for the reference code on Beauty by {pub['source']}: about {pub['sid']:.3f} against "
             f"{pub['item']:.3f}, {pub['sid'] / pub['item'] - 1:+.0%})."]
    text = "\n".join(lines)
    write_results(Path(args.out).with_name("paper-protocol"), text, m)
    print(format_metrics(m))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    {"train": stage_train, "evaluate": stage_evaluate, "speed": stage_speed, "train-speed": stage_train_speed,
     "table": stage_table, "protocol": stage_protocol}[args.stage](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
