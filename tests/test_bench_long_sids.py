"""Smoke test of ``python -m bench long-sids`` (and ``paper-protocol``): every stage on a tiny folder
dataset, and the table it writes."""

from __future__ import annotations

import json

from bench.experiments import long_sids
from bench.registry import run
from tests.conftest import write_folder_dataset


def test_every_stage_runs_and_the_table_reads_what_was_made(tmp_path, capsys):
    raw = write_folder_dataset(tmp_path / "raw", n_items=120, n_users=60)
    common = ["--quick", "--dataset", str(raw), "--runs", str(tmp_path / "runs"), "--epochs", "1",
              "--speed-users", "20", "--repeats", "1", "--out", str(tmp_path / "long")]
    rows = ["d4", "a4", "d8-k4"]
    for stage in ("train", "speed", "train-speed"):
        assert run("long-sids", [stage, *rows, *common]) == 0
    payload = run("long-sids", ["evaluate", *common])
    assert payload == json.loads((tmp_path / "long.json").read_text())
    got = {r["row"]: r for r in payload["rows"]}
    assert set(got) == set(rows)
    assert got["d8-k4"]["n"] == 8 and got["d8-k4"]["views"] == "4 of 8" and got["a4"]["views"] == "-"
    for r in got.values():
        assert r["finished"] and r["train_speed"]["samples_per_second"] > 0
        n = r["n"]
        for key in (f"s{n}", f"s{n}-unseen"):
            assert 0 <= r["valid"][key]["item"]["ndcg@10"] <= 1
        speeds = r["speed"]
        assert speeds[f"b32-s{n}"]["users_per_second"] > 0 and speeds[f"b256-s{n}"]["beam"] == 256
    assert "b32-s4" in got["d8-k4"]["speed"] and "b32-s2" in got["d8-k4"]["speed"]  # n/2 and n/4 passes
    table = (tmp_path / "long.md").read_text()
    assert "| d8-k4 | 8 | DiffGRM | 4 of 8 |" in table and table == long_sids.render(payload) + "\n"
    fig = json.loads((tmp_path / "ocn-cost.json").read_text())
    assert {t["name"] for t in fig["data"]} == set(rows)
    # the paper's protocol: a run on the unrepaired catalogue, chosen at SID level, both levels side by side
    assert run("long-sids", ["train", "d4-paper", *common]) == 0
    proto = run("paper-protocol", ["evaluate", *common, "--out", str(tmp_path / "paper-protocol")])
    assert proto == json.loads((tmp_path / "paper-protocol.json").read_text())
    assert proto["select"] == "sid" and proto["sid"]["ndcg@10"] >= proto["item"]["ndcg@10"]
    assert "| the paper's | SID" in (tmp_path / "paper-protocol.md").read_text()
    # a second call reuses everything: nothing is trained or evaluated again
    before = {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("*.json")}
    assert run("long-sids", ["train", *rows, *common]) == 0
    run("long-sids", ["evaluate", *common])
    assert {p: p.stat().st_mtime for p in before} == before


def test_rows_with_another_codebook_or_catalogue_get_their_own_prepared_folder():
    rows = long_sids.ROWS
    assert rows["d8-k4"].data == "beauty-n8" and rows["d8c16-k1"].data == "beauty-n8-c16"
    assert rows["a8c16"].data == rows["d8c16-k1"].data and rows["d4-paper"].data == "beauty-n4-norepair"
    # the two decoders of one comparison always read the same SIDs
    pairs = [("d4", "a4"), ("d8-k4", "a8"), ("d8c16-k1", "a8c16")]
    assert all(rows[d].data == rows[a].data and rows[a].kind == "ar" for d, a in pairs)
