"""The README's headline table is generated from the committed results (bench/headline.py), never typed."""

from __future__ import annotations

import json

from tests.conftest import ROOT, load_script

bench = load_script("bench/headline.py")


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
