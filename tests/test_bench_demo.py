"""bench/demo.py in quick mode on the chain data: rows train, evaluate and table against popularity."""

from tests.conftest import load_script


def test_demo_bench_quick(chain_prepared, tmp_path, monkeypatch, capsys):
    demo = load_script("bench/demo.py")
    monkeypatch.setattr(demo, "DEMO_DATA", str(chain_prepared))
    results = demo.main(["--quick", "--rows", "tiny", "demo", "--kinds", "diffgrm", "ar", "--runs", str(tmp_path / "r")])
    assert list(results) == ["popularity", "tiny", "tiny-ar", "demo", "demo-ar"]
    for key, r in results.items():
        assert 0.0 <= r["item"]["ndcg@10"] <= 1.0
        if key != "popularity":
            assert r["epochs"] == 1 and r["train_seconds"] > 0 and 1 <= r["distinct_top10"] <= 60
    out = capsys.readouterr().out
    assert "| popularity |" in out and "| demo-ar |" in out
