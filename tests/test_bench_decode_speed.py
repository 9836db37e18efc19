"""bench.perf.decode: the one decode-speed method returns its fields and honours passes, beam,
batch and threads (checked on the calls it makes, not on timings: the machine may be busy)."""

from __future__ import annotations

import json

import pytest
import torch

from diffgrm.decode import Recommender
from diffgrm.errors import DiffGRMError
from diffgrm.train import load_run
from bench.perf import decode as bench
from bench.registry import run


def spy(rec: Recommender) -> list[dict]:
    """Record each ``rec.search`` call's keyword arguments, batch size and torch threads."""
    calls, search = [], rec.search

    def wrapped(histories, **kw):
        calls.append({**kw, "users": len(histories), "threads": torch.get_num_threads()})
        return search(histories, **kw)

    rec.search = wrapped
    return calls


def test_users_per_second_fields_and_knobs(chain_run, chain_ar_run, chain_prepared, tmp_path):
    before = torch.get_num_threads()

    # a run folder: its own data, the seeded valid sample
    r = bench.users_per_second(chain_run, users=40, beam=12, passes=2, batch_users=16, repeats=2)
    assert r["model"] == "diffgrm" and r["steps"] == 2 and r["beam"] == 12 and r["threads"] == 1
    assert r["users"] == 40 and r["batch_users"] == 16 and r["batches"] == 3 and r["split"] == "valid"
    assert r["users_per_s"] == pytest.approx(40 / r["seconds"]) and len(r["seconds_all"]) == 2
    assert r["seconds"] == min(r["seconds_all"]) <= r["seconds_median"] and r["spread"] >= 1
    assert r["index_seconds"] > 0 and r["warmup_seconds"] > 0
    assert r["includes"] == {"history_encoder": True, "search": True, "index_build": False,
                             "warmup_and_lazy_tables": False, "metrics": False}
    assert {"cpus", "torch", "loadavg_before"} <= set(r["machine"]) and "commit" in r["code"]
    assert torch.get_num_threads() == before  # restored

    # a Recommender: every timed call gets the beam, the passes, the batch and the threads asked for
    model, prepared, _ = load_run(chain_run, device="cpu")
    rec = Recommender(model)
    calls = spy(rec)
    r = bench.users_per_second(rec, prepared, users=20, beam=10, passes=1, batch_users=8, threads=2,
                               warmup_batches=1, repeats=2)
    assert r["threads"] == 2 and r["steps"] == 1 and r["index_seconds"] is None
    assert len(calls) == 1 + 2 * 3  # one warm-up batch, then 2 repeats of 3 batches (8 + 8 + 4 users)
    assert [c["users"] for c in calls[1:4]] == [8, 8, 4]
    assert all(c["beam"] == 10 and c["passes"] == 1 and c["threads"] == 2 for c in calls)
    assert torch.get_num_threads() == before
    r = bench.users_per_second(rec, prepared, users=8, beam=16, passes=None, batch_users=8, repeats=1)
    assert r["steps"] == 4 and calls[-1]["passes"] is None and calls[-1]["beam"] == 16 and calls[-1]["threads"] == 1

    # the cached AR decoder at n passes; other pass counts are refused
    ar = bench.users_per_second(chain_ar_run, chain_prepared, split="test", users=16, beam=10, repeats=1)
    assert ar["model"] == "ar" and ar["steps"] == 4 and ar["kv_cache"] is True and ar["split"] == "test"
    with pytest.raises(DiffGRMError, match="AR decoder takes"):
        bench.users_per_second(chain_ar_run, users=8, passes=2, repeats=1)

    # the CLI: DiffGRM at n, n/2, 1 and the AR, interleaved, one table and a JSON file
    out = run("decode-speed", ["run", str(chain_run), str(chain_ar_run), "--users", "16", "--beams", "10",
                               "--repeats", "1", "--batch", "8", "--out", str(tmp_path / "s.json")])
    assert [(x["decoder"], x["steps"]) for x in out["results"]] == [
        ("DiffGRM (CPD) S=4", 4), ("DiffGRM (CPD) S=2", 2), ("DiffGRM (CPD) S=1", 1), ("AR (cached)", 4)]
    assert json.loads((tmp_path / "s.json").read_text())["results"][3]["model"] == "ar"
