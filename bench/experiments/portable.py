"""Runs that travel: how far SIDs move when another processor rounds differently, and what the
shipped demo runs and a packed run give on such a machine.

    python -m bench portable evaluate                                          # MovieLens-100K
    python -m bench portable evaluate --beauty ../shared/data/amazon-beauty    # adds Beauty's drift rows
    python -m bench portable table                                             # the committed .md from its .json

Drift: a dataset's item embeddings (the packaged encoder) are tokenized as they are, then again
with the last bit of every float flipped at random (``diffgrm.portable.flip_last_bits``, seeds 0 to
2): the share of items whose SID changes, and whose first digit changes. The shipped runs: the
demo runs installed as on such a machine (their users read from a prepared folder of the
perturbed SIDs, and from MovieLens-100K by name), scored on the test split against the
metrics.json they ship with, and their first users' Top-10 against the examples.json made where
they were trained. Pack: both runs packed into one file, unpacked elsewhere and scored again.
Results in bench/results/portable.{md,json}.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS_DIR
from bench.results_io import publish

RESULTS = ("portable",)
SEEDS = (0, 1, 2)


def drift(name: str, source: str, cfg) -> dict:
    """Share of items whose SID (and first digit) moves under last-bit noise, per seed (``cfg``: a TokenizerConfig)."""
    from diffgrm.data import load_dataset, train_items
    from diffgrm.portable import flip_last_bits
    from diffgrm.pse import PSETokenizer, build_catalogue
    from diffgrm.text import embed_texts

    ds = load_dataset(source, download=False)
    emb = embed_texts(ds.items["text"].tolist(), progress=False)
    fit_on = train_items(ds.sequences)
    base = build_catalogue(PSETokenizer(cfg), emb, fit_on)
    rows = []
    for seed in SEEDS:
        other = build_catalogue(PSETokenizer(cfg), flip_last_bits(emb, seed), fit_on)
        rows.append({"seed": seed, "fingerprint": other.fingerprint,
                     "sid_moved": float((other.codes != base.codes).any(axis=1).mean()),
                     "first_digit_moved": float((other.codes[:, 0] != base.codes[:, 0]).mean())})
    return {"dataset": name, "items": int(ds.n_items), "digits": cfg.n_digits, "codes": cfg.codebook_size,
            "fingerprint": base.fingerprint, "rows": rows}


def shipped(work: Path) -> dict:
    """The shipped demo runs on a machine whose own prepare gives other SIDs, and packed."""
    from diffgrm import demo
    from diffgrm.config import DATASET_TOKENIZER_PRESET, tokenizer_preset
    from diffgrm.data import load_dataset
    from diffgrm.explorer import Explorer
    from diffgrm.pack import pack, unpack
    from diffgrm.portable import flip_last_bits
    from diffgrm.prepare import load_prepared, prepare
    from diffgrm.safeio import read_json
    from diffgrm.text import embed_texts
    from diffgrm.train import evaluate_split, load_run

    ds = load_dataset("movielens-100k")
    ds.embeddings = flip_last_bits(embed_texts(ds.items["text"].tolist(), progress=False))
    elsewhere = work / "elsewhere"
    prepare(ds, elsewhere, tokenizer_preset(DATASET_TOKENIZER_PRESET["movielens-100k"]), progress=False)
    out = {"elsewhere_fingerprint": load_prepared(elsewhere).catalogue.fingerprint, "installs": []}
    for label, data in (("a prepared folder of other SIDs", elsewhere), ("MovieLens-100K by name", None)):
        run = work / ("runs-folder" if data else "runs-name") / "ml-tiny"
        t0 = time.perf_counter()
        demo.ensure_demo_run(run, data=data, progress=False)
        installed = time.perf_counter() - t0
        for kind, folder in demo.demo_folders(run).items():
            model, prepared, meta = load_run(folder, device="cpu")
            got = evaluate_split(model, prepared, "test", beam=demo.DEMO_RECIPE.beam, exclude_seen=True, progress=False)
            want = read_json(folder / "metrics.json")
            row = {"users_from": label, "kind": kind, "install_s": round(installed, 2),
                   "shipped_fingerprint": meta["fingerprint"], "ndcg@10": got["item"]["ndcg@10"],
                   "shipped_ndcg@10": want["item"]["ndcg@10"], "recall@10": got["item"]["recall@10"],
                   "shipped_recall@10": want["item"]["recall@10"]}
            if kind == "diffgrm":
                row["topk_same"] = same_topk(Explorer(folder), read_json(folder / "examples.json"))
            out["installs"].append(row)
    run = work / "runs-name" / "ml-tiny"
    t0 = time.perf_counter()
    file = pack(run, work / "share" / "ml-tiny.zip", ar=f"{run}-ar")
    packed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    folders = unpack(file, work / "colleague" / "ml-tiny")
    unpacked_s = time.perf_counter() - t0
    same = True
    for role, folder in folders.items():
        original = run if role == "run" else Path(f"{run}-ar")
        a, b = (evaluate_split(*load_run(f, device="cpu")[:2], "test", progress=False) for f in (original, folder))
        same &= a["item"] == b["item"] and a["sid"] == b["sid"]
    out["pack"] = {"bytes": file.stat().st_size, "pack_s": round(packed_s, 2), "unpack_s": round(unpacked_s, 2),
                   "files": len(read_json(folders["run"] / "pack.json")["files"]), "same_metrics": same}
    return out


def same_topk(ex, examples: dict) -> str:
    """How many of the example users get the very Top-10 (item ids, in order) they got where the run was made."""
    ids = ex.prepared.items["item_id"]
    hits = 0
    for made in examples["users"]:
        case = ex.user(made["user"])
        table = ex.recommend(case.history, beam=examples["beam"], k=examples["k"],
                             exclude_seen=examples["exclude_seen"]).table
        hits += [str(ids[i]) for i in table["item"]] == made["items"]
    return f"{hits}/{len(examples['users'])}"


def render(result: dict) -> str:
    lines = ["**How far SIDs move under last-bit noise.** Each dataset's item embeddings tokenized as they are, "
             "then with the last bit of every float flipped at random (one seed per row): the share of items "
             "whose SID changes, and whose first digit changes.", "",
             "| dataset | items | SID | seed | items with another SID | items with another first digit |",
             "|---|---|---|---|---|---|"]
    for d in result["drift"]:
        for r in d["rows"]:
            lines.append(f"| {d['dataset']} | {d['items']:,} | {d['digits']} x {d['codes']} | {r['seed']} | "
                         f"{r['sid_moved']:.1%} | {r['first_digit_moved']:.1%} |")
    s = result["shipped"]
    lines += ["", f"**The shipped demo runs where `prepare` gives other SIDs** (this machine's MovieLens-100K with "
              f"the embeddings' last bits flipped: catalogue {s['elsewhere_fingerprint']}; the runs carry "
              f"{s['installs'][0]['shipped_fingerprint']}). Installed, nothing trained; test split, beam 32, "
              "history kept out; Top-10: the first users of examples.json, item for item:", "",
              "| users read from | run | install s (both runs) | NDCG@10 here | NDCG@10 shipped | Recall@10 here | Recall@10 shipped "
              "| same Top-10 |", "|---|---|---|---|---|---|---|---|"]
    for r in s["installs"]:
        lines.append(f"| {r['users_from']} | {r['kind']} | {r['install_s']:.1f} | {r['ndcg@10']:.4f} | "
                     f"{r['shipped_ndcg@10']:.4f} | {r['recall@10']:.4f} | {r['shipped_recall@10']:.4f} | "
                     f"{r.get('topk_same', '-')} |")
    p = s["pack"]
    lines += ["", f"**Packed** (`diffgrm pack`, the run and its AR companion): {p['files']} files in "
              f"{p['bytes'] / 1e6:.1f} MB, packed in {p['pack_s']:.1f} s, checked and unpacked in {p['unpack_s']:.1f} s; "
              f"the unpacked runs score {'exactly' if p['same_metrics'] else 'NOT'} what the originals score "
              "(item and SID level, test split)."]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--beauty", default=None, metavar="DIR", help="also measure Beauty's drift (a sequences + items folder)")
    p.add_argument("--out", default=None, help="OUT.md and OUT.json (default bench/results/portable)")


def evaluate_stage(args: argparse.Namespace) -> dict:
    from diffgrm.config import tokenizer_preset

    result = {"drift": [drift("MovieLens-100K", "movielens-100k", tokenizer_preset("small"))]}
    if args.beauty:
        result["drift"].append(drift("Amazon Beauty", args.beauty, tokenizer_preset("default")))
    work = Path(tempfile.mkdtemp(prefix="diffgrm-portable-"))
    try:
        result["shipped"] = shipped(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    publish(args.out or RESULTS_DIR / "portable", result, render)
    return result


STAGES = {"evaluate": evaluate_stage}
