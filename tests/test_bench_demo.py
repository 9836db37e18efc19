"""python -m bench demo in quick mode on the chain data: rows train, evaluate and table against popularity."""

from bench.experiments import demo
from bench.registry import run


def test_demo_bench_quick(chain_prepared, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "DEMO_DATA", str(chain_prepared))
    common = ["--quick", "--rows", "tiny", "demo", "--kinds", "diffgrm", "ar", "--runs", str(tmp_path / "r")]
    assert run("demo", ["train", *common]) == 0
    results = run("demo", ["evaluate", *common])
    assert list(results) == ["popularity", "tiny", "tiny-ar", "demo", "demo-ar"]
    for key, r in results.items():
        assert 0.0 <= r["item"]["ndcg@10"] <= 1.0
        if key != "popularity":
            assert r["epochs"] == 1 and r["train_seconds"] > 0 and 1 <= r["distinct_top10"] <= 60
    out = capsys.readouterr().out
    assert "| popularity |" in out and "| demo-ar |" in out
