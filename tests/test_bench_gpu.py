"""python -m bench gpu in --tiny mode on the CPU (synthetic data, a few steps), its reuse of finished stages,
and its refusal to run the full benchmark without a CUDA device."""

import json

import pytest

from bench.perf import gpu
from bench.registry import run


def test_gpu_bench_tiny_runs_both_models_on_the_cpu_and_reuses_them(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "res" / "gpu-tiny"
    argv = ["--tiny", "--device", "cpu", "--runs", str(runs), "--out", str(out), "--quiet"]
    payload = run("gpu", ["run", *argv])
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved == json.loads(json.dumps(payload))  # what was returned is what was written
    assert saved["device"] == "cpu" and saved["device_type"] == "cpu" and saved["precision"] == "fp32"
    assert saved["tiny"] and saved["preset"] == "tiny" and saved["dataset"] == "synth"
    assert saved["split"] == "test" and saved["beam"] == 16 and saved["users"] == 30
    assert set(saved["models"]) == {"diffgrm", "ar"}
    for kind, m in saved["models"].items():
        assert m["beam"] == 16 and m["users"] == 30 and m["split"] == "test"
        assert 1 <= m["best_epoch"] <= m["epochs"] <= 2 and len(m["history"]) == m["epochs"]
        assert m["precision"] == "fp32" and m["parameters"] > 0 and m["users_per_s"] > 0
        for level in ("item", "sid"):
            assert set(m[level]) >= {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
            assert all(0 <= v <= 1 for v in m[level].values())
        assert m["item"]["recall@10"] >= m["item"]["ndcg@10"]
        assert (runs / kind / "model.safetensors").is_file()
    stages = saved["stages"]
    assert set(stages) == {"prepare", "train_diffgrm", "train_ar", "evaluate_diffgrm", "evaluate_ar"}
    assert all(v is not None and v >= 0 for v in stages.values())
    assert stages["train_diffgrm"] > 0 and saved["stage_minutes"] == pytest.approx(sum(stages.values()))
    assert saved["budget_minutes"] == 10 and saved["stage_minutes"] <= saved["wall_minutes"] + 1e-6
    assert all(0 <= v <= 1 for v in saved["popularity"].values())
    # decode speed: the cached AR and CPD at n, n/2 and 1 passes, in batches of 32 and one user at a time
    speed = saved["decode_speed"]
    assert {(r["decoder"], r["batch_users"], r["beam"]) for r in speed} == {
        (d, b, k) for d in ("AR (cached)", "CPD S=4", "CPD S=2", "CPD S=1") for b in (32, 1) for k in (32, 256)}
    assert all(r["users_per_s"] > 0 for r in speed)
    assert {r["users"] for r in speed if r["batch_users"] == 1} == {2}
    md = out.with_suffix(".md").read_text()
    assert "| CPD S=2 |" in md and "x) |" in md and "1 user/batch, beam 256" in md
    assert md.startswith("synth, test split, 30 users, beam 16") and "| AR decoder, same SIDs | 2 (" in md
    assert "| DiffGRM (OCN + CPD) |" in capsys.readouterr().out

    # a second call reuses the prepared folder, both runs and both evaluations
    stamp = {p: p.stat().st_mtime for p in runs.rglob("*.safetensors")}
    again = run("gpu", ["run", *argv])
    assert {p: p.stat().st_mtime for p in runs.rglob("*.safetensors")} == stamp
    assert again["prepare_reused"] and all(m["train_reused"] and m["eval_reused"] for m in again["models"].values())
    assert again["models"]["ar"]["item"] == payload["models"]["ar"]["item"]
    assert again["stages"] == payload["stages"]
    # a finished run with other settings is never silently reused or replaced
    with pytest.raises(SystemExit, match="other settings"):
        run("gpu", ["run", *argv, "--epochs", "3"])


def test_gpu_bench_refuses_without_cuda_unless_tiny(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gpu.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        run("gpu", ["run", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "gpu")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "python -m bench gpu measures a CUDA GPU" in err and "sees none" in err and "--tiny" in err and "--allow-cpu" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "gpu.json").exists()
    with pytest.raises(SystemExit) as exc:  # asking for the CPU by name is refused the same way
        run("gpu", ["run", "--device", "cpu", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "gpu")])
    assert exc.value.code == 2 and "--device cpu" in capsys.readouterr().err
