import json

import numpy as np
import pytest

from diffgrm.data import build_dataset, leave_one_out, load_dataset, read_folder, train_items, write_folder
from diffgrm.errors import DiffGRMError


def test_leave_one_out_by_hand():
    seqs = [np.array([10, 11, 12, 13, 14, 15]), np.array([20, 21, 22])]
    s = leave_one_out(seqs)
    assert s["test"].targets.tolist() == [15, 22]
    assert [h.tolist() for h in s["test"].histories] == [[10, 11, 12, 13, 14], [20, 21]]
    assert s["valid"].targets.tolist() == [14, 21]
    assert [h.tolist() for h in s["valid"].histories] == [[10, 11, 12, 13], [20]]
    # training part of user 0 is 10 11 12 13: prefixes with >= 2 history items
    assert [h.tolist() for h in s["train"].histories] == [[10, 11], [10, 11, 12]]
    assert s["train"].targets.tolist() == [12, 13]
    assert s["train"].users.tolist() == [0, 0]
    assert s["test"].users.tolist() == [0, 1]


def test_leave_one_out_truncates_history_to_last_items():
    s = leave_one_out([np.arange(60)], max_history=50)
    assert s["test"].histories[0].tolist() == list(range(9, 59))
    assert max(len(h) for h in s["train"].histories) == 50
    assert len(s["train"]) == 58 - 2  # targets 2..57


def test_train_items_excludes_held_out_targets():
    assert train_items([np.array([1, 2, 3, 4]), np.array([5, 6, 7])]).tolist() == [1, 2, 5]


def test_build_skips_short_users_and_counts_them():
    items = [{"item_id": f"i{k}", "title": f"t{k}"} for k in range(5)]
    ds = build_dataset("x", items, [("a", ["i0", "i1", "i2"]), ("b", ["i3", "i4"]), ("c", [])])
    assert ds.users == ["a"] and ds.skipped_users == 2 and ds.n_items == 5
    assert ds.sequences[0].tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "items, seqs, match",
    [
        ([{"item_id": "a", "title": "x"}, {"item_id": "a", "title": "y"}], [], "twice"),
        ([{"item_id": "a", "title": "x"}], [("u", ["a", "b", "a"])], "'b' is not in the item table"),
        ([{"item_id": "a", "title": ""}, {"item_id": "b", "categories": []}], [], "2 item\\(s\\) have no text"),
        ([{"item_id": "a", "title": "x"}], [("u", ["a"])], "no user with at least 3"),
        ([{"item_id": "a", "title": "x"}], [("u", ["a"] * 3), ("u", ["a"] * 3)], "more than one sequence"),
    ],
)
def test_build_rejects_bad_records(items, seqs, match):
    with pytest.raises(DiffGRMError, match=match):
        build_dataset("x", items, seqs)


def test_folder_round_trip(folder_dataset, tmp_path):
    ds = read_folder(folder_dataset)
    assert ds.n_items == 120 and ds.n_users == 60
    assert ds.items["text"].iloc[0] == "Title: Lipstick number 0 & more. Category: Beauty, lipstick."
    again = read_folder(write_folder(ds, tmp_path / "copy"))
    assert again.users == ds.users
    assert all((a == b).all() for a, b in zip(again.sequences, ds.sequences))
    assert again.items["text"].tolist() == ds.items["text"].tolist()


def test_folder_errors_name_the_file_and_line(folder_dataset):
    (folder_dataset / "items.jsonl").write_text('{"item_id": "a", "title": "x"}\n{"item_id": "b", "title": \n')
    with pytest.raises(DiffGRMError, match=r"items.jsonl:2: not valid JSON"):
        read_folder(folder_dataset)
    (folder_dataset / "items.jsonl").write_text(json.dumps({"title": "no id"}) + "\n")
    with pytest.raises(DiffGRMError, match=r"items.jsonl:1: .*no 'item_id'"):
        read_folder(folder_dataset)
    (folder_dataset / "items.jsonl").write_text(json.dumps({"asin": "a", "title": "x"}) + "\n")
    (folder_dataset / "user_sequence.txt").write_text("u1 a a a\nu2 a zz a\n")
    with pytest.raises(DiffGRMError, match=r"user_sequence.txt:2: item 'zz'"):
        read_folder(folder_dataset)
    (folder_dataset / "user_sequence.txt").unlink()
    with pytest.raises(DiffGRMError, match="missing file .*user_sequence.txt"):
        read_folder(folder_dataset)


def test_load_dataset_unknown_name(tmp_path):
    with pytest.raises(DiffGRMError, match="unknown dataset 'movielens-1m'"):
        load_dataset("movielens-1m")
    with pytest.raises(DiffGRMError, match="unknown dataset"):
        load_dataset(str(tmp_path / "nope"))
