"""Smoke test of bench/quality.py on the chain dataset, so the benchmark script does not rot."""

import json

import pytest

from tests.conftest import load_script


def load_bench():
    return load_script("bench/quality.py")


def test_quality_bench_runs_every_variant_and_reuses_runs(chain_prepared, tmp_path, capsys):
    bench = load_bench()
    argv = ["--quick", "--data", str(chain_prepared), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "q"),
            "--seeds", "0", "1", "--preset", "tiny", "--beam", "16", "--device", "cpu"]
    payload = bench.main(argv)
    out = capsys.readouterr().out
    assert set(payload["results"]) == set(bench.VARIANTS)
    for runs in payload["results"].values():
        assert [r["seed"] for r in runs] == [0, 1]
        for r in runs:
            assert set(r["item"]) == set(bench.METRICS) and all(0 <= v <= 1 for v in r["item"].values())
    assert payload["results"]["fixed"][0]["order"] == "fixed"
    assert payload["results"]["fixed"][0]["run"] == payload["results"]["diffgrm"][0]["run"]  # same checkpoint
    assert "| SASRec (full softmax) | 2 |" in out and "±" in out and "(sid level)" in out
    saved = json.loads((tmp_path / "q.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["encoder"] == "all-MiniLM-L6-v2"  # the packaged default
    assert "encoder all-MiniLM-L6-v2" in out
    assert (tmp_path / "q.md").read_text().startswith("raw, test split")
    # a second call trains nothing and reads every evaluation back
    stamp = {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("*.safetensors")}
    again = bench.main(argv)
    assert {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("*.safetensors")} == stamp
    assert again["results"]["ar"][1]["item"] == payload["results"]["ar"][1]["item"]
    # --trained-only trains nothing: seed 2 has no runs and is left out, the others are read back
    partial = bench.main([*argv, "--seeds", "0", "1", "2", "--trained-only"])  # the last --seeds wins
    assert partial["seeds"] == [0, 1] and [r["seed"] for r in partial["results"]["sasrec"]] == [0, 1]
    assert {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("*.safetensors")} == stamp
    with pytest.raises(SystemExit, match="no trained run"):
        bench.main([*argv, "--trained-only", "--runs", str(tmp_path / "empty")])
