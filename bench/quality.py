"""Quality on one split, side by side: DiffGRM and its ablations against AR and SASRec.

    .venv/bin/python bench/quality.py                       # Beauty from ../shared, seed 0, `cpu` preset
    .venv/bin/python bench/quality.py --seeds 0 1 2         # mean +- std over three seeds
    .venv/bin/python bench/quality.py --seeds 0 1 2 --trained-only   # a table of the runs that exist
    .venv/bin/python bench/quality.py --quick --data DIR    # a smoke run on any prepared folder
    .venv/bin/python bench/quality.py --passes DIFFGRM_RUN AR_RUN --split valid --beams 32 256
                                     # the speed/quality curve: CPD at S = n, n/2, 1 passes vs AR

Variants (all on the same prepared data, the same SIDs and the same leave-one-out split):

  diffgrm   DiffGRM trained with OCN, decoded with CPD (confidence order)
  random    DiffGRM trained with random masking (no OCN), decoded with CPD
  fixed     the `diffgrm` checkpoint decoded in a fixed left-to-right digit order (no CPD)
  ar        an autoregressive decoder on the same SIDs, same encoder and sizes
  sasrec    SASRec with a full-softmax loss over item ids (no SIDs)

Each trained model lives in RUNS/<variant>-s<seed> and each evaluation in that folder's
``bench_<split>_<order>_b<beam>_u<users>.json``, so a second call reuses both and only fills
what is missing (delete a folder to retrain). Prints a markdown table (mean +- std over seeds,
item level and SID level) and writes it with the raw numbers to OUT.md / OUT.json.

Training budgets are epochs, not minutes (the preset's epochs for DiffGRM and AR, with its time
cap switched off; ``--sasrec-epochs`` for SASRec), so a loaded machine makes a run slower, never
different. On this 2-core CPU one DiffGRM run takes about half an hour.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffgrm.config import preset
from diffgrm.decode import Recommender
from diffgrm.prepare import load_prepared
from diffgrm.sasrec import SASRecConfig, evaluate_sasrec, load_sasrec, train_sasrec
from diffgrm.train import load_run, subsample, train

VARIANTS = ("diffgrm", "random", "fixed", "ar", "sasrec")
LABELS = {
    "diffgrm": "DiffGRM (OCN + CPD)",
    "random": "DiffGRM, random masking (no OCN)",
    "fixed": "DiffGRM, fixed digit order (no CPD)",
    "ar": "AR decoder, same SIDs",
    "sasrec": "SASRec (full softmax)",
}
METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="runs/beauty", help="prepared folder (prepared from --dataset if missing)")
    p.add_argument("--dataset", default=str(ROOT.parent / "shared" / "data" / "amazon-beauty"),
                   help="raw dataset to prepare when --data does not exist")
    p.add_argument("--runs", default="runs/quality", help="where the trained runs live")
    p.add_argument("--out", default="bench/results/quality", help="OUT.md and OUT.json are written")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "paper"])
    p.add_argument("--beam", type=int, default=32)
    p.add_argument("--split", default="test", choices=["test", "valid"])
    p.add_argument("--users", type=int, default=0, help="a seeded sample of this many users (0 = all)")
    p.add_argument("--sasrec-epochs", type=int, default=17, help="SASRec training epochs (constant learning rate)")
    p.add_argument("--trained-only", action="store_true",
                   help="train nothing: report the (variant, seed) runs that exist and leave the others out")
    p.add_argument("--quick", action="store_true", help="tiny training (a few steps) for smoke tests")
    p.add_argument("--device", default=None)
    p.add_argument("--passes", nargs=2, metavar=("DIFFGRM_RUN", "AR_RUN"),
                   help="instead of the variants: two trained runs, DiffGRM decoded with S = n, n/2 and 1 network "
                        "passes and AR, at each of --beams (OUT defaults to bench/results/passes)")
    p.add_argument("--beams", nargs="+", type=int, default=[32, 256], help="beams of the --passes curve")
    p.add_argument("--speed-users", type=int, default=2000,
                   help="--passes: users/s measured by bench/decode_speed.py on a seeded sample of this many users "
                        "of the split, at most --users (1 thread, best of 3, never cached; 0 = as many as --users)")
    args = p.parse_args(argv)
    if min(args.beams) < 10 or args.beam < 10:
        p.error("beams must be at least 10 (the metrics read the Top-10)")
    if args.passes and args.out == "bench/results/quality":
        args.out = "bench/results/passes"
    return args


def ensure_data(args: argparse.Namespace) -> Path:
    data = Path(args.data)
    if not (data / "tokenizer_report.json").is_file():
        from diffgrm.cli import main as cli

        print(f"preparing {args.dataset} into {data} ...", file=sys.stderr)
        if cli(["prepare", "--dataset", args.dataset, "--out", str(data), "--quiet"]) != 0:
            raise SystemExit(2)
    return data


def train_variant(variant: str, seed: int, run: Path, prepared, args: argparse.Namespace) -> None:
    """Train the checkpoint a variant needs into ``run`` (``fixed`` reuses ``diffgrm``'s)."""
    cat = prepared.catalogue
    if variant == "sasrec":
        cfg = SASRecConfig(seed=seed, epochs=args.sasrec_epochs, max_minutes=0)
        if args.quick:
            cfg = replace(cfg, d_model=32, n_layers=1, epochs=2, eval_users=50)
        train_sasrec(prepared, cfg, run, device=args.device, progress=not args.quick)
        return
    kind = "ar" if variant == "ar" else "diffgrm"
    model_cfg, cfg = preset(args.preset, kind=kind, n_digits=cat.n_digits, codebook_size=cat.codebook_size)
    # budgets are epochs, never minutes: a busy machine changes the wall time, not the model
    cfg = replace(cfg, seed=seed, noising="random" if variant == "random" else cfg.noising, max_minutes=0)
    if args.quick:
        cfg = replace(cfg, epochs=1, max_steps=3, eval_users=20, eval_beam=16, max_minutes=0)
    train(prepared, model_cfg, cfg, run, device=args.device, progress=not args.quick)


def evaluate_variant(variant: str, run: Path, prepared, args: argparse.Namespace) -> dict:
    order = "fixed" if variant == "fixed" else "confidence"
    cached = run / f"bench_{args.split}_{order}_b{args.beam}_u{args.users}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    samples = prepared.splits[args.split]
    if args.users:
        samples = subsample(samples, args.users, seed=0)
    if variant == "sasrec":
        metrics = evaluate_sasrec(load_sasrec(run, device=args.device or "cpu"), samples, prepared.catalogue.codes,
                                  device=args.device or "cpu")
    else:
        model, _, _ = load_run(run, data=prepared.path, device=args.device)
        metrics = Recommender(model).evaluate(samples, beam=args.beam, order=order, progress=not args.quick)
    metrics["order"] = order
    cached.write_text(json.dumps(metrics, indent=2))
    return metrics


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def table(results: dict[str, list[dict]], level: str) -> list[str]:
    rows = [f"| model ({level} level) | seeds | " + " | ".join(m.replace("recall", "R").replace("ndcg", "N") for m in METRICS) + " |",
            "|---|---|" + "---|" * len(METRICS)]
    for variant, runs in results.items():
        cells = [mean_std([r[level][m] for r in runs]) for m in METRICS]
        rows.append(f"| {LABELS[variant]} | {len(runs)} | " + " | ".join(cells) + " |")
    return rows


def passes_curve(args: argparse.Namespace) -> dict:
    """NDCG@10 and users/s on one split of a DiffGRM run at S = n, n/2 and 1 network passes and of
    an AR run, at each beam: the knob diffusion gives and AR does not. Each evaluation is kept in
    the run folder (``passes_<split>_S<S>_b<beam>_u<users>.json``) and reused; users/s is measured
    afresh every time by ``bench/decode_speed.py`` (payload ``speed``; a row's own ``users_per_s``
    is its evaluation's throughput, under whatever threads and load that evaluation had)."""
    from bench.decode_speed import measure, pass_counts, sample_histories
    from bench.results_io import write_results

    t0 = time.perf_counter()
    loaded = {name: load_run(run, device=args.device) for name, run in zip(("diffgrm", "ar"), args.passes)}
    (diff, prepared, _), (ar, ar_prepared, _) = loaded["diffgrm"], loaded["ar"]
    if diff.config.kind != "diffgrm" or ar.config.kind != "ar":
        raise SystemExit("error: --passes takes a DiffGRM run, then an AR run")
    if prepared.catalogue.fingerprint != ar_prepared.catalogue.fingerprint:
        raise SystemExit("error: the two runs were trained on different catalogues")
    samples = subsample(prepared.splits[args.split], args.users, seed=0)
    n = diff.config.n_digits
    rows = []
    for beam in args.beams:
        for model, run, steps in [(diff, args.passes[0], s) for s in pass_counts(n)] + [(ar, args.passes[1], n)]:
            cached = Path(run) / f"passes_{args.split}_S{steps}_b{beam}_u{args.users}.json"
            if cached.is_file():
                metrics = json.loads(cached.read_text())
            else:
                print(f"evaluating {run} at beam {beam}, {steps} passes ...", file=sys.stderr)
                metrics = Recommender(model).evaluate(samples, beam=beam, passes=steps if model is diff else None,
                                                      progress=not args.quick)
                cached.write_text(json.dumps(metrics, indent=2))
            rows.append({"beam": beam, "decoder": "DiffGRM (CPD)" if model is diff else "AR (cached)",
                         "passes": steps, "run": str(run), **metrics})
    for r in rows:  # quality relative to one digit per pass at the same beam
        full = next(x for x in rows if x["beam"] == r["beam"] and x["decoder"] == r["decoder"] and x["passes"] == n)
        r["ndcg10_vs_n_passes"] = r["item"]["ndcg@10"] / max(full["item"]["ndcg@10"], 1e-12)
        r["users_per_s"] = r["users"] / r["seconds"]  # evaluation throughput, not the speed column
    # the speed column: one method for every decode speed number (bench/decode_speed.py)
    diff_rec, ar_rec = Recommender(diff), Recommender(ar)
    speed_users = min(args.speed_users or len(samples), len(samples))  # never more users than the curve reads
    speed_histories = sample_histories(prepared, args.split, speed_users, seed=0)
    speed = {}
    for beam in args.beams:
        specs = {("DiffGRM (CPD)", s): (diff_rec, s) for s in pass_counts(n)} | {("AR (cached)", n): (ar_rec, None)}
        found = measure({f"{d} S={s}": spec for (d, s), spec in specs.items()}, speed_histories, beam=beam,
                        threads=1, repeats=1 if args.quick else 3, sample={"split": args.split, "seed": 0})
        speed[beam] = {key: found[f"{key[0]} S={key[1]}"] for key in specs}
    ups = {(r["beam"], r["decoder"], r["passes"]): speed[r["beam"]][(r["decoder"], r["passes"])]["users_per_s"]
           for r in rows}
    lines = [f"{prepared.report['dataset']}, {args.split} split, {len(samples):,} users, item level; "
             f"{args.passes[0]} and {args.passes[1]}; users/s by bench/decode_speed.py ({len(speed_histories):,} "
             f"seeded {args.split} users, batches of 32, 1 thread, encoder + search, best of "
             f"{1 if args.quick else 3} after a warm-up batch)", "",
             "| beam | decoder | passes | R@10 | N@10 | N@10 vs n passes | users/s |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['beam']} | {r['decoder']} | {r['passes']} | {r['item']['recall@10']:.4f} | "
              f"{r['item']['ndcg@10']:.4f} | {r['ndcg10_vs_n_passes']:.3f} | "
              f"{ups[(r['beam'], r['decoder'], r['passes'])]:,.0f} |" for r in rows]
    half = max(1, n // 2)
    targets = {}
    for beam in args.beams:
        pick = {(r["decoder"], r["passes"]): r for r in rows if r["beam"] == beam}
        h = pick[("DiffGRM (CPD)", half)]
        h_ups = speed[beam][("DiffGRM (CPD)", half)]["users_per_s"]
        ar_ups = speed[beam][("AR (cached)", n)]["users_per_s"]
        targets[beam] = {"half_within_5pct": h["ndcg10_vs_n_passes"] >= 0.95, "half_faster_than_ar": h_ups > ar_ups}
        lines += ["", f"Beam {beam}: S = {half} keeps {h['ndcg10_vs_n_passes']:.1%} of the {n}-pass NDCG@10 "
                      f"at {h_ups / ar_ups:.2f}x the cached AR decoder's users/s."]
    text = "\n".join(lines)
    print(text)
    speed_out = {str(beam): list(per.values()) for beam, per in speed.items()}
    if not args.quick:
        write_results(args.out, text, {"split": args.split, "users": len(samples), "rows": rows, "targets": targets,
                                       "speed": speed_out, "seconds": round(time.perf_counter() - t0, 1)})
    return {"rows": rows, "targets": targets, "speed": speed_out}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.passes:
        return passes_curve(args)
    prepared = load_prepared(ensure_data(args))
    runs_dir = Path(args.runs)
    results: dict[str, list[dict]] = {}
    t0 = time.perf_counter()
    for variant in args.variants:
        for seed in args.seeds:
            run = runs_dir / f"{'diffgrm' if variant == 'fixed' else variant}-s{seed}"
            if not (run / "model.safetensors").is_file():
                if args.trained_only:
                    print(f"no run for {variant} (seed {seed}) in {run}: left out", file=sys.stderr)
                    continue
                print(f"training {variant} (seed {seed}) into {run} ...", file=sys.stderr)
                train_variant("diffgrm" if variant == "fixed" else variant, seed, run, prepared, args)
            print(f"evaluating {variant} (seed {seed}) ...", file=sys.stderr)
            metrics = evaluate_variant(variant, run, prepared, args)
            metrics["seed"], metrics["run"] = seed, str(run)
            results.setdefault(variant, []).append(metrics)
    if not results:
        raise SystemExit(f"error: no trained run of {', '.join(args.variants)} in {runs_dir} (drop --trained-only to train)")
    n_users = next(iter(results.values()))[0]["users"]
    seeds = sorted({r["seed"] for runs in results.values() for r in runs})
    encoder = Path(str(prepared.report.get("encoder", "?"))).name  # a folder path names its model last
    head = (f"{prepared.report['dataset']}, {args.split} split, {n_users:,} users, beam {args.beam}, "
            f"`{args.preset}` preset, encoder {encoder}, seeds {' '.join(map(str, seeds))}")
    lines = [head, "", *table(results, "item"), "", *table(results, "sid")]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    payload = {"dataset": prepared.report["dataset"], "encoder": encoder, "split": args.split, "beam": args.beam,
               "preset": args.preset, "seeds": seeds, "users": n_users, "results": results,
               "seconds": round(time.perf_counter() - t0, 1)}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2))
    return payload


if __name__ == "__main__":
    main()
