"""SASRec, the discriminative baseline: it learns the chain dataset, round-trips, refuses bad input."""

import json

import numpy as np
import pytest

from diffgrm.data import Samples
from diffgrm.errors import DiffGRMError
from diffgrm.prepare import load_prepared
from diffgrm.sasrec import SASRecConfig, evaluate_sasrec, load_sasrec, rank_items, train_sasrec

FAST = SASRecConfig(d_model=32, n_heads=2, n_layers=1, dropout=0.0, epochs=30, batch_size=32, lr=5e-3, patience=30)


@pytest.fixture(scope="module")
def sasrec_run(chain_prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("sasrec") / "run"
    model, history = train_sasrec(load_prepared(chain_prepared), FAST, out, device="cpu", progress=False)
    return model, history, out


def test_learns_the_chains_far_above_popularity(chain_prepared, sasrec_run):
    model, history, _ = sasrec_run
    assert history[-1]["loss"] < history[0]["loss"] * 0.5
    prepared = load_prepared(chain_prepared)
    test = prepared.splits["test"]
    metrics = evaluate_sasrec(model, test, prepared.catalogue.codes)
    # 60 items with flat popularity: popularity's Recall@10 is about 10/60; the chain rule is learnable
    assert metrics["item"]["recall@10"] > 0.6
    assert metrics["sid"] == metrics["item"]  # one-to-one catalogue: SID level equals item level
    assert metrics["model"] == "sasrec" and metrics["users"] == len(test)


def test_next_item_of_a_chain_ranks_first(sasrec_run):
    model = sasrec_run[0]
    top = rank_items(model, [np.array([10, 11, 12]), np.array([40, 41])], k=3)
    assert top.shape == (2, 3)
    assert top[0, 0] == 13 and top[1, 0] == 42


def test_checkpoint_round_trip_without_pickle(chain_prepared, sasrec_run):
    model, _, out = sasrec_run
    meta = json.loads((out / "config.json").read_text())
    assert meta["model"]["kind"] == "sasrec" and meta["train"]["d_model"] == 32
    again = load_sasrec(out)
    hist = [np.array([3, 4, 5]), np.array([7])]
    assert (rank_items(again, hist) == rank_items(model, hist)).all()
    assert len((out / "history.jsonl").read_text().splitlines()) == len(sasrec_run[1])


def test_bad_input_is_refused(tmp_path, sasrec_run):
    with pytest.raises(DiffGRMError, match="holds no SASRec checkpoint"):
        load_sasrec(tmp_path)
    with pytest.raises(DiffGRMError, match="history is empty"):
        rank_items(sasrec_run[0], [np.array([], dtype=np.int64)])
    with pytest.raises(DiffGRMError, match="divisible"):
        SASRecConfig(d_model=30, n_heads=4)
    empty = Samples([np.array([1])], np.array([2]), np.array([0]))
    assert evaluate_sasrec(sasrec_run[0], empty, np.zeros((60, 4), dtype=np.int64))["users"] == 1
