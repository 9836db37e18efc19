"""The README's headline table, generated from the committed results (a number lives in one place).

    python -m bench headline table                      # print the blocks
    python -m bench headline table --readme README.md   # rewrite the blocks between the markers

The quality block leads with ``bench/results/paper-protocol.json`` (one run read at SID level and at
item level, beside the published pair), then ``bench/results/final.json`` once it exists (the test
split, three seeds: ``python -m bench final``), ``bench/results/long-sids.json`` (DiffGRM and AR on the
same SIDs of 4 and 8 digits) and the shipped MovieLens-100K runs' own ``metrics.json``
(``diffgrm/demo_runs/``).
The quick start's measured times come from ``bench/results/app-speed.json``.
``tests/test_bench_headline.py`` checks that the README's blocks are this output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.common import RESULTS_DIR, ROOT, mean_std

BEGIN, END = "<!-- headline:begin -->", "<!-- headline:end -->"
START_BEGIN, START_END = "<!-- start-times:begin -->", "<!-- start-times:end -->"
BEAUTY_ROWS = {"a4": "AR, 4 digits", "d4": "DiffGRM, 4 digits", "a8": "AR, 8 digits",
               "d8-k4": "DiffGRM, 8 digits (4 OCN views)"}
FINAL_ROWS = {"diffgrm": "DiffGRM (OCN + CPD)", "ar": "AR decoder, same SIDs", "sasrec": "SASRec (item ids)"}
DEMO_ROWS = {"demo": "DiffGRM (the shipped demo run)", "demo-ar": "AR companion", "popularity": "popularity"}


def protocol_block(protocol: dict) -> list[str]:
    """The paper's way of measuring beside ours: one run, both levels, and how much the SID level overstates."""
    sid, item, pub = protocol["sid"], protocol["item"], protocol.get("published")
    over = sid["ndcg@10"] / item["ndcg@10"] - 1
    lines = [f"One DiffGRM run on Beauty's catalogue with its collisions kept ({protocol['collision_rate']:.1%} "
             f"of items share a SID), test split ({protocol['users']:,} users), read both ways "
             "(`bench/results/paper-protocol.md`):", "",
             "| protocol | NDCG@10 | Recall@10 |", "|---|---|---|",
             f"| the paper's: SID level | {sid['ndcg@10']:.4f} | {sid['recall@10']:.4f} |",
             f"| ours: item level | {item['ndcg@10']:.4f} | {item['recall@10']:.4f} |", "",
             f"Here the SID-level NDCG@10 overstates the item level by **{over:+.0%}**"]
    if pub:
        lines[-1] += (f"; the reference code's published Beauty numbers, read both ways by {pub['source']}, are "
                      f"about {pub['sid']:.3f} (SID level) against {pub['item']:.3f} (item level), "
                      f"{pub['sid'] / pub['item'] - 1:+.0%}")
    lines[-1] += "."
    return lines


def final_block(final: dict) -> list[str]:
    """The final table (``python -m bench final``): mean ± std over seeds, with and without the history kept out."""
    rows = final["rows"]
    users = sorted({r["users"] for r in rows})
    epochs = "" if final.get("epochs") is None else f" for {final['epochs']} epochs"
    lines = [f"The final table: Amazon Beauty, test split ({', '.join(f'{u:,}' for u in users)} users), item level, "
             f"`{final['preset']}`{epochs}, SIDs {final['n_digits']} x {final['codebook_size']}, mean ± std over "
             "seeds (`bench/results/final.md`):", "",
             "| model | beam | seeds | NDCG@10 | Recall@10 | NDCG@10, history kept out | Recall@10, history kept out |",
             "|---|---|---|---|---|---|---|"]
    keys = sorted({(r["model"], r["beam"]) for r in rows}, key=lambda k: (list(FINAL_ROWS).index(k[0]), k[1] or 0))
    for model, beam in keys:
        groups = [[r for r in rows if (r["model"], r["beam"], r["exclude_seen"]) == (model, beam, seen)]
                  for seen in (False, True)]
        seeds = len({r["seed"] for g in groups for r in g})
        cells = []
        for group in groups:
            fewer = f" ({len(group)} seed{'s' if len(group) > 1 else ''})" if group and len(group) < seeds else ""
            for metric in ("ndcg@10", "recall@10"):
                cells.append(mean_std([r["item"][metric] for r in group]) + fewer if group else "-")
        label = FINAL_ROWS.get(model, model)
        lines.append(f"| {label} | {beam if beam is not None else 'full softmax'} | {seeds} | " + " | ".join(cells) + " |")
    borrowed = sorted({(FINAL_ROWS.get(r["model"], r["model"]), r["source"]) for r in rows if r.get("source")})
    lines += [f"\n{label}: read from `{source}` (the same recipe and test split)." for label, source in borrowed]
    return lines


def render(long_sids: dict, demo: dict, protocol: dict | None = None, final: dict | None = None) -> str:
    """The quality section: the paper's protocol beside ours first, then the final test table, then the
    long-SIDs screen on validation and the shipped demo runs."""
    lines: list[str] = []
    if protocol:
        lines += protocol_block(protocol) + [""]
    if final and final.get("rows"):
        lines += final_block(final) + [""]
    rows = {r["row"]: r for r in long_sids["rows"]}
    lines += [f"Amazon Beauty, validation split ({long_sids['users']:,} users), beam {long_sids['beam']}, "
              f"`{long_sids['preset']}` for {long_sids['epochs']} epochs, the same OPQ SIDs for both decoders "
              "(`bench/results/long-sids.md`):", "",
              "| decoder | NDCG@10 | Recall@10 | NDCG@10, history kept out | NDCG@10 with n/2 passes |",
              "|---|---|---|---|---|"]
    for name, label in BEAUTY_ROWS.items():
        r = rows.get(name)
        if not r or not r.get("valid"):
            continue
        v, n = r["valid"], r["n"]
        full, seen = v.get(f"s{n}"), v.get(f"s{n}-unseen")
        half = v.get(f"s{n // 2}") if r["model"] == "diffgrm" else None
        lines.append(f"| {label} | {full['item']['ndcg@10']:.4f} | {full['item']['recall@10']:.4f} | "
                     f"{seen['item']['ndcg@10']:.4f} | " + (f"{half['item']['ndcg@10']:.4f}" if half else "-") + " |")
    d = demo["rows"]
    pop = d["popularity"]["item"]["ndcg@10"]
    lines += ["", "MovieLens-100K, test split (943 users), beam 32, history kept out, the runs that ship with "
              "the package (their `metrics.json`, printed by `diffgrm demo`):", "",
              "| run | NDCG@10 | Recall@10 | vs popularity |", "|---|---|---|---|"]
    for name, label in DEMO_ROWS.items():
        m = d[name]["item"]
        ratio = "" if name == "popularity" else f"{m['ndcg@10'] / pop:.1f}x"
        lines.append(f"| {label} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {ratio} |")
    return "\n".join(lines)


def start_times(app_speed: dict) -> str:
    """The quick start's measured times, from ``bench/results/app-speed.json`` (``python -m bench app-speed start``)."""
    cold, warm = app_speed["start"]["cold"], app_speed["start"]["warm"]
    return (f"Measured on a quiet 2-core machine from a fresh clone (`python -m bench app-speed`, table in "
            f"`bench/results/app-speed.md`): the first `make app` drew its first page after **{cold['page_s']:.0f} s**, "
            f"set-up included ({cold['setup_s']:.0f} s of it is creating `.venv`); a second start serves in "
            f"**{warm['served_s']:.1f} s** and draws the page in about {warm['page_s']:.0f} s.")


def current_start() -> str:
    return start_times(json.loads((RESULTS_DIR / "app-speed.json").read_text()))


def _optional(name: str) -> dict | None:
    path = RESULTS_DIR / name
    return json.loads(path.read_text()) if path.is_file() else None


def shipped_demo() -> dict:
    """The shipped demo runs' scores, from their own metrics.json, in ``bench/results/demo.json``'s shape."""
    runs = ROOT / "diffgrm" / "demo_runs"
    metrics = {name: json.loads((runs / kind / "metrics.json").read_text()) for name, kind in (("demo", "diffgrm"),
                                                                                                ("demo-ar", "ar"))}
    return {"rows": {**metrics, "popularity": {"item": metrics["demo"]["popularity"]}}}


def current() -> str:
    return render(json.loads((RESULTS_DIR / "long-sids.json").read_text()), shipped_demo(),
                  _optional("paper-protocol.json"), _optional("final.json"))


def rewrite(readme: Path, table: str, begin: str = BEGIN, end: str = END) -> None:
    text = readme.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{readme} has no {begin} ... {end} block to rewrite")
    head, rest = text.split(begin, 1)
    readme.write_text(head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--readme", default=None, help="rewrite this README's headline and start-times blocks")


def table_stage(args: argparse.Namespace) -> int:
    table, start = current(), current_start()
    if args.readme:
        rewrite(Path(args.readme), table)
        rewrite(Path(args.readme), start, START_BEGIN, START_END)
    print(start + "\n\n" + table)
    return 0


STAGES = {"table": table_stage}
