"""python -m bench scale in quick mode: every stage runs in its own process and reports time and peak memory."""

from bench.registry import run


def test_scale_bench_runs_every_stage_and_both_process_counts(tmp_path, capsys):
    payload = run("scale", ["run", "--quick", "--runs", str(tmp_path / "runs")])
    (row,) = payload["rows"]
    assert row["items"] == 2000 and row["users"] == 300
    for stage in ("prepare", "train", "decode"):
        assert row[stage]["seconds"] > 0 and 50 < row[stage]["peak_mb"] < 8192
    assert row["train"]["samples_per_second"] > 0 and row["decode"]["users_per_second"] > 0
    assert 0 <= row["prepare"]["collisions_before"] < 1
    assert set(payload["processes"]) == {"1 process, 2 threads", "2 processes, 1 thread each"}
    assert all(v > 0 for v in payload["processes"].values())
    out = capsys.readouterr().out
    assert "| 2,000 |" in out and "| samples/s, 2 processes against 1 |" in out
    # the two-process run wrote one run folder, as one process does
    assert sorted(p.name for p in (tmp_path / "runs" / "procs-2").iterdir()) == \
        sorted(p.name for p in (tmp_path / "runs" / "procs-1").iterdir())
