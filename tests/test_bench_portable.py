"""bench/portable.py on the chain data: SIDs move under last-bit noise, and the table reads its results."""

import json

from diffgrm.config import TokenizerConfig
from tests.conftest import ROOT, load_script


def test_drift_counts_the_items_that_move(chain_prepared):
    bench = load_script("bench/portable.py")
    cfg = TokenizerConfig(n_digits=4, codebook_size=8, pca_dim=64)
    result = bench.drift("chain", str(chain_prepared.parent / "raw"), cfg)
    assert result["items"] == 60 and [r["seed"] for r in result["rows"]] == list(bench.SEEDS)
    for row in result["rows"]:
        assert 0.0 <= row["first_digit_moved"] <= row["sid_moved"] <= 1.0
        assert (row["fingerprint"] != result["fingerprint"]) == (row["sid_moved"] > 0)
    assert any(r["sid_moved"] > 0 for r in result["rows"]), "last-bit noise moved no SID at all"


def test_the_table_reads_the_committed_results():
    bench = load_script("bench/portable.py")
    results = ROOT / "bench" / "results"
    saved = json.loads((results / "portable.json").read_text())
    assert bench.render(saved) == (results / "portable.md").read_text().rstrip("\n")
    assert saved["shipped"]["pack"]["same_metrics"] is True
    for row in saved["shipped"]["installs"]:  # installed where prepare gives other SIDs: the shipped scores
        assert abs(row["ndcg@10"] - row["shipped_ndcg@10"]) <= 2 / 943, row
