"""diffgrm's DiffGRM beside Cornac's port on one split, with the same SIDs and the same epochs.

    python -m bench cornac train        # diffgrm's `cpu` preset and Cornac's DiffGRM, 3 epochs each
    python -m bench cornac evaluate     # the test split at beam 32: bench/results/cornac.{md,json}
    python -m bench cornac table        # the committed .md from its .json

Both libraries train on the prepared folder's leave-one-out training part with its SIDs (Cornac
gets the catalogue's codes as ``item_sids``, so its own PSE is skipped) at the same sizes, batch,
learning-rate schedule and label smoothing. Cornac's fitted model is exported with
:func:`diffgrm.interop.export_cornac` and imported with :func:`diffgrm.interop.import_cornac`, so
its network is scored by the same code as diffgrm's run; it is also scored by Cornac's own batched
decode (``cpd_decode_batch``, what Cornac's validation runs; ``score()`` runs the same search one
user per call). Each finished step leaves its files in ``--runs`` and a second call skips it.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from bench.common import (BEAUTY, RESULTS_DIR, commit, ensure_prepared, evaluate_cached, finished, loadavg, machine,
                          md_table, quick, read_history, say, train_or_reuse)
from bench.results_io import publish

RESULTS = ("cornac",)
QUICK_PREPARE = ("--codebook", "8")  # the quick path's catalogue: tiny data, small codebooks


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="runs/beauty", help="the prepared folder (made from --dataset when missing)")
    p.add_argument("--dataset", default=str(BEAUTY), help="the dataset folder --data was prepared from")
    p.add_argument("--runs", default=None, help="where both runs, Cornac's export and the caches live "
                   "(default runs/cornac-eEPOCHS)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs, the same for both libraries")
    p.add_argument("--threads", type=int, default=1, help="torch threads for training and decoding")
    p.add_argument("--beam", type=int, default=32)
    p.add_argument("--users", type=int, default=5000, help="a seeded sample of this many test users (0 = all)")
    p.add_argument("--batch", type=int, default=32, help="users decoded together")
    p.add_argument("--out", default=None, help="OUT.md and OUT.json (default bench/results/cornac)")
    p.add_argument("--quick", action="store_true",
                   help="the `tiny` preset for a few steps on small data (give --data, --dataset, --runs); "
                        "writes results only with --out")


# --------------------------------------------------------------------------- settings


def runs_folder(args: argparse.Namespace) -> Path:
    return Path(args.runs or f"runs/cornac-e{args.epochs}")


def configs(args: argparse.Namespace, prepared):
    """diffgrm's (model, training) configs: the `cpu` preset at ``--epochs`` (quick: `tiny`, a few steps)."""
    from diffgrm.config import preset

    cat = prepared.catalogue
    model_cfg, cfg = preset("tiny" if args.quick else "cpu", "diffgrm", cat.n_digits, cat.codebook_size,
                            epochs=args.epochs)
    return model_cfg, (quick(cfg) if args.quick else cfg)


def train_rows(args: argparse.Namespace, prepared) -> tuple[list[str], list[tuple]]:
    """The item ids in the catalogue's order and Cornac's USIT rows: each user's sequence minus its
    last two items (the leave-one-out training part diffgrm trains on)."""
    from diffgrm.data import load_dataset

    ds = load_dataset(args.dataset, download=False)
    ids = prepared.items["item_id"].tolist()
    if ds.items["item_id"].tolist() != ids:
        raise SystemExit(f"error: {args.dataset} is not the dataset {args.data} was prepared from (item order differs)")
    rows = [(str(u), str(u), ids[i], t) for u, seq in zip(ds.users, ds.sequences) for t, i in enumerate(seq[:-2])]
    return ids, rows


def cornac_settings(model_cfg, cfg, n_examples: int, beam: int) -> dict:
    """Cornac's DiffGRM settings matching diffgrm's configs (docs/interop.md has the table). diffgrm
    caps the warm-up at half the steps, so Cornac gets the warm-up diffgrm runs."""
    steps = math.ceil(n_examples / cfg.batch_size)
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    return dict(d_model=model_cfg.d_model, n_head=model_cfg.n_heads, n_inner=model_cfg.d_ff,
                encoder_n_layer=max(1, model_cfg.enc_layers), decoder_n_layer=model_cfg.dec_layers,
                dropout=model_cfg.dropout, max_len=model_cfg.max_history, min_history=cfg.min_history,
                masking_strategy="guided", view_loss_reduction="token_mean", n_epochs=cfg.epochs,
                batch_size=cfg.batch_size, learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
                warmup_steps=min(cfg.warmup_steps, steps * cfg.epochs // 2), lr_schedule="cosine",
                label_smoothing=cfg.label_smoothing, max_grad_norm=cfg.grad_clip, scoring="paper",
                beam_size=beam, model_selection="last", seed=cfg.seed, device="cpu")


UNMATCHED = [
    ("network layout", "diffgrm's (4 departures, docs/interop.md)", "the released one"),
    ("AdamW betas", "(0.9, 0.98)", "(0.9, 0.999), torch's default (not exposed)"),
    ("dropout on the decoder's input embeddings", "0 (`input_dropout`)", "the network's dropout (not exposed)"),
    ("batches", "histories of similar length, padded to the batch's longest",
     "shuffled, every history padded to `max_len`"),
    ("samples", "a `max_history` window over every next-item prefix", "the first `max_len` next-item prefixes"),
    ("checkpoint", "the best validated epoch (2,000 validation users; only the last epoch validates)",
     "the last epoch (`model_selection='last'`)"),
]


# --------------------------------------------------------------------------- train


def fit_cornac(args: argparse.Namespace, prepared, model_cfg, cfg, export: Path) -> dict:
    """Fit Cornac's DiffGRM on the training part with the catalogue's SIDs and export it; what fitting measured."""
    from cornac.data import SequentialDataset
    from cornac.models.diffgrm import DiffGRM

    from diffgrm.interop import export_cornac

    ids, rows = train_rows(args, prepared)
    train_set = SequentialDataset.build(rows, fmt="USIT", seed=cfg.seed,
                                        global_iid_map=OrderedDict((iid, k) for k, iid in enumerate(ids)))
    per_user = {}
    for u, *_ in rows:
        per_user[u] = per_user.get(u, 0) + 1
    n_examples = sum(max(0, min(n, model_cfg.max_history + 1) - cfg.min_history) for n in per_user.values())
    cat = prepared.catalogue
    settings = cornac_settings(model_cfg, cfg, n_examples, args.beam)
    model = DiffGRM(item_sids=cat.codes, n_digit=cat.n_digits, codebook_size=cat.codebook_size, **settings)
    say(f"fitting Cornac's DiffGRM, {cfg.epochs} epochs ({time.strftime('%H:%M')}) ...")
    load = loadavg()
    model.fit(train_set)
    if list(model.iid_map) != ids:
        raise SystemExit("error: Cornac's item index is not the catalogue's order")
    export_cornac(model, export)
    samples = int(model.n_training_examples_) * cfg.epochs
    return {"settings": settings, "examples_per_epoch": int(model.n_training_examples_), "samples": samples,
            "train_seconds": round(model.training_time_, 2), "samples_per_s": samples / model.training_time_,
            "loss": [round(float(v), 4) for v in model.loss_history_], "loadavg": [load, loadavg()],
            "parameters": sum(p.numel() for p in model.model.parameters())}


def train_stage(args: argparse.Namespace) -> dict:
    import torch

    from diffgrm.interop import import_cornac
    from diffgrm.prepare import load_prepared

    torch.set_num_threads(args.threads)
    prepared = load_prepared(ensure_prepared(args.data, args.dataset, *(QUICK_PREPARE if args.quick else ())))
    model_cfg, cfg = configs(args, prepared)
    runs = runs_folder(args)
    runs.mkdir(parents=True, exist_ok=True)
    before = loadavg()
    if train_or_reuse(runs / "diffgrm", prepared, model_cfg, cfg, device="cpu", progress=not args.quick):
        (runs / "diffgrm-loadavg.json").write_text(json.dumps([before, loadavg()]))
    fit_file = runs / "cornac-fit.json"
    if not fit_file.is_file():
        fit_file.write_text(json.dumps(fit_cornac(args, prepared, model_cfg, cfg, runs / "cornac-export"), indent=1))
    if not finished(runs / "cornac"):
        import_cornac(runs / "cornac-export", data=args.data, out=runs / "cornac", force=True)
    return json.loads(fit_file.read_text())


# --------------------------------------------------------------------------- evaluate


def backbone(s: dict, codes: np.ndarray):
    """A fresh ``DiffGRMBackbone`` (Cornac's network) with Cornac's settings ``s`` and the SID table ``codes``."""
    from cornac.models.diffgrm.diffgrm import DiffGRMBackbone

    keys = ("max_len", "d_model", "encoder_n_layer", "decoder_n_layer", "n_head", "n_inner", "dropout",
            "label_smoothing", "view_loss_reduction", "masking_strategy")
    net = DiffGRMBackbone(n_digit=codes.shape[1], codebook_size=int(s.get("codebook_size", codes.max() + 1)),
                          **{k: s[k] for k in keys})
    net.set_item_codes(codes)
    return net


def cornac_network(export: Path):
    """Cornac's own network (``DiffGRMBackbone``) with the exported weights, and the export's record."""
    from safetensors.torch import load_file

    meta = json.loads((export / "export.json").read_text())
    net = backbone(meta["settings"], np.asarray(meta["sid_table"]))
    net.load_state_dict(load_file(str(export / "weights.safetensors")))
    return net.eval(), meta


def cornac_own(args: argparse.Namespace, samples, runs: Path) -> dict:
    """Item-level metrics and users/s of Cornac's batched decode (``cpd_decode_batch`` with the fitted
    model's scoring), each SID's items in Cornac's index order; kept in ``RUNS/cornac-own-*.json``."""
    import torch
    from cornac.models.diffgrm.diffgrm import cpd_decode_batch

    from diffgrm.metrics import ranking_metrics

    path = runs / f"cornac-own-test-u{args.users or 'all'}-b{args.beam}.json"
    if path.is_file():
        return json.loads(path.read_text())
    net, meta = cornac_network(runs / "cornac-export")
    table = np.asarray(meta["sid_table"])
    sid_items: dict[tuple, list[int]] = {}
    for i, row in enumerate(table.tolist()):
        sid_items.setdefault(tuple(row), []).append(i)
    max_len, pad = meta["settings"]["max_len"], len(table)
    say(f"decoding with Cornac's cpd_decode_batch: {len(samples)} users, beam {args.beam} ({time.strftime('%H:%M')})")
    ranked = np.full((len(samples), 10), -1, dtype=np.int64)
    short, network = 0, [0.0]

    def timed(fn):  # the network's share of the decode: time in its two calls
        def call(*a, **k):
            t = time.perf_counter()
            result = fn(*a, **k)
            network[0] += time.perf_counter() - t
            return result
        return call

    net.encode_history, net.decode_logits = timed(net.encode_history), timed(net.decode_logits)
    t0 = time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(samples), args.batch):
            batch = samples.histories[s : s + args.batch]
            iids = torch.full((len(batch), max_len), pad, dtype=torch.long)
            mask = torch.zeros(len(batch), max_len)
            for r, h in enumerate(batch):
                h = list(h)[-max_len:]
                iids[r, : len(h)] = torch.as_tensor(h, dtype=torch.long)
                mask[r, : len(h)] = 1.0
            memory, padding = net.encode_history(iids, mask)
            codes, _ = cpd_decode_batch(net, memory, padding, beam_size=args.beam, catalog_codes=table,
                                        valid_code_set=sid_items)
            for r, user_codes in enumerate(codes):
                items = [i for sid in user_codes for i in sid_items[tuple(sid)]][:10]
                ranked[s + r, : len(items)] = items
                short += len(items) < 10
    seconds = time.perf_counter() - t0
    out = {"item": ranking_metrics(ranked, samples.targets), "users": len(samples), "beam": args.beam,
           "seconds": round(seconds, 2), "network_seconds": round(network[0], 2), "short_lists": short}
    path.write_text(json.dumps(out, indent=1))
    return out


def step_profile(args: argparse.Namespace, prepared, runs: Path, steps: int, rounds: int) -> dict:
    """Seconds per training step, best of ``rounds`` rounds of ``steps`` steps, the three timed in turn:
    diffgrm's step on its length batches, Cornac's on its own batches (every history padded to
    ``max_len``), and Cornac's on diffgrm's batches padded to each batch's longest history (the
    padding's share of Cornac's step). Kept in ``RUNS/step-profile.json``."""
    import torch

    from diffgrm.fit import optimizer_step
    from diffgrm.train import SIDTask, length_batches

    path = runs / "step-profile.json"
    if path.is_file():
        return json.loads(path.read_text())
    model_cfg, cfg = configs(args, prepared)
    s = json.loads((runs / "cornac-fit.json").read_text())["settings"]
    torch.manual_seed(0)
    task = SIDTask(model_cfg, cfg, prepared, torch.device("cpu"), torch.Generator().manual_seed(0))
    ours = optimizer_step(task.model, cfg, torch.optim.AdamW(task.model.parameters(), lr=cfg.lr, betas=(0.9, 0.98)),
                          task.loss, torch.device("cpu"))
    mine = length_batches(task.lengths(), cfg.batch_size, np.random.default_rng(0))[:steps]
    codes = prepared.catalogue.codes
    net = backbone(s | {"codebook_size": model_cfg.codebook_size}, codes).train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr)

    theirs = []
    for idx in mine:  # diffgrm's batches for Cornac's network: right-padded to the longest
        hs = [list(task.data.histories[i])[-s["max_len"]:] for i in idx]
        width = max(map(len, hs))
        iids, mask = np.full((len(hs), width), len(codes)), np.zeros((len(hs), width), dtype=np.float32)
        for r, h in enumerate(hs):
            iids[r, : len(h)], mask[r, : len(h)] = h, 1
        theirs.append((iids, mask, task.data.targets[idx]))
    rng = np.random.default_rng(0)
    padded = []  # Cornac's batches: shuffled samples, every history padded to max_len
    for idx in [rng.choice(len(task.data.histories), cfg.batch_size, replace=False) for _ in range(steps)]:
        iids, mask = np.full((len(idx), s["max_len"]), len(codes)), np.zeros((len(idx), s["max_len"]), dtype=np.float32)
        for r, i in enumerate(idx):
            h = list(task.data.histories[i])[-s["max_len"]:]
            iids[r, : len(h)], mask[r, : len(h)] = h, 1
        padded.append((iids, mask, task.data.targets[idx]))

    def cornac_step(iids, mask, targets) -> None:
        opt.zero_grad()
        loss = net(torch.as_tensor(iids), torch.as_tensor(mask), torch.as_tensor(codes[targets]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), s["max_grad_norm"])
        opt.step()

    runs_ = {"diffgrm": lambda: [ours(*task.batch(idx)) for idx in mine],
             "cornac": lambda: [cornac_step(*b) for b in padded],
             "cornac_length_batches": lambda: [cornac_step(*b) for b in theirs]}
    best = {k: float("inf") for k in runs_}
    for _ in range(rounds):
        for k, fn in runs_.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], (time.perf_counter() - t0) / steps)
    out = {"steps": steps, "rounds": rounds, "batch": cfg.batch_size, "seconds_per_step": best}
    path.write_text(json.dumps(out, indent=1))
    return out


def padding_share(samples, max_len: int, min_history: int) -> float:
    """The share of Cornac's history rows that are padding in training (every history is padded to ``max_len``)."""
    lengths = np.array([min(len(h), max_len) for h in samples.histories])
    return 1 - float(lengths[lengths >= min_history].mean()) / max_len


def evaluate_stage(args: argparse.Namespace) -> dict:
    import cornac
    import torch

    import diffgrm
    from diffgrm.prepare import load_prepared
    from diffgrm.train import subsample

    torch.set_num_threads(args.threads)
    runs = runs_folder(args)
    if not (finished(runs / "diffgrm") and finished(runs / "cornac") and (runs / "cornac-fit.json").is_file()):
        raise SystemExit(f"error: train first: python -m bench cornac train --runs {runs}")
    prepared = load_prepared(args.data)
    load = loadavg()
    ours = {name: evaluate_cached(runs / name, prepared, "test", beam=args.beam, users=args.users,
                                  progress=not args.quick) for name in ("diffgrm", "cornac")}
    samples = subsample(prepared.splits["test"], args.users, seed=0)
    own = cornac_own(args, samples, runs)
    profile = step_profile(args, prepared, runs, *((2, 1) if args.quick else (10, 3)))
    fit = json.loads((runs / "cornac-fit.json").read_text())
    history = read_history(runs / "diffgrm")
    run_cfg = json.loads((runs / "diffgrm" / "config.json").read_text())
    d_samples = sum(r["samples"] for r in history)
    d_seconds = sum(r["train_seconds"] for r in history)
    model_cfg, cfg = configs(args, prepared)
    from diffgrm.train import load_run

    d_params = sum(p.numel() for p in load_run(runs / "diffgrm", data=args.data, device="cpu")[0].parameters())
    rows = {
        "diffgrm": {"label": "diffgrm's DiffGRM, diffgrm's CPD", "item": ours["diffgrm"]["item"],
                    "users": ours["diffgrm"]["users"], "seconds": ours["diffgrm"]["seconds"]},
        "cornac-cpd": {"label": "Cornac's network, diffgrm's CPD", "item": ours["cornac"]["item"],
                       "users": ours["cornac"]["users"], "seconds": ours["cornac"]["seconds"]},
        "cornac-own": {"label": "Cornac's network, Cornac's decode", "item": own["item"], "users": own["users"],
                       "seconds": own["seconds"], "network_seconds": own["network_seconds"],
                       "short_lists": own["short_lists"]},
    }
    for row in rows.values():
        row["users_per_s"] = row["users"] / row["seconds"]
    payload = {
        "dataset": prepared.report["dataset"], "split": "test", "users": len(samples),
        "all_users": len(prepared.splits["test"]), "beam": args.beam, "batch": args.batch,
        "epochs": args.epochs, "threads": args.threads, "quick": args.quick, "preset": "tiny" if args.quick else "cpu",
        "versions": {"diffgrm": diffgrm.__version__, "cornac": cornac.__version__, "torch": torch.__version__},
        "machine": machine(), "loadavg": {"diffgrm_train": _read(runs / "diffgrm-loadavg.json"),
                                          "cornac_train": fit["loadavg"], "evaluate": load},
        **commit(short=True),
        "training": {
            "diffgrm": {"samples": d_samples, "seconds": round(d_seconds, 2), "samples_per_s": d_samples / d_seconds,
                        "epochs": len(history), "best_epoch": run_cfg.get("best_epoch"),
                        "loss": [round(r["loss"], 4) for r in history], "parameters": d_params},
            "cornac": {k: fit[k] for k in ("samples", "examples_per_epoch", "loss", "parameters")}
            | {"seconds": fit["train_seconds"], "samples_per_s": fit["samples_per_s"], "epochs": len(fit["loss"])},
        },
        "settings": {"diffgrm": {"model": model_cfg.to_dict(), "train": cfg.to_dict()}, "cornac": fit["settings"]},
        "rows": rows, "step_profile": profile,
        "cornac_padding_share": padding_share(prepared.splits["train"], fit["settings"]["max_len"], cfg.min_history),
    }
    payload = json.loads(json.dumps(payload))
    out = args.out or (None if args.quick else RESULTS_DIR / "cornac")
    publish(out or "", payload, render, write=out is not None)
    return payload


def _read(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


# --------------------------------------------------------------------------- the table


def render(p: dict) -> str:
    rows, tr = p["rows"], p["training"]
    speed = {"diffgrm": tr["diffgrm"]["samples_per_s"], "cornac-cpd": tr["cornac"]["samples_per_s"],
             "cornac-own": tr["cornac"]["samples_per_s"]}
    v, m = p["versions"], p["machine"]
    users = (f"all {p['users']:,} users" if p["users"] == p["all_users"]
             else f"a seeded {p['users']:,} of {p['all_users']:,} users")
    lines = [
        f"{p['dataset']}, {p['split']} split, {users}, beam {p['beam']}, batches of {p['batch']} users; "
        f"{p['epochs']} epochs each at the `{p['preset']}` preset's sizes; "
        f"{p['threads']} torch thread{'s' if p['threads'] > 1 else ''}; "
        f"diffgrm {v['diffgrm']}, Cornac {v['cornac']}, torch {v['torch']}, Python {m['python']}, "
        f"{m['cpus']} CPUs, load average {p['loadavg']['evaluate']} before decoding, commit {p['commit']}", "",
        *md_table(["model, decoder", "NDCG@10", "Recall@10", "training samples/s", "decode users/s"],
                  [[r["label"], f"{r['item']['ndcg@10']:.4f}", f"{r['item']['recall@10']:.4f}",
                    f"{speed[k]:.0f}", f"{r['users_per_s']:.1f}"] for k, r in rows.items()]), "",
    ]
    lines += [f"- Training: diffgrm {tr['diffgrm']['samples']:,} samples in {tr['diffgrm']['seconds'] / 60:.1f} min "
              f"({tr['diffgrm']['parameters']:,} parameters), Cornac {tr['cornac']['samples']:,} in "
              f"{tr['cornac']['seconds'] / 60:.1f} min ({tr['cornac']['parameters']:,} parameters); last-epoch loss "
              f"{tr['diffgrm']['loss'][-1]:.3f} and {tr['cornac']['loss'][-1]:.3f} (each library's own loss)."]
    short = rows["cornac-own"].get("short_lists", 0)
    if short:
        lines.append(f"- Cornac's decode returned fewer than 10 items for {short:,} users: its beams are not kept "
                     "inside the catalogue, and a SID that names no item is dropped at the end.")
    lines += ["", *findings(p), "", "Settings that differ (everything else is matched: sizes, batch, learning rate, "
              "warm-up and cosine decay, gradient clip, label smoothing, OCN with a token-mean loss, epochs, seed):",
              "",
              *md_table(["setting", "diffgrm", "Cornac"], [list(r) for r in UNMATCHED])]
    return "\n".join(lines)


def findings(p: dict) -> list[str]:
    """The measured comparisons, one line each, with what the measurements say where diffgrm is not
    level on NDCG@10 or not at twice Cornac's speed."""
    rows, tr, step = p["rows"], p["training"], p["step_profile"]
    nd = {k: r["item"]["ndcg@10"] for k, r in rows.items()}
    best_cornac = max(nd["cornac-cpd"], nd["cornac-own"])
    out = [f"- NDCG@10: diffgrm's run {nd['diffgrm']:.4f}, Cornac's network {nd['cornac-cpd']:.4f} with diffgrm's "
           f"CPD and {nd['cornac-own']:.4f} with Cornac's decode: diffgrm's run is "
           + ("level or ahead." if nd["diffgrm"] >= best_cornac else
              f"behind by {best_cornac - nd['diffgrm']:.4f}. The networks, batches and optimiser differ (last "
              "table), so equal epochs are not an equal model.")]
    ratio = tr["diffgrm"]["samples_per_s"] / tr["cornac"]["samples_per_s"]
    load = p["loadavg"]
    sec = step["seconds_per_step"]
    out.append(f"- Training samples/s over the runs: diffgrm's is {ratio:.2f}x Cornac's (load average "
               f"{_span(load['diffgrm_train'])} around diffgrm's run and {_span(load['cornac_train'])} around "
               f"Cornac's: other jobs shared the cores). Step check ({step['rounds']} rounds of {step['steps']} steps "
               f"of {step['batch']} samples, the three timed in turn, best round): diffgrm {sec['diffgrm']:.3f} s, "
               f"Cornac {sec['cornac']:.3f} s ({sec['cornac'] / sec['diffgrm']:.2f}x diffgrm's), Cornac's network on "
               f"diffgrm's batches of similar length {sec['cornac_length_batches']:.3f} s: padding every history to "
               f"{p['settings']['cornac']['max_len']} items ({p['cornac_padding_share']:.0%} of Cornac's training "
               f"history rows are padding) costs {1 - sec['cornac_length_batches'] / sec['cornac']:.0%} of Cornac's "
               f"step, and on equal batches Cornac's step is {sec['cornac_length_batches'] / sec['diffgrm']:.2f}x "
               "diffgrm's." + ("" if min(ratio, sec["cornac"] / sec["diffgrm"]) >= 2 else
                               " That keeps diffgrm under 2x."))
    d = rows["diffgrm"]["users_per_s"] / rows["cornac-own"]["users_per_s"]
    same_net = rows["cornac-cpd"]["users_per_s"] / rows["cornac-own"]["users_per_s"]
    share = rows["cornac-own"]["network_seconds"] / rows["cornac-own"]["seconds"]
    out.append(f"- Decode users/s at beam {p['beam']}: diffgrm's CPD on its run is {d:.2f}x Cornac's decode, and "
               f"{same_net:.2f}x on Cornac's own network (the search alone differs there). Cornac's network "
               f"takes {share:.0%} of its decode time, the rest is its search's own work"
               + ("." if d >= 2 else "; under 2x, so the network's passes set the pace of both."))
    return out


def _span(pair) -> str:
    return "unknown" if not pair else f"{pair[0]} -> {pair[1]}"


STAGES = {"train": train_stage, "evaluate": evaluate_stage}
