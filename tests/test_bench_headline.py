"""The README's headline table is generated from the committed results (bench/headline.py), never typed."""

from __future__ import annotations

import json

from bench import headline as bench
from tests.conftest import ROOT


def test_the_readme_headline_is_the_committed_results():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(bench.BEGIN) + len(bench.BEGIN): readme.index(bench.END)].strip()
    assert block == bench.current()


def test_the_readme_start_times_are_the_committed_measurements():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(bench.START_BEGIN) + len(bench.START_BEGIN): readme.index(bench.START_END)].strip()
    assert block == bench.current_start()
    speed = json.loads((ROOT / "bench" / "results" / "app-speed.json").read_text())["start"]
    assert f"**{speed['cold']['page_s']:.0f} s**" in block and f"**{speed['warm']['served_s']:.1f} s**" in block


def test_render_reads_each_row_from_its_file(tmp_path):
    long_sids = json.loads((ROOT / "bench" / "results" / "long-sids.json").read_text())
    demo = json.loads((ROOT / "bench" / "results" / "demo.json").read_text())
    d4 = next(r for r in long_sids["rows"] if r["row"] == "d4")
    d4["valid"]["s4"]["item"]["ndcg@10"] = 0.12345
    text = bench.render(long_sids, demo)
    assert "| DiffGRM, 4 digits | 0.1235 |" in text
    pop = demo["rows"]["popularity"]["item"]["ndcg@10"]
    assert f"{demo['rows']['demo']['item']['ndcg@10'] / pop:.1f}x" in text
    # a row that has not been measured is left out, not shown empty
    long_sids["rows"] = [r for r in long_sids["rows"] if r["row"] != "d8-k4"]
    assert "8 digits (4 OCN views)" not in bench.render(long_sids, demo)


def test_rewrite_replaces_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench.BEGIN}\nold\n{bench.END}\nafter\n")
    bench.rewrite(readme, "new table")
    assert readme.read_text() == f"intro\n{bench.BEGIN}\nnew table\n{bench.END}\nafter\n"


def _final_row(model, seed, beam, seen, ndcg):
    return {"model": model, "seed": seed, "beam": beam, "users": 100, "exclude_seen": seen,
            "item": {"ndcg@10": ndcg, "recall@10": 2 * ndcg}}


def test_the_final_table_is_mean_and_std_over_seeds_with_and_without_the_history():
    final = {"preset": "cpu-long", "epochs": 6, "n_digits": 4, "codebook_size": 256,
             "rows": [_final_row("diffgrm", 0, 32, False, 0.01), _final_row("diffgrm", 1, 32, False, 0.03),
                      _final_row("diffgrm", 0, 32, True, 0.02), _final_row("diffgrm", 1, 32, True, 0.04),
                      {**_final_row("sasrec", 0, None, False, 0.05), "source": "bench/results/quality.json"},
                      _final_row("ar", 0, 256, False, 0.01), _final_row("ar", 1, 256, False, 0.01),
                      _final_row("ar", 0, 256, True, 0.02)]}
    lines = bench.final_block(final)
    assert "test split (100 users)" in lines[0] and "`cpu-long` for 6 epochs" in lines[0]
    assert "| DiffGRM (OCN + CPD) | 32 | 2 | 0.0200 ± 0.0141 | 0.0400 ± 0.0283 | 0.0300 ± 0.0141 | 0.0600 ± 0.0283 |" in lines
    # a setting measured for one seed shows its value; one not measured shows a dash, not a zero
    assert "| SASRec (item ids) | full softmax | 1 | 0.0500 | 0.1000 | - | - |" in lines
    assert "\nSASRec (item ids): read from `bench/results/quality.json` (the same recipe and test split)." in lines
    # a setting measured on fewer seeds than its row says how many
    assert "| AR decoder, same SIDs | 256 | 2 | 0.0100 ± 0.0000 | 0.0200 ± 0.0000 | 0.0200 (1 seed) | 0.0400 (1 seed) |" in lines


def test_the_paper_protocol_leads_and_states_the_overstatement():
    long_sids = json.loads((ROOT / "bench" / "results" / "long-sids.json").read_text())
    demo = json.loads((ROOT / "bench" / "results" / "demo.json").read_text())
    protocol = {"sid": {"ndcg@10": 0.03, "recall@10": 0.05}, "item": {"ndcg@10": 0.02, "recall@10": 0.04},
                "collision_rate": 0.25, "users": 10, "published": {"sid": 0.05, "item": 0.025, "source": "someone"}}
    text = bench.render(long_sids, demo, protocol)
    assert text.startswith("One DiffGRM run on Beauty's catalogue with its collisions kept (25.0%")
    assert "overstates the item level by **+50%**" in text and "0.050 (SID level) against 0.025 (item level), +100%" in text
    assert text.index("read both ways") < text.index("validation split") < text.index("MovieLens-100K")
