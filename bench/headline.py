"""The README's headline table, generated from the committed results (a number lives in one place).

    .venv/bin/python bench/headline.py                  # print the table
    .venv/bin/python bench/headline.py --readme README.md   # rewrite the blocks between the markers

It reads ``bench/results/long-sids.json`` (Amazon Beauty, DiffGRM and AR on the same SIDs of 4
and 8 digits), ``bench/results/demo.json`` (the shipped MovieLens-100K demo runs and popularity)
and ``bench/results/paper-protocol.json`` (one run read at SID level and at item level); the quick
start's measured times come from ``bench/results/app-speed.json``. ``tests/test_bench_headline.py`` checks that the README's block is this output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BEGIN, END = "<!-- headline:begin -->", "<!-- headline:end -->"
START_BEGIN, START_END = "<!-- start-times:begin -->", "<!-- start-times:end -->"
BEAUTY_ROWS = {"a4": "AR, 4 digits", "d4": "DiffGRM, 4 digits", "a8": "AR, 8 digits",
               "d8-k4": "DiffGRM, 8 digits (4 OCN views)"}
DEMO_ROWS = {"demo": "DiffGRM (the shipped demo run)", "demo-ar": "AR companion", "popularity": "popularity"}


def render(long_sids: dict, demo: dict, protocol: dict | None = None) -> str:
    rows = {r["row"]: r for r in long_sids["rows"]}
    lines = [f"Amazon Beauty, validation split ({long_sids['users']:,} users), beam {long_sids['beam']}, "
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
              "the package (`bench/results/demo.md`):", "",
              "| run | NDCG@10 | Recall@10 | vs popularity |", "|---|---|---|---|"]
    for name, label in DEMO_ROWS.items():
        m = d[name]["item"]
        ratio = "" if name == "popularity" else f"{m['ndcg@10'] / pop:.1f}x"
        lines.append(f"| {label} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {ratio} |")
    if protocol:
        sid, item = protocol["sid"], protocol["item"]
        lines += ["", f"One DiffGRM run on Beauty's catalogue with its collisions kept ({protocol['collision_rate']:.1%} "
                  f"of items share a SID), test split ({protocol['users']:,} users), read both ways "
                  "(`bench/results/paper-protocol.md`):", "",
                  "| protocol | NDCG@10 | Recall@10 |", "|---|---|---|",
                  f"| the paper's: SID level | {sid['ndcg@10']:.4f} | {sid['recall@10']:.4f} |",
                  f"| ours: item level | {item['ndcg@10']:.4f} | {item['recall@10']:.4f} |"]
    return "\n".join(lines)


def start_times(app_speed: dict) -> str:
    """The quick start's measured times, from ``bench/results/app-speed.json`` (``bench/app_speed.py start``)."""
    cold, warm = app_speed["start"]["cold"], app_speed["start"]["warm"]
    return (f"Measured on a quiet 2-core machine from a fresh clone (`bench/app_speed.py`, table in "
            f"`bench/results/app-speed.md`): the first `make app` drew its first page after **{cold['page_s']:.0f} s**, "
            f"set-up included ({cold['setup_s']:.0f} s of it is creating `.venv`); a second start serves in "
            f"**{warm['served_s']:.1f} s** and draws the page in about {warm['page_s']:.0f} s.")


def current_start() -> str:
    return start_times(json.loads((RESULTS / "app-speed.json").read_text()))


def current() -> str:
    protocol = RESULTS / "paper-protocol.json"
    return render(json.loads((RESULTS / "long-sids.json").read_text()), json.loads((RESULTS / "demo.json").read_text()),
                  json.loads(protocol.read_text()) if protocol.is_file() else None)


def rewrite(readme: Path, table: str, begin: str = BEGIN, end: str = END) -> None:
    text = readme.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{readme} has no {begin} ... {end} block to rewrite")
    head, rest = text.split(begin, 1)
    readme.write_text(head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--readme", default=None, help="rewrite this README's headline and start-times blocks")
    args = p.parse_args(argv)
    table, start = current(), current_start()
    if args.readme:
        rewrite(Path(args.readme), table)
        rewrite(Path(args.readme), start, START_BEGIN, START_END)
    print(start + "\n\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
