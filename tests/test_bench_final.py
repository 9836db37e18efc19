"""python -m bench final: the final table's rows and its rendering (the README's copy: tests/test_bench_headline.py)."""

from __future__ import annotations

import json

from bench.experiments import final
from bench.registry import run


def test_quick_run_writes_one_row_per_model_seed_beam_and_history_setting(chain_prepared, tmp_path):
    out = tmp_path / "final"
    common = ["--quick", "--data", str(chain_prepared), "--runs", str(tmp_path / "runs"), "--seeds", "0", "1"]
    assert run("final", ["train", *common]) == 0
    run("final", ["evaluate", *common, "--out", str(out), "--beams", "16", "32"])
    payload = json.loads(out.with_suffix(".json").read_text())
    rows = payload["rows"]
    keys = {(r["model"], r["seed"], r["beam"], r["exclude_seen"]) for r in rows}
    for model in ("diffgrm", "ar"):
        assert {(model, s, b, e) for s in (0, 1) for b in (16, 32) for e in (False, True)} <= keys
    assert {(s, e) for m, s, b, e in keys if m == "sasrec"} == {(s, e) for s in (0, 1) for e in (False, True)}
    assert all(r["users"] > 0 and 0 <= r["item"]["ndcg@10"] <= 1 for r in rows)
    table = out.with_suffix(".md").read_text().strip()
    assert table == final.render(payload)
    assert "| DiffGRM (OCN + CPD) | 32 | yes | 2 |" in table
    # evaluate trains nothing: seeds without a run give no rows, and the history setting is honoured
    stamp = {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("model.safetensors")}
    out2 = tmp_path / "again"
    run("final", ["evaluate", *common, "--seeds", "0", "1", "5", "--out", str(out2), "--beams", "16", "--history", "kept"])
    again = json.loads(out2.with_suffix(".json").read_text())["rows"]
    assert {r["beam"] for r in again} == {16, None} and not any(r["exclude_seen"] for r in again)
    assert {r["seed"] for r in again} == {0, 1} and not (tmp_path / "runs" / "diffgrm-s5").exists()
    assert {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("model.safetensors")} == stamp
    # SASRec seeds with no run here can be read from quality's results (same recipe), and say so
    quality = tmp_path / "quality.json"
    quality.write_text(json.dumps({"dataset": "amazon-beauty", "split": "test", "users": 30, "results": {"sasrec": [
        {"seed": s, "users": 30, "run": f"runs/quality/sasrec-s{s}", "item": {"recall@5": 0.1, "recall@10": 0.2,
                                                                           "ndcg@5": 0.05, "ndcg@10": 0.07}}
        for s in (0, 2)]}}))
    run("final", ["evaluate", *common, "--seeds", "0", "1", "2", "--beams", "16", "--variants", "sasrec",
                  "--sasrec-from", str(quality), "--out", str(out2)])
    payload = json.loads(out2.with_suffix(".json").read_text())
    by_seed = {(r["seed"], r["exclude_seen"]): r for r in payload["rows"]}
    assert by_seed[(2, False)]["source"] == str(quality) and by_seed[(2, False)]["item"]["ndcg@10"] == 0.07
    assert "source" not in by_seed[(0, False)] and (1, True) in by_seed  # a trained seed is never replaced
    assert "SASRec seeds 2: read from" in out2.with_suffix(".md").read_text()
