"""python -m bench portable on the chain data: SIDs move under last-bit noise, and what its committed results claim."""

from bench.common import RESULTS_DIR
from bench.experiments import portable as bench
from bench.results_io import read_results
from diffgrm.config import TokenizerConfig


def test_drift_counts_the_items_that_move(chain_prepared):
    cfg = TokenizerConfig(n_digits=4, codebook_size=8, pca_dim=64)
    result = bench.drift("chain", str(chain_prepared.parent / "raw"), cfg)
    assert result["items"] == 60 and [r["seed"] for r in result["rows"]] == list(bench.SEEDS)
    for row in result["rows"]:
        assert 0.0 <= row["first_digit_moved"] <= row["sid_moved"] <= 1.0
        assert (row["fingerprint"] != result["fingerprint"]) == (row["sid_moved"] > 0)
    assert any(r["sid_moved"] > 0 for r in result["rows"]), "last-bit noise moved no SID at all"


def test_the_committed_results_say_the_shipped_runs_travel():
    """The table itself is tests/test_bench_tables.py's; here, what the committed numbers claim."""
    saved = read_results(RESULTS_DIR / "portable")
    assert saved["shipped"]["pack"]["same_metrics"] is True
    for row in saved["shipped"]["installs"]:  # installed where prepare gives other SIDs: the shipped scores
        assert abs(row["ndcg@10"] - row["shipped_ndcg@10"]) <= 2 / 943, row
