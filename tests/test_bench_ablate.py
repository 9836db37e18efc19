"""Smoke tests of ``python -m bench ablate``, ``ablate-sids`` and ``train-step`` on small data, so they do not rot."""

import json

import pytest

from bench.experiments import ablate
from bench.registry import run


def test_ablation_rows_train_evaluate_and_reuse(chain_prepared, tmp_path, capsys):
    rows = ["baseline", "min-history-1", "item-id-emb", "beam-256", "no-whiten", "ar"]
    common = ["--quick", "--data", str(chain_prepared), "--dataset", str(chain_prepared.parent / "raw"),
              "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "abl"), "--preset", "tiny",
              "--beam", "16", "--device", "cpu"]
    assert run("ablate", ["train", *common, "--rows", *rows]) == 0
    results = run("ablate", ["evaluate", *common, "--rows", *rows])
    assert list(results) == [r for r in ablate.ROWS if r in rows]  # the table's order, not the call's
    for name, r in results.items():
        assert 0 <= r["item"]["ndcg@10"] <= 1 and r["epochs"] == 1 and r["users"] > 0
    assert results["beam-256"]["beam"] == 256 and results["beam-256"]["run"] == results["baseline"]["run"]
    config = json.loads((tmp_path / "runs" / "e1" / "item-id-emb" / "config.json").read_text())
    assert config["model"]["item_id_emb"] is True
    assert json.loads((tmp_path / "runs" / "e1" / "min-history-1" / "config.json").read_text())["train"]["min_history"] == 1
    assert json.loads((tmp_path / "runs" / "e1" / "ar" / "config.json").read_text())["model"]["kind"] == "ar"
    # the SID row prepared its own folder from the raw data, with its tokenizer change
    report = json.loads(next((tmp_path / "runs" / "data").glob("*/tokenizer_report.json")).read_text())
    assert report["codebook_size"] == 8
    tok = json.loads(next((tmp_path / "runs" / "data").glob("*/tokenizer.json")).read_text())
    assert "false" in json.dumps(tok).lower()
    out = capsys.readouterr().out
    assert "| 7 history (extension) | item-id-emb |" in out
    saved = json.loads((tmp_path / "abl.json").read_text())
    assert set(saved["rows"]) == set(rows) and saved["epochs"] == 1
    assert (tmp_path / "abl.md").read_text() == ablate.render(saved) + "\n"
    # a second call trains nothing; a narrower evaluate keeps the rows evaluated before in the table
    stamp = {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("model.safetensors")}
    assert run("ablate", ["train", *common, "--rows", *rows]) == 0
    again = run("ablate", ["evaluate", *common, "--rows", "ar"])
    assert {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("model.safetensors")} == stamp
    assert list(again) == list(results) and again["ar"]["item"] == results["ar"]["item"]
    with pytest.raises(SystemExit, match="no row was trained"):
        run("ablate", ["evaluate", *common, "--runs", str(tmp_path / "empty")])
    # ablate-sids tables what the SID rows' digits carry, training nothing
    info = run("ablate-sids", ["evaluate", *common, "--rows", "baseline", "no-whiten", "item-id-emb",
                               "--out", str(tmp_path / "sids")])
    assert list(info) == ["baseline", "no-whiten"]  # rows that change no SIDs are not SID rows
    for r in info.values():
        assert 0 < r["prefix_bits"][0] <= r["prefix_bits"][-1] <= r["max_bits"] + 1e-9
    assert "| no-whiten |" in (tmp_path / "sids.md").read_text()


def test_train_step_bench_quick():
    result = run("train-step", ["run", "--quick", "--options", "eager", "torch-dropout"])
    assert set(result["samples_per_second"]) == {"diffgrm eager", "diffgrm torch-dropout", "ar eager", "ar torch-dropout"}
    assert all(v > 0 for v in result["samples_per_second"].values())
