"""python -m bench cornac on tiny data (--quick): both libraries trained a few steps on the same split and
SIDs, Cornac's model exported and imported, three rows scored, the table rendered again from its JSON,
and a second call reusing every finished step."""

import json

import pytest

pytest.importorskip("cornac")

from bench.experiments import cornac as bench_cornac  # noqa: E402
from bench.registry import run  # noqa: E402
from bench.results_io import write_table  # noqa: E402
from tests.conftest import write_chain_dataset  # noqa: E402


def test_quick_cornac_bench_trains_both_scores_three_rows_and_reuses_its_steps(tmp_path):
    raw = write_chain_dataset(tmp_path / "raw")
    runs, out = tmp_path / "runs", tmp_path / "res" / "cornac"
    argv = ["--quick", "--dataset", str(raw), "--data", str(tmp_path / "prepared"), "--runs", str(runs),
            "--epochs", "1", "--threads", "1", "--beam", "16", "--users", "40", "--out", str(out)]
    fit = run("cornac", ["train", *argv])
    assert fit["settings"]["n_epochs"] == 1 and fit["settings"]["max_len"] == 20 and fit["samples"] > 0
    for name in ("diffgrm", "cornac"):
        assert (runs / name / "config.json").is_file()
    imported = json.loads((runs / "cornac" / "config.json").read_text())
    assert imported["model"]["kind"] == "cornac-diffgrm" and imported["source"] == "cornac"

    payload = run("cornac", ["evaluate", *argv])
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved == payload and saved["users"] == 40 and saved["beam"] == 16 and saved["quick"]
    assert set(saved["rows"]) == {"diffgrm", "cornac-cpd", "cornac-own"}
    for row in saved["rows"].values():
        assert row["users"] == 40 and row["users_per_s"] > 0
        assert 0 <= row["item"]["ndcg@10"] <= row["item"]["recall@10"] <= 1
    assert saved["training"]["diffgrm"]["samples_per_s"] > 0 and saved["training"]["cornac"]["samples_per_s"] > 0
    assert set(saved["versions"]) == {"diffgrm", "cornac", "torch"}
    assert 0 <= saved["cornac_padding_share"] < 1

    text = out.with_suffix(".md").read_text()
    assert "Cornac's network, Cornac's decode" in text and "AdamW betas" in text
    copy = tmp_path / "again" / "cornac"
    write_table(bench_cornac, out, copy)
    assert copy.with_suffix(".md").read_bytes() == out.with_suffix(".md").read_bytes()

    # a second call reuses every finished step (the caches are read, nothing is trained or decoded again)
    own = next(runs.glob("cornac-own-*.json"))
    before = {p: p.stat().st_mtime_ns for p in (runs / "cornac-fit.json", runs / "diffgrm" / "config.json", own)}
    run("cornac", ["train", *argv])
    assert run("cornac", ["evaluate", *argv])["rows"] == saved["rows"]
    assert {p: p.stat().st_mtime_ns for p in before} == before
