"""The quality levers of issue 12, one row each, on the validation split against one baseline.

    .venv/bin/python bench/ablate.py                                  # every row, in order
    .venv/bin/python bench/ablate.py --rows baseline item-id-emb      # some rows
    .venv/bin/python bench/ablate.py --trained-only                   # the table of what exists
    .venv/bin/python bench/ablate.py --sids-only                      # what each SID row's digits carry
    .venv/bin/python bench/ablate.py --quick --data DIR               # a smoke run

Every row is the `cpu` preset's DiffGRM (seed 0, budgets in epochs, never minutes) with one
thing changed: a training or model setting, the decoding beam, or the SIDs themselves (rows with
a tokenizer change prepare their own folder from the same raw data; embeddings come from the
cache). Each run lives in RUNS/<row> and its evaluation beside it, so a second call reuses
both; the table is rewritten after every row, so an interrupted sweep keeps what it finished.
Rows are screened on the validation split (all users, item level), one seed: a screen, not the
final table, which bench/quality.py makes on the test split with three seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffgrm.config import preset, tokenizer_preset  # noqa: E402
from diffgrm.data import EMBEDDINGS_FILE  # noqa: E402
from diffgrm.decode import Recommender  # noqa: E402
from diffgrm.prepare import load_prepared  # noqa: E402
from diffgrm.train import load_run, subsample, train  # noqa: E402


@dataclass(frozen=True)
class Row:
    lever: str
    label: str
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    tokenizer: dict = field(default_factory=dict)
    kind: str = "diffgrm"
    beam: int | None = None  # evaluate this row's baseline checkpoint at another beam
    same_as: str | None = None  # reuse that row's checkpoint
    epochs_factor: int = 1  # train this many times the sweep's epochs


ROWS: dict[str, Row] = {
    "baseline": Row("-", "`cpu` preset: d 128, 2 decoder layers, min history 2, smoothing 0.2"),
    "epochs-x2": Row("1 budget", "twice the epochs", epochs_factor=2),
    "min-history-1": Row("2 samples", "training samples from 1 history item", train={"min_history": 1}),
    "beam-256": Row("3 test beam", "baseline checkpoint decoded at beam 256", beam=256, same_as="baseline"),
    "input-dropout-0.1": Row("4 regularisation", "dropout 0.1 on the decoder's input embeddings", model={"input_dropout": 0.1}),
    "input-dropout-0.2": Row("4 regularisation", "dropout 0.2 on the decoder's input embeddings", model={"input_dropout": 0.2}),
    "pca-128": Row("5 SIDs", "PCA to 128 dimensions", tokenizer={"pca_dim": 128}),
    "no-whiten": Row("5 SIDs", "PCA without whitening", tokenizer={"whiten": False}),
    "digits-6": Row("5 SIDs", "6 digits x 256", tokenizer={"n_digits": 6}),
    "digits-8": Row("5 SIDs", "8 digits x 256", tokenizer={"n_digits": 8}),
    "codebook-128": Row("5 SIDs", "4 digits x 128", tokenizer={"codebook_size": 128}),
    "rq": Row("5 SIDs", "residual quantization instead of OPQ", tokenizer={"method": "rq"}),
    "d256": Row("6 size", "d 256, 4 decoder layers, FFN 1024", model={"d_model": 256, "d_ff": 1024, "dec_layers": 4}),
    "item-id-emb": Row("7 history (extension)", "item-id embedding added to each history item", model={"item_id_emb": True}),
    "smoothing-0.1": Row("8 loss", "label smoothing 0.1", train={"label_smoothing": 0.1}),
    "smoothing-0.0": Row("8 loss", "label smoothing 0.0", train={"label_smoothing": 0.0}),
    "combined": Row("winners", "item-id embedding + input dropout 0.1 + smoothing 0.1",
                    model={"item_id_emb": True, "input_dropout": 0.1}, train={"label_smoothing": 0.1}),
    "ar": Row("AR", "AR decoder, same SIDs and settings", kind="ar"),
    "ar-item-id-emb": Row("AR", "AR decoder with the item-id embedding", kind="ar", model={"item_id_emb": True}),
    "ar-combined": Row("AR", "AR decoder with the winners' settings", kind="ar",
                       model={"item_id_emb": True, "input_dropout": 0.1}, train={"label_smoothing": 0.1}),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="runs/beauty", help="the baseline's prepared folder (made from --dataset if missing)")
    p.add_argument("--dataset", default=str(ROOT.parent / "shared" / "data" / "amazon-beauty"))
    p.add_argument("--runs", default="runs/ablation", help="where the rows' runs live (RUNS/e<epochs>/<row>; SIDs in RUNS/data)")
    p.add_argument("--epochs", type=int, default=None, help="the sweep's training epochs (default: the preset's)")
    p.add_argument("--out", default=None, help="OUT.md and OUT.json are written (default bench/results/ablation-e<epochs>)")
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    p.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "paper"])
    p.add_argument("--beam", type=int, default=32)
    p.add_argument("--users", type=int, default=0, help="validate on a seeded sample of this many users (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trained-only", action="store_true", help="train nothing; table the rows that exist")
    p.add_argument("--sids-only", action="store_true",
                   help="prepare the SID rows (and the baseline) and table what their digits carry; train nothing")
    p.add_argument("--quick", action="store_true", help="a few steps per row, for smoke tests")
    p.add_argument("--device", default=None)
    return p.parse_args(argv)


def prepared_for(row: Row, args: argparse.Namespace) -> Path:
    """The baseline's folder, or a folder of this row's SIDs prepared from the same raw data."""
    from diffgrm.cli import main as cli

    base = Path(args.data)
    if not (base / "tokenizer_report.json").is_file():
        print(f"preparing {args.dataset} into {base} ...", file=sys.stderr)
        if cli(["prepare", "--dataset", args.dataset, "--out", str(base), "--quiet"]) != 0:
            raise SystemExit(2)
    if not row.tokenizer:
        return base
    report = json.loads((base / "tokenizer_report.json").read_text())
    name = "-".join(f"{k}{v}" for k, v in sorted(row.tokenizer.items()))
    folder = Path(args.runs) / "data" / name
    if not (folder / "tokenizer_report.json").is_file():
        from diffgrm.data import load_dataset
        from diffgrm.prepare import prepare

        base_tok = tokenizer_preset("default", seed=report.get("seed", 0),
                                    codebook_size=report["codebook_size"], n_digits=report["n_digits"])
        cfg = replace(base_tok, **row.tokenizer)
        print(f"preparing {folder} ({cfg}) ...", file=sys.stderr)
        encoder = None if report.get("encoder") == EMBEDDINGS_FILE else report.get("encoder")  # vectors came with the data
        prepare(load_dataset(args.dataset), folder, cfg, encoder=encoder, progress=not args.quick)
    return folder


def train_row(name: str, row: Row, run: Path, prepared, args: argparse.Namespace) -> None:
    cat = prepared.catalogue
    model_cfg, cfg = preset(args.preset, kind=row.kind, n_digits=cat.n_digits, codebook_size=cat.codebook_size)
    model_cfg = replace(model_cfg, **row.model)
    epochs = (args.epochs or cfg.epochs) * row.epochs_factor
    cfg = replace(cfg, seed=args.seed, max_minutes=0, epochs=epochs, eval_start=min(cfg.eval_start, epochs), **row.train)
    if args.quick:
        cfg = replace(cfg, epochs=1, max_steps=3, eval_users=20, eval_beam=16)
    print(f"training {name} into {run} ...", file=sys.stderr)
    train(prepared, model_cfg, cfg, run, device=args.device, progress=not args.quick)


def evaluate_row(run: Path, beam: int, prepared, args: argparse.Namespace) -> dict:
    cached = run / f"ablation_valid_b{beam}_u{args.users}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    samples = prepared.splits["valid"]
    if args.users:
        samples = subsample(samples, args.users, seed=0)
    model, _, _ = load_run(run, data=prepared.path, device=args.device)
    metrics = Recommender(model).evaluate(samples, beam=beam, progress=not args.quick)
    cached.write_text(json.dumps(metrics, indent=2))
    return metrics


def run_summary(run: Path) -> dict:
    """Training time and epochs of a run, from its history."""
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines() if line.strip()]
    meta = json.loads((run / "config.json").read_text())
    seconds = sum(r.get("train_seconds", 0) + r.get("valid_seconds", 0) for r in rows)
    return {"epochs": len(rows), "best_epoch": meta.get("best_epoch"), "train_minutes": round(seconds / 60, 1),
            "samples_per_epoch": rows[0]["samples"] if rows else 0}


def table(results: dict[str, dict]) -> str:
    base = results.get("baseline", {}).get("item", {}).get("ndcg@10")
    lines = ["| lever | row | setting | N@10 | R@10 | N@10 vs baseline | epochs (best) | training min |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        n10, r10 = r["item"]["ndcg@10"], r["item"]["recall@10"]
        delta = f"{(n10 - base) / base:+.1%}" if base and name != "baseline" else ""
        lines.append(f"| {r['lever']} | {name} | {r['label']} | {n10:.4f} | {r10:.4f} | {delta} | "
                     f"{r['epochs']} ({r['best_epoch']}) | {r['train_minutes']} |")
    return "\n".join(lines)


def finished_rows(args: argparse.Namespace, epochs: int) -> dict[str, dict]:
    """Every row whose run and evaluation exist on disk, whichever process made them, in table order."""
    results = {}
    for name, row in ROWS.items():
        run = run_dir(name, args, epochs)
        cached = run / f"ablation_valid_b{row.beam or args.beam}_u{args.users}.json"
        if cached.is_file() and (run / "history.jsonl").is_file():
            metrics = json.loads(cached.read_text())
            results[name] = {"lever": row.lever, "label": row.label, "run": str(run), "beam": row.beam or args.beam,
                             "item": metrics["item"], "sid": metrics["sid"], "users": metrics["users"],
                             "eval_seconds": metrics["seconds"], **run_summary(run)}
    return results


def run_dir(name: str, args: argparse.Namespace, epochs: int) -> Path:
    return Path(args.runs) / f"e{epochs}" / (ROWS[name].same_as or name)


def write_table(args: argparse.Namespace, epochs: int, dataset: str) -> dict[str, dict]:
    results = finished_rows(args, epochs)
    if not results:
        return results
    users = next(iter(results.values()))["users"]
    text = (f"{dataset}, validation split ({users:,} users), item level, `{args.preset}` preset at {epochs} epochs "
            f"(cosine schedule over them), seed {args.seed}, beam {args.beam} unless the row says\n\n" + table(results))
    out = Path(args.out or f"bench/results/ablation-e{epochs}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps(
        {"dataset": dataset, "preset": args.preset, "epochs": epochs, "seed": args.seed, "rows": results}, indent=2))
    print(text)
    return results


def sid_table(args: argparse.Namespace) -> dict[str, dict]:
    """Lever 5 before any training: how much each SID setting's digits tell apart, and collisions."""
    rows = [n for n in args.rows if n == "baseline" or ROWS[n].tokenizer]
    info = {}
    for name in rows:
        report = json.loads((prepared_for(ROWS[name], args) / "tokenizer_report.json").read_text())
        label = "OPQ 4 x 256 on whitened PCA-256 (the baseline's SIDs)" if name == "baseline" else ROWS[name].label
        info[name] = {"label": label, "seconds": report["seconds"], **report["information"]["before"]}
    lines = ["| row | setting | bits of the first k digits (before repair) | H(digit \\| others) | items sharing a SID | "
             "items beyond the first | ceiling log2 items |", "|---|---|---|---|---|---|---|"]
    for name, r in info.items():
        lines.append(f"| {name} | {r['label']} | {' / '.join(f'{b:.1f}' for b in r['prefix_bits'])} | "
                     f"{' / '.join(f'{b:.2f}' for b in r['conditional_bits'])} | {r['collision_rate_sharing']:.1%} | "
                     f"{r['collision_rate_beyond_first']:.1%} | {r['max_bits']:.2f} |")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out or "bench/results/ablation-sids")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps(info, indent=2))
    return info


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.sids_only:
        return sid_table(args)
    epochs = args.epochs or (1 if args.quick else preset(args.preset)[1].epochs)
    t0 = time.perf_counter()
    dataset, loaded = "?", {}
    for name in args.rows:
        row = ROWS[name]
        run = run_dir(name, args, epochs)
        folder = prepared_for(row, args)
        if folder not in loaded:  # most rows share the baseline's folder: read it once
            loaded[folder] = load_prepared(folder)
        prepared = loaded[folder]
        dataset = prepared.report["dataset"]
        if not (run / "model.safetensors").is_file():
            if args.trained_only:
                print(f"no run for {name} in {run}: left out", file=sys.stderr)
                continue
            train_row(row.same_as or name, ROWS[row.same_as] if row.same_as else row, run, prepared, args)
        print(f"evaluating {name} ...", file=sys.stderr)
        evaluate_row(run, row.beam or args.beam, prepared, args)
        write_table(args, epochs, dataset)
    results = write_table(args, epochs, dataset)
    if not results:
        raise SystemExit("error: no row was trained (drop --trained-only to train)")
    print(f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
