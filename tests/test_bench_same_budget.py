"""python -m bench same-budget: finished runs sized to one budget, read from the long-SIDs run folders."""

from __future__ import annotations

import json

from bench.experiments import same_budget
from bench.registry import run
from tests.conftest import write_folder_dataset


def test_each_row_trains_its_own_epochs_and_the_table_states_their_minutes(tmp_path, monkeypatch):
    monkeypatch.setattr(same_budget, "GROUPS", {"n = 4, tiny": [("a4", 1), ("d4-k1", 2)]})
    raw = write_folder_dataset(tmp_path / "raw", n_items=120, n_users=60)
    runs = tmp_path / "runs"
    common = ["--quick", "--runs", str(runs), "--users", "30", "--dataset", str(raw)]
    assert run("same-budget", ["train", *common]) == 0
    # the minutes per epoch come from train-speed, timed once per row in any budget folder
    assert run("long-sids", ["train-speed", "a4", "d4-k1", "--quick", "--dataset", str(raw), "--runs", str(runs)]) == 0
    run("same-budget", ["evaluate", *common, "--out", str(tmp_path / "budget")])
    rows = {r["row"]: r for r in json.loads((tmp_path / "budget.json").read_text())["rows"]}
    assert rows["a4"]["epochs"] == 1 and rows["d4-k1"]["epochs"] == 2
    assert (runs / "e2" / "d4-k1" / "config.json").is_file() and (runs / "e1" / "a4" / "config.json").is_file()
    hist = (runs / "e2" / "d4-k1" / "history.jsonl").read_text().splitlines()
    assert len(hist) == 2  # the schedule spans the row's own epochs
    for r in rows.values():
        assert r["finished"] and r["minutes_per_epoch"] is not None
        assert r["minutes"] == round(r["minutes_per_epoch"] * r["epochs"], 1)
        assert 0 <= r["all"]["item"]["ndcg@10"] <= 1 and r["unseen"]["users"] == r["all"]["users"]
    table = (tmp_path / "budget.md").read_text()
    assert "| n = 4, tiny | d4-k1 | DiffGRM | 1 of 4 | 2 |" in table
