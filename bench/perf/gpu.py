"""One GPU, ten minutes: Amazon Beauty prepared, the `paper` preset trained for DiffGRM and for AR on the
same SIDs under a wall-clock cap each, and both scored at beam 256 on the whole test split.

    python -m bench gpu run                                # a CUDA machine: writes bench/results/gpu.{md,json}
    python -m bench gpu run --data runs/gpu/data           # a prepared folder (say, carried along) is used as it is
    python -m bench gpu run --tiny --out /tmp/gpu-tiny     # CPU smoke run: synthetic data, `tiny` preset, a few steps
    python -m bench gpu run --tiny --data movielens-100k --out /tmp/gpu-ml   # the same on MovieLens-100K (fetched)
    python -m bench gpu table --out bench/results/gpu      # the .md again from the .json

The ten minutes (``--budget``), split ahead of time so that every run is the same:

- prepare: Beauty's 12,101 item texts embedded on the GPU and PSE fitted (about a minute; none when
  RUNS/data or ``--data`` is already a prepared folder);
- train DiffGRM: capped at 3.5 min (``--diffgrm-minutes``); train AR: capped at 2.0 min
  (``--ar-minutes``): an AR step costs about 40% of a DiffGRM step (one teacher-forced pass
  against OCN's views), so the two see a similar number of epochs. The cap is
  ``TrainConfig.max_minutes``: it is read after each epoch, so a run overshoots by the epoch in
  flight and its validation;
- evaluate each at beam 256 on the test split (item level, batches of ``--eval-batch`` users);
- decode speed (about 0.5 min; ``--speed-users 0`` skips it): users/s of the cached AR decoder and
  of CPD at S = n, n/2 and 1 passes, taking turns on the same ``--speed-users`` test users
  (``python -m bench decode-speed``'s method), at beams 32 and 256, once in batches of 32 users
  (throughput) and once one user at a time (latency, the first ``--speed-users`` / 8 users): on a
  GPU the AR decoder's n sequential steps, not arithmetic, may set the pace, which is where fewer
  passes could pay (docs: "Where diffusion pays");
- the rest (about 1 min) is margin for the overshoots and start-up.

Training keeps the `paper` preset (diffgrm/config.py) except: the cap, the precision (bf16
autocast on CUDA when the GPU supports it, fp32 otherwise; ``--precision``) and the validation
sample (``--eval-users``, 1,000 users at the preset's beam 32 instead of all 22,363, so that
validating each epoch from epoch 5 costs seconds, not the budget). ``--epochs`` replaces the
preset's 200 epochs, which also sets the warm-up / cosine schedule's length.

Each stage is kept and reused: RUNS/data (the prepared folder), RUNS/diffgrm and RUNS/ar (finished
runs; an interrupted one continues), and each run's ``gpu_eval_<split>_b<beam>_u<users>.json``.
Delete a folder to redo its stage. Without a CUDA device the script stops with exit code 2
unless ``--tiny`` or ``--allow-cpu`` is given.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench.common import BEAUTY, RESULTS_DIR, history_seconds, is_prepared, read_history
from bench.results_io import publish

RESULTS = ()  # no GPU has run it for this project yet: nothing committed (`table --out` renders a run's)

MODELS = ("diffgrm", "ar")
LABELS = {"diffgrm": "DiffGRM (OCN + CPD)", "ar": "AR decoder, same SIDs"}
METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
NO_CUDA = ("error: python -m bench gpu measures a CUDA GPU, and torch {torch} sees none ({why}).\n"
           "Run it on a machine with an NVIDIA GPU and a CUDA build of torch; or add --tiny for a smoke run "
           "on the CPU (synthetic data, a few steps), or --allow-cpu to run the full benchmark on the CPU "
           "(hours, not 10 minutes).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None,
                   help="a raw dataset folder or name (prepared into RUNS/data), or a prepared folder used as it is "
                        "(default: ../shared/data/amazon-beauty; with --tiny a synthetic dataset)")
    p.add_argument("--runs", default=None, help="run folders (default runs/gpu; with --tiny runs/gpu-tiny)")
    p.add_argument("--out", default=None,
                   help="OUT.md and OUT.json (default bench/results/gpu; with --tiny RUNS/results)")
    p.add_argument("--tiny", action="store_true", help="a CPU smoke run: `tiny` preset, a few steps, a small beam")
    p.add_argument("--allow-cpu", action="store_true", help="run the full benchmark even without a CUDA device")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="training precision (auto: bf16 autocast on a CUDA GPU that supports it, else fp32)")
    p.add_argument("--budget", type=float, default=10.0, help="minutes in all, reported against (default 10)")
    p.add_argument("--diffgrm-minutes", type=float, default=None, help="DiffGRM training cap (default 3.5)")
    p.add_argument("--ar-minutes", type=float, default=None, help="AR training cap (default 2.0)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the preset's)")
    p.add_argument("--eval-users", type=int, default=None, help="validation users during training (default 1000)")
    p.add_argument("--beam", type=int, default=None, help="test beam (default 256; 16 with --tiny)")
    p.add_argument("--users", type=int, default=None,
                   help="a seeded sample of test users (default 0 = all; 30 with --tiny)")
    p.add_argument("--eval-batch", type=int, default=None,
                   help="users decoded together (default 128 on CUDA, 32 on CPU)")
    p.add_argument("--split", default="test", choices=["test", "valid"])
    p.add_argument("--speed-users", type=int, default=None,
                   help="test users for the decode-speed stage (default 512; 16 with --tiny; 0 skips it)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """The defaults that depend on --tiny."""
    tiny = args.tiny
    args.runs = Path(args.runs or ("runs/gpu-tiny" if tiny else "runs/gpu"))
    args.out = Path(args.out) if args.out else (args.runs / "results" if tiny else RESULTS_DIR / "gpu")
    args.diffgrm_minutes = args.diffgrm_minutes if args.diffgrm_minutes is not None else (1.0 if tiny else 3.5)
    args.ar_minutes = args.ar_minutes if args.ar_minutes is not None else (1.0 if tiny else 2.0)
    args.eval_users = args.eval_users if args.eval_users is not None else (20 if tiny else 1000)
    args.beam = args.beam or (16 if tiny else 256)
    args.users = args.users if args.users is not None else (30 if tiny else 0)
    args.speed_users = args.speed_users if args.speed_users is not None else (16 if tiny else 512)
    if args.beam < 10:
        raise SystemExit("error: --beam must be at least 10 (the metrics read the Top-10)")
    if min(args.diffgrm_minutes, args.ar_minutes) <= 0:
        raise SystemExit("error: the training caps must be positive minutes")
    return args


class Clock:
    """Progress lines on stderr, stamped with the minutes since the start."""

    def __init__(self, quiet: bool) -> None:
        self.t0, self.quiet = time.perf_counter(), quiet

    def minutes(self) -> float:
        return (time.perf_counter() - self.t0) / 60

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(f"[gpu {self.minutes():5.2f} min] {msg}", file=sys.stderr, flush=True)


def pick_device(args: argparse.Namespace) -> torch.device | None:
    """The device to use, or None (after printing why) when the full benchmark has no CUDA device."""
    if args.device is not None:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            print(NO_CUDA.format(torch=torch.__version__, why="--device cuda was asked for"), file=sys.stderr)
            return None
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not (args.tiny or args.allow_cpu):
        why = ("a CPU-only build" if torch.version.cuda is None
               else f"CUDA {torch.version.cuda} build, no device visible")
        if args.device is not None:
            why = f"--device {args.device}"
        print(NO_CUDA.format(torch=torch.__version__, why=why), file=sys.stderr)
        return None
    return device


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def pick_precision(args: argparse.Namespace, device: torch.device) -> str:
    if args.precision != "auto":
        return args.precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def faiss_missing() -> bool:
    """A GPU image may lack faiss: diffgrm imports it only to fit a tokenizer, so a folder prepared
    elsewhere trains and evaluates without it."""
    return importlib.util.find_spec("faiss") is None


def prepare_data(args: argparse.Namespace, clock: Clock, no_faiss: bool) -> tuple[Path, dict]:
    """The prepared folder and how it came to be (``{"minutes", "reused", "source"}``)."""
    from diffgrm.cli import main as cli

    if args.data is not None and is_prepared(Path(args.data)):
        clock.say(f"using the prepared folder {args.data}")
        return Path(args.data), {"minutes": 0.0, "reused": True, "source": str(args.data)}
    prepared = args.runs / "data"
    if is_prepared(prepared):
        clock.say(f"reusing {prepared} (delete it to prepare again)")
        stamp = prepared / "gpu_prepare.json"
        info = json.loads(stamp.read_text()) if stamp.is_file() else {"minutes": None, "source": "?"}
        return prepared, {**info, "reused": True}
    extra: list[str] = []
    if args.data is None and args.tiny:  # a synthetic dataset: item vectors included, no sentence encoder
        from diffgrm.synth import synthesize

        source = args.runs / "synth"
        if not (source / "user_sequence.txt").is_file():
            synthesize(source, 300, 200, length=(5, 12), seed=0, force=True, progress=False)
        extra = ["--codebook", "16"]
    elif args.data is None:
        source = BEAUTY
    else:
        source = args.data
    if no_faiss:
        raise SystemExit(f"error: preparing {source} needs faiss, which is not installed here; prepare it elsewhere "
                         f"(`diffgrm prepare --dataset {source} --out DIR`) and pass DIR as --data")
    clock.say(f"preparing {source} into {prepared} ...")
    t0 = time.perf_counter()
    argv = ["prepare", "--dataset", str(source), "--out", str(prepared), *extra, "--force"]
    if args.quiet or not sys.stderr.isatty():
        argv.append("--quiet")
    if cli(argv) != 0:
        raise SystemExit(2)
    info = {"minutes": (time.perf_counter() - t0) / 60, "source": str(source)}
    (prepared / "gpu_prepare.json").write_text(json.dumps(info, indent=2))
    clock.say(f"prepared in {info['minutes']:.2f} min")
    return prepared, {**info, "reused": False}


def configs(kind: str, prepared, args: argparse.Namespace, precision: str):
    from diffgrm.config import preset

    cat = prepared.catalogue
    cap = args.diffgrm_minutes if kind == "diffgrm" else args.ar_minutes
    model_cfg, cfg = preset("tiny" if args.tiny else "paper", kind=kind, n_digits=cat.n_digits,
                            codebook_size=cat.codebook_size)
    cfg = replace(cfg, max_minutes=cap, precision=precision, eval_users=args.eval_users)
    if args.tiny:
        cfg = replace(cfg, epochs=2, max_steps=3, eval_start=1, eval_beam=16)
    if args.epochs:
        cfg = replace(cfg, epochs=args.epochs)
    return model_cfg, cfg


def train_model(kind: str, prepared, args: argparse.Namespace, device: torch.device, precision: str,
                clock: Clock) -> dict:
    """Train ``kind`` into RUNS/kind (or reuse the finished run there); its training record."""
    from diffgrm.train import train

    run = args.runs / kind
    model_cfg, cfg = configs(kind, prepared, args, precision)
    stamp = run / "gpu_train.json"
    if (run / "config.json").is_file() and (run / "model.safetensors").is_file():
        meta = json.loads((run / "config.json").read_text())
        if meta.get("model") != model_cfg.to_dict() or meta.get("train") != cfg.to_dict():
            which = "model" if meta.get("model") != model_cfg.to_dict() else "training"
            raise SystemExit(f"error: {run} holds a finished run with other settings than this call's "
                             f"({which} settings differ); delete it or give another --runs")
        clock.say(f"reusing the finished run {run} (delete it to train again)")
        history = read_history(run)
        record = json.loads(stamp.read_text()) if stamp.is_file() else {
            "minutes": history_seconds(history) / 60}
        return {**record, "run": str(run), "reused": True, "epochs": len(history), "best_epoch": meta.get("best_epoch"),
                "max_minutes": cfg.max_minutes, "precision": cfg.precision, "history": history}
    clock.say(f"training {LABELS[kind]} into {run}: `{'tiny' if args.tiny else 'paper'}` preset, "
              f"{model_cfg.d_model}-d, batch {cfg.batch_size}, up to {cfg.epochs} epochs, cap {cfg.max_minutes:g} min, "
              f"{cfg.precision} on {device_name(device)} ...")
    t0 = time.perf_counter()
    bars = sys.stderr.isatty() and not args.quiet

    def on_epoch(epoch: int, model, row: dict) -> None:
        if bars:
            return  # train's own progress prints the same line
        msg = (f"  {kind} epoch {epoch}: loss {row['loss']:.4f}, {row['samples_per_second']:,.0f} samples/s, "
               f"{(time.perf_counter() - t0) / 60:.2f} min")
        if "valid" in row:
            msg += f", valid ndcg@10 {row['valid']['ndcg@10']:.4f} recall@10 {row['valid']['recall@10']:.4f}"
        clock.say(msg)

    result = train(prepared, model_cfg, cfg, run, device=device, progress=bars, on_epoch=on_epoch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    minutes = (time.perf_counter() - t0) / 60
    params = sum(p.numel() for p in result.model.parameters())
    record = {"minutes": minutes, "parameters": params, "device": device_name(device)}
    stamp.write_text(json.dumps(record, indent=2))
    history = result.history
    clock.say(f"trained {kind}: {len(history)} epochs in {minutes:.2f} min, best epoch {result.best_epoch}")
    return {**record, "run": str(run), "reused": False, "epochs": len(history), "best_epoch": result.best_epoch,
            "max_minutes": cfg.max_minutes, "precision": cfg.precision, "history": history}


def evaluate_model(kind: str, prepared, args: argparse.Namespace, device: torch.device, clock: Clock) -> dict:
    """Test metrics of RUNS/kind at ``--beam`` (kept in the run folder and reused)."""
    from diffgrm.decode import Recommender
    from diffgrm.train import load_run, popularity_baseline, subsample

    run = args.runs / kind
    cached = run / f"gpu_eval_{args.split}_b{args.beam}_u{args.users}.json"
    if cached.is_file():
        clock.say(f"reusing {cached}")
        return {**json.loads(cached.read_text()), "reused": True}
    model, _, _ = load_run(run, data=prepared.path, device=device)
    samples = subsample(prepared.splits[args.split], args.users, seed=0)
    batch = args.eval_batch or (128 if device.type == "cuda" else 32)
    clock.say(f"evaluating {kind} on {len(samples):,} {args.split} users at beam {args.beam} (batches of {batch}) ...")
    t0 = time.perf_counter()
    metrics = Recommender(model).evaluate(samples, beam=args.beam, batch_users=batch,
                                          progress=sys.stderr.isatty() and not args.quiet)
    minutes = (time.perf_counter() - t0) / 60
    metrics.update(split=args.split, batch_users=batch, minutes=minutes,
                   users_per_s=len(samples) / max(minutes * 60, 1e-9),
                   popularity=popularity_baseline(prepared, samples), device=device_name(device))
    cached.write_text(json.dumps(metrics, indent=2))
    clock.say(f"evaluated {kind} in {minutes:.2f} min: ndcg@10 {metrics['item']['ndcg@10']:.4f}, "
              f"recall@10 {metrics['item']['recall@10']:.4f}")
    return {**metrics, "reused": False}


def decode_speeds(prepared, args: argparse.Namespace, device: torch.device, clock: Clock) -> list[dict]:
    """Users/s of the cached AR and of CPD at S = n, n/2, 1, in batches of 32 and one user at a time."""
    from bench.perf.decode import measure, pass_counts, sample_histories
    from diffgrm.decode import Recommender
    from diffgrm.train import load_run

    if args.speed_users <= 0:
        return []
    recs = {kind: Recommender(load_run(args.runs / kind, data=prepared.path, device=device)[0]) for kind in MODELS}
    n = recs["diffgrm"].model.config.n_digits
    decoders = {"AR (cached)": (recs["ar"], None)} | {f"CPD S={s}": (recs["diffgrm"], s) for s in pass_counts(n)}
    histories = sample_histories(prepared, args.split, args.speed_users, 0)
    t0, rows = time.perf_counter(), []
    for batch, users in ((32, histories), (1, histories[: max(1, len(histories) // 8)])):
        for beam in (32, 256):
            res = measure(decoders, users, beam=beam, batch_users=batch, repeats=2, sample={"split": args.split, "seed": 0})
            rows += [{"decoder": label, "batch_users": batch, "beam": beam, "users": r["users"],
                      "steps": r["steps"], "users_per_s": r["users_per_s"]} for label, r in res.items()]
    clock.say(f"decode speed measured in {(time.perf_counter() - t0) / 60:.2f} min")
    return rows


def speed_table(rows: list[dict]) -> list[str]:
    """users/s per decoder (rows) and (batch, beam) setting (columns); CPD's column is against the AR."""
    settings = sorted({(r["batch_users"], r["beam"]) for r in rows}, key=lambda x: (-x[0], x[1]))
    lines = ["", "Decode users/s (`python -m bench decode-speed`'s method, taking turns, best of 2; fp32; "
             "in brackets: its users/s over the cached AR's, above 1 is faster):", "",
             "| decoder | " + " | ".join(f"{b} user{'s' if b > 1 else ''}/batch, beam {k}" for b, k in settings) + " |",
             "|---|" + "---|" * len(settings)]
    ar = {(r["batch_users"], r["beam"]): r["users_per_s"] for r in rows if r["decoder"] == "AR (cached)"}
    for label in dict.fromkeys(r["decoder"] for r in rows):
        cells = []
        for setting in settings:
            r = next(x for x in rows if x["decoder"] == label and (x["batch_users"], x["beam"]) == setting)
            ratio = "" if label == "AR (cached)" else f" ({r['users_per_s'] / ar[setting]:.2f}x)"
            cells.append(f"{r['users_per_s']:,.1f}{ratio}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def fmt(x: float | None) -> str:
    return "?" if x is None else f"{x:.2f}"


def render(payload: dict) -> str:
    p, stages = payload, payload["stages"]
    head = (f"{p['dataset']}, {p['split']} split, {p['users']:,} users, beam {p['beam']}, item level; "
            f"`{p['preset']}` preset on {p['device']} ({p['precision']} training, fp32 decoding), torch {p['torch']}")
    lines = [head, "",
             "| model | epochs (best) | train cap min | train min | eval min | users/s | R@5 | R@10 | N@5 | N@10 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    pop = p["popularity"]
    lines.append("| popularity | | | | | | " + " | ".join(f"{pop[m]:.4f}" for m in METRICS) + " |")
    for kind in MODELS:
        m, t = p["models"][kind], stages[f"train_{kind}"]
        lines.append(f"| {LABELS[kind]} | {m['epochs']} ({m['best_epoch']}) | {m['max_minutes']:g} | {fmt(t)} | "
                     f"{fmt(stages[f'evaluate_{kind}'])} | {m['users_per_s']:,.0f} | "
                     + " | ".join(f"{m['item'][x]:.4f}" for x in METRICS) + " |")
    total = p["stage_minutes"]
    lines += ["", f"- prepare: {fmt(stages['prepare'])} min{' (reused)' if p['prepare_reused'] else ''}",
              f"- stages together: {fmt(total)} min against a budget of {p['budget_minutes']:g} min"
              f"{'' if total is None else ' (within it)' if total <= p['budget_minutes'] else ' (over it)'} "
              f"(this call's wall time: {p['wall_minutes']:.2f} min)",
              f"- budget split: DiffGRM training capped at {p['models']['diffgrm']['max_minutes']:g} min, AR at "
              f"{p['models']['ar']['max_minutes']:g} min (the cap is read after each epoch); the rest for preparing, "
              "the two test evaluations and the overshoot",
              f"- validation during training: {p['eval_users']:,} users at the preset's beam, each epoch from "
              f"epoch {p['eval_start']}"]
    if p.get("decode_speed"):
        lines += speed_table(p["decode_speed"])
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    args = resolve(args)
    clock = Clock(args.quiet)
    device = pick_device(args)
    if device is None:
        raise SystemExit(2)
    precision = pick_precision(args, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 decoding on tensor cores
        torch.backends.cudnn.allow_tf32 = True
    elif not args.tiny:
        clock.say("warning: no CUDA device; running the full benchmark on the CPU (--allow-cpu) takes hours")
    clock.say(f"device {device_name(device)}, training precision {precision}, torch {torch.__version__}")
    no_faiss = faiss_missing()
    args.runs.mkdir(parents=True, exist_ok=True)

    from diffgrm.errors import DiffGRMError
    from diffgrm.prepare import load_prepared

    try:
        data, prep = prepare_data(args, clock, no_faiss)
        prepared = load_prepared(data)
        trained = {kind: train_model(kind, prepared, args, device, precision, clock) for kind in MODELS}
        scores = {kind: evaluate_model(kind, prepared, args, device, clock) for kind in MODELS}
        speed = decode_speeds(prepared, args, device, clock)
    except DiffGRMError as exc:
        raise SystemExit(f"error: {exc}") from None
    stages = {"prepare": prep.get("minutes")}
    for kind in MODELS:
        stages[f"train_{kind}"] = trained[kind].get("minutes")
        stages[f"evaluate_{kind}"] = scores[kind].get("minutes")
    known = [v for v in stages.values() if v is not None]
    models = {}
    for kind in MODELS:
        t, s = trained[kind], scores[kind]
        models[kind] = {
            "run": t["run"], "epochs": t["epochs"], "best_epoch": t["best_epoch"], "max_minutes": t["max_minutes"],
            "precision": t["precision"], "parameters": t.get("parameters"), "train_reused": t["reused"],
            "eval_reused": s["reused"], "item": s["item"], "sid": s["sid"], "distinct_top10": s["distinct_top10"],
            "beam": s["beam"], "users": s["users"], "split": s["split"], "users_per_s": s["users_per_s"],
            "eval_batch": s["batch_users"],
            "history": [{k: r[k] for k in ("epoch", "loss", "train_seconds", "samples_per_second") if k in r}
                        | ({"valid_ndcg@10": r["valid"]["ndcg@10"]} if "valid" in r else {}) for r in t["history"]],
        }
    _, cfg = configs("diffgrm", prepared, args, precision)
    payload = {
        "dataset": prepared.report["dataset"], "data": str(data), "preset": "tiny" if args.tiny else "paper",
        "tiny": args.tiny, "device": device_name(device), "device_type": device.type, "precision": precision,
        "tf32": device.type == "cuda", "torch": torch.__version__, "cuda": torch.version.cuda,
        "split": args.split, "beam": args.beam, "users": scores["diffgrm"]["users"],
        "eval_users": cfg.eval_users, "eval_start": cfg.eval_start, "epochs_max": cfg.epochs,
        "budget_minutes": args.budget, "prepare_reused": prep["reused"],
        "stages": stages, "stage_minutes": sum(known) if len(known) == len(stages) else None,
        "wall_minutes": clock.minutes(), "popularity": scores["diffgrm"]["popularity"], "models": models,
        "decode_speed": speed,
    }
    publish(args.out, payload, render)
    clock.say(f"wrote {Path(args.out).with_suffix('.md')} and .json")
    return payload


STAGES = {"run": run}
