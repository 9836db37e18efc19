"""The acceptance numbers on real data: the embedded MovieLens-100K and the shared Beauty benchmark.

These run in CI. Beauty is read from ../shared (set DIFFGRM_SHARED to move it); the test skips,
saying so, only on a machine where that folder does not exist.
"""

import json

import pytest

from diffgrm.cli import main
from tests.conftest import BEAUTY


def prepare(capsys, dataset, out):
    assert main(["prepare", "--dataset", str(dataset), "--out", str(out), "--quiet", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_movielens_100k(tmp_path, capsys):
    report = prepare(capsys, "movielens-100k", tmp_path / "ml")
    assert (report["n_users"], report["n_items"], report["n_interactions"]) == (943, 1682, 100_000)
    assert report["codebook_size"] == 64 and report["n_digits"] == 4
    assert report["collision_rate_after"] == 0.0
    assert all(d["usage"] >= 0.9 for d in report["per_digit"])


@pytest.mark.slow
@pytest.mark.skipif(not BEAUTY.is_dir(), reason=f"the shared Beauty data is not at {BEAUTY}")
def test_amazon_beauty(tmp_path, capsys):
    report = prepare(capsys, BEAUTY, tmp_path / "beauty")
    assert (report["n_users"], report["n_items"], report["n_interactions"]) == (22_363, 12_101, 198_502)
    assert report["skipped_users"] == 0
    assert report["codebook_size"] == 256 and report["n_digits"] == 4
    assert report["collision_rate_before"] > 0.05  # PSE alone collides; the repair is doing work
    assert report["collision_rate_after"] == 0.0
    assert all(d["usage"] >= 0.9 for d in report["per_digit"])
