"""The quality levers, one row each, on the validation split against one baseline.

    python -m bench ablate train --epochs 6 --rows baseline item-id-emb      # some rows (resumable)
    python -m bench ablate evaluate --epochs 6                                # the table of the rows that exist
    python -m bench ablate table                                              # the committed .md from its .json
    python -m bench ablate train --quick --data DIR                           # a smoke run

Every row is the `cpu` preset's DiffGRM (seed 0, budgets in epochs, never minutes) with one
thing changed: a training or model setting, the decoding beam, or the SIDs themselves (rows with
a tokenizer change prepare their own folder from the same raw data under RUNS/data; embeddings
come from the cache). Each run lives in RUNS/e<epochs>/<row> and its evaluation beside it, so a
second call reuses both; ``evaluate`` tables every row whose run exists, whichever process made
it, so two sweeps can run side by side. Rows are screened on the validation split (all users,
item level), one seed: a screen, not the final table (``python -m bench quality`` or ``final``).
What the SID rows' digits carry before training: ``python -m bench ablate-sids``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.common import (BEAUTY, RESULTS_DIR, ensure_prepared, eval_file, evaluate_cached, finished, history_seconds,
                          md_table, quick, read_history, train_or_reuse)
from bench.results_io import publish

RESULTS = ("ablation-e6", "ablation-e18")


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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="runs/beauty", help="the baseline's prepared folder (made from --dataset if missing)")
    p.add_argument("--dataset", default=str(BEAUTY))
    p.add_argument("--runs", default="runs/ablation", help="where the rows' runs live (RUNS/e<epochs>/<row>; SIDs in RUNS/data)")
    p.add_argument("--epochs", type=int, default=None, help="the sweep's training epochs (default: the preset's)")
    p.add_argument("--out", default=None, help="OUT.md and OUT.json (default bench/results/ablation-e<epochs>)")
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    p.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "paper"])
    p.add_argument("--beam", type=int, default=32)
    p.add_argument("--users", type=int, default=0, help="validate on a seeded sample of this many users (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a few steps per row, for smoke tests")
    p.add_argument("--device", default=None)


def prepared_for(row: Row, args: argparse.Namespace) -> Path:
    """The baseline's folder, or a folder of this row's SIDs prepared from the same raw data."""
    base = ensure_prepared(args.data, args.dataset)
    if not row.tokenizer:
        return base
    from diffgrm.config import tokenizer_preset
    from diffgrm.data import EMBEDDINGS_FILE, load_dataset
    from diffgrm.prepare import prepare

    folder = Path(args.runs) / "data" / "-".join(f"{k}{v}" for k, v in sorted(row.tokenizer.items()))
    if not (folder / "tokenizer_report.json").is_file():
        report = json.loads((base / "tokenizer_report.json").read_text())
        cfg = replace(tokenizer_preset("default", seed=report.get("seed", 0), codebook_size=report["codebook_size"],
                                       n_digits=report["n_digits"]), **row.tokenizer)
        encoder = None if report.get("encoder") == EMBEDDINGS_FILE else report.get("encoder")  # vectors came with the data
        prepare(load_dataset(args.dataset), folder, cfg, encoder=encoder, progress=not args.quick)
    return folder


def sweep_epochs(args: argparse.Namespace) -> int:
    from diffgrm.config import preset

    return args.epochs or (1 if args.quick else preset(args.preset)[1].epochs)


def run_dir(name: str, args: argparse.Namespace) -> Path:
    return Path(args.runs) / f"e{sweep_epochs(args)}" / (ROWS[name].same_as or name)


class Folders(dict):
    """Prepared folders loaded once each (most rows share the baseline's)."""

    def get_for(self, row: Row, args: argparse.Namespace):
        from diffgrm.prepare import load_prepared

        folder = prepared_for(row, args)
        if folder not in self:
            self[folder] = load_prepared(folder)
        return self[folder]


def train_stage(args: argparse.Namespace) -> int:
    from diffgrm.config import preset

    folders = Folders()
    for name in args.rows:
        row = ROWS[ROWS[name].same_as or name]
        prepared = folders.get_for(row, args)
        cat = prepared.catalogue
        model_cfg, cfg = preset(args.preset, kind=row.kind, n_digits=cat.n_digits, codebook_size=cat.codebook_size)
        epochs = sweep_epochs(args) * row.epochs_factor
        cfg = replace(cfg, seed=args.seed, max_minutes=0, epochs=epochs, eval_start=min(cfg.eval_start, epochs),
                      **row.train)
        train_or_reuse(run_dir(name, args), prepared, replace(model_cfg, **row.model), quick(cfg) if args.quick else cfg,
                       device=args.device, progress=not args.quick)
    return 0


def evaluate_stage(args: argparse.Namespace) -> dict[str, dict]:
    """Evaluate every row whose run exists (in table order) and write the table."""
    folders, results, dataset = Folders(), {}, "?"
    for name, row in ROWS.items():
        run = run_dir(name, args)
        beam = row.beam or args.beam
        if not finished(run) or (name not in args.rows and not eval_file(run, "valid", beam=beam, users=args.users).is_file()):
            continue  # rows another sweep evaluated stay in the table
        prepared = folders.get_for(row, args)
        dataset = prepared.report["dataset"]
        m = evaluate_cached(run, prepared, "valid", beam=beam, users=args.users, device=args.device,
                            progress=not args.quick)
        history = read_history(run)
        best = json.loads((run / "config.json").read_text()).get("best_epoch")
        results[name] = {"lever": row.lever, "label": row.label, "run": str(run), "beam": beam, "item": m["item"],
                         "sid": m["sid"], "users": m["users"], "eval_seconds": m["seconds"], "epochs": len(history),
                         "best_epoch": best, "train_minutes": round(history_seconds(history) / 60, 1),
                         "samples_per_epoch": history[0]["samples"] if history else 0}
    if not results:
        raise SystemExit("error: no row was trained (`train` first)")
    payload = {"dataset": dataset, "preset": args.preset, "epochs": sweep_epochs(args), "seed": args.seed,
               "rows": results}
    publish(args.out or RESULTS_DIR / f"ablation-e{payload['epochs']}", payload, render)
    return results


def render(payload: dict) -> str:
    rows = payload["rows"]
    users = next(iter(rows.values()))["users"]
    beam = next(r["beam"] for name, r in rows.items() if ROWS[name].beam is None)
    base = rows.get("baseline", {}).get("item", {}).get("ndcg@10")
    cells = []
    for name, r in rows.items():
        n10, r10 = r["item"]["ndcg@10"], r["item"]["recall@10"]
        delta = f"{(n10 - base) / base:+.1%}" if base and name != "baseline" else ""
        cells.append([r["lever"], name, r["label"], f"{n10:.4f}", f"{r10:.4f}", delta,
                      f"{r['epochs']} ({r['best_epoch']})", r["train_minutes"]])
    head = (f"{payload['dataset']}, validation split ({users:,} users), item level, `{payload['preset']}` preset at "
            f"{payload['epochs']} epochs (cosine schedule over them), seed {payload['seed']}, beam {beam} unless the "
            "row says")
    return "\n".join([head, "", *md_table(["lever", "row", "setting", "N@10", "R@10", "N@10 vs baseline",
                                            "epochs (best)", "training min"], cells)])


STAGES = {"train": train_stage, "evaluate": evaluate_stage}
