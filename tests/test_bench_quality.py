"""Smoke tests of ``python -m bench quality``, ``passes`` and ``beam256`` on the chain dataset, so the
experiments do not rot."""

import json

import pytest

from bench.experiments import quality
from bench.registry import run


def test_quality_trains_every_variant_evaluates_and_reuses_runs(chain_prepared, tmp_path, capsys):
    common = ["--quick", "--data", str(chain_prepared), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "q"),
              "--seeds", "0", "1", "--preset", "tiny", "--beam", "16", "--device", "cpu"]
    assert run("quality", ["train", *common]) == 0
    payload = run("quality", ["evaluate", *common])
    out = capsys.readouterr().out
    assert set(payload["results"]) == set(quality.VARIANTS)
    for runs in payload["results"].values():
        assert [r["seed"] for r in runs] == [0, 1]
        for r in runs:
            assert set(r["item"]) == set(quality.METRICS) and all(0 <= v <= 1 for v in r["item"].values())
    assert payload["results"]["fixed"][0]["order"] == "fixed"
    assert payload["results"]["fixed"][0]["run"] == payload["results"]["diffgrm"][0]["run"]  # same checkpoint
    assert "| SASRec (full softmax) | 2 |" in out and "±" in out and "(sid level)" in out
    saved = json.loads((tmp_path / "q.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["encoder"] == "all-MiniLM-L6-v2"  # the packaged default
    assert "encoder all-MiniLM-L6-v2" in out
    assert (tmp_path / "q.md").read_text().startswith("raw, test split")
    assert (tmp_path / "q.md").read_text() == quality.render(saved) + "\n"  # the table stage's rendering
    # a second call trains nothing and reads every evaluation back
    stamp = {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("*.json")}
    assert run("quality", ["train", *common]) == 0
    again = run("quality", ["evaluate", *common])
    assert {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("*.json")} == stamp
    assert again["results"]["ar"][1]["item"] == payload["results"]["ar"][1]["item"]
    # evaluate trains nothing: seed 2 has no runs and is left out, the others are read back
    partial = run("quality", ["evaluate", *common, "--seeds", "0", "1", "2"])  # the last --seeds wins
    assert partial["seeds"] == [0, 1] and [r["seed"] for r in partial["results"]["sasrec"]] == [0, 1]
    assert not list((tmp_path / "runs").glob("*-s2"))
    with pytest.raises(SystemExit, match="no trained run"):
        run("quality", ["evaluate", *common, "--runs", str(tmp_path / "empty")])


def test_passes_scores_each_pass_count_and_the_ar_run(chain_run, chain_ar_run, tmp_path, capsys):
    argv = ["evaluate", "--runs", str(chain_run), str(chain_ar_run), "--split", "valid", "--beams", "10", "16",
            "--users", "12", "--speed-users", "8", "--out", str(tmp_path / "p"), "--device", "cpu"]
    payload = run("passes", argv)
    out = capsys.readouterr().out
    rows = payload["rows"]
    assert [(r["beam"], r["decoder"], r["passes"]) for r in rows] == [
        (b, d, s) for b in (10, 16) for d, s in [("DiffGRM (CPD)", 4), ("DiffGRM (CPD)", 2), ("DiffGRM (CPD)", 1),
                                                  ("AR (cached)", 4)]]
    for r in rows:
        assert r["users"] == 12 and 0 <= r["item"]["ndcg@10"] <= 1 and r["users_per_s"] > 0
        if r["passes"] == 4:
            assert r["ndcg10_vs_n_passes"] == (1.0 if r["item"]["ndcg@10"] > 0 else 0.0)
    assert set(payload["targets"]) == {10, 16}
    assert {s["users"] for per in payload["speed"].values() for s in per} == {8}  # the speed sample, timed afresh
    assert "| 16 | DiffGRM (CPD) | 2 |" in out and "S = 2 keeps" in out and "1 thread" in out
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["split"] == "valid" and len(saved["rows"]) == 8
    # each evaluation is kept in its run folder and read back
    assert len(list(chain_run.glob("eval-valid-u12-b*-s*.json"))) == 6
    assert [r["item"] for r in run("passes", argv)["rows"]] == [r["item"] for r in rows]
    with pytest.raises(SystemExit, match="a DiffGRM run, then an AR run"):
        run("passes", ["evaluate", "--runs", str(chain_ar_run), str(chain_run), "--out", str(tmp_path / "x")])


def test_beam256_times_a_split_and_splits_the_profile(chain_run):
    out = run("beam256", ["evaluate", "--run", str(chain_run), "--users", "40", "--beam", "16", "--batch", "8",
                          "--profile-users", "16", "--threads", "1", "--quick"])
    assert out["users"] == 40 and out["beam"] == 16 and out["steps"] == 4 and out["seconds"] > 0
    assert 0 <= out["item"]["ndcg@10"] <= 1
    parts = out["profile"]["parts"]
    assert parts["network: denoiser / AR decoder passes"] > 0
    assert sum(parts.values()) == pytest.approx(max(out["profile"]["seconds"], sum(parts.values())), rel=1e-6)
