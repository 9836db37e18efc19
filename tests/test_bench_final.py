"""bench/final.py: the final table's rows, its rendering, and the README block it rewrites."""

from __future__ import annotations

import json

from tests.conftest import load_script


def test_quick_run_writes_one_row_per_model_seed_beam_and_history_setting(chain_prepared, tmp_path):
    bench = load_script("bench/final.py")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench.BEGIN}\nold table\n{bench.END}\nafter\n")
    out = tmp_path / "final"
    bench.main(["--quick", "--data", str(chain_prepared), "--runs", str(tmp_path / "runs"), "--out", str(out),
                "--seeds", "0", "1", "--beams", "16", "32", "--readme", str(readme)])
    payload = json.loads(out.with_suffix(".json").read_text())
    rows = payload["rows"]
    keys = {(r["model"], r["seed"], r["beam"], r["exclude_seen"]) for r in rows}
    for model in ("diffgrm", "ar"):
        assert {(model, s, b, e) for s in (0, 1) for b in (16, 32) for e in (False, True)} <= keys
    assert {(s, e) for m, s, b, e in keys if m == "sasrec"} == {(s, e) for s in (0, 1) for e in (False, True)}
    assert all(r["users"] > 0 and 0 <= r["item"]["ndcg@10"] <= 1 for r in rows)
    table = out.with_suffix(".md").read_text().strip()
    assert table == bench.render(payload)
    text = readme.read_text()
    assert "old table" not in text and table in text and text.startswith("intro\n") and text.endswith("after\n")
    assert "| DiffGRM (OCN + CPD) | 32 | yes | 2 |" in table


def test_the_readme_table_is_the_committed_results_file():
    """Once the final table exists, the README's copy is generated from it (bench/final.py --readme)."""
    from tests.conftest import ROOT

    bench = load_script("bench/final.py")
    results = ROOT / "bench" / "results" / "final.json"
    readme = (ROOT / "README.md").read_text()
    if not results.is_file():
        assert bench.BEGIN not in readme  # no table can be shown before the results exist
        return
    block = readme[readme.index(bench.BEGIN) + len(bench.BEGIN): readme.index(bench.END)].strip()
    assert block == bench.render(json.loads(results.read_text()))
