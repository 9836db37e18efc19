"""How on-policy OCN is: its views' order against CPD's fill order, measured per user."""

import json

import numpy as np
import pytest

from diffgrm import viz
from diffgrm.decode import Recommender
from diffgrm.errors import DiffGRMError
from diffgrm.onpolicy import agreement, measure, ocn_order
from diffgrm.train import load_run
from tests.conftest import ROOT


def test_agreement_reads_the_two_orders():
    same = agreement(np.array([[0, 1, 2, 3], [3, 2, 1, 0]]), np.array([[0, 1, 2, 3], [3, 2, 1, 0]]))
    assert same["exact"] == same["first"] == 1.0 and same["kendall_tau"] == pytest.approx(1.0)
    np.testing.assert_allclose(same["rank_matrix"], np.eye(4))
    backwards = agreement(np.array([[0, 1, 2, 3]]), np.array([[3, 2, 1, 0]]))
    assert backwards["exact"] == backwards["first"] == 0.0 and backwards["kendall_tau"] == pytest.approx(-1.0)
    assert backwards["rank_matrix"][0][3] == 1.0  # CPD's first fill was OCN's last digit
    half = agreement(np.array([[0, 1, 2, 3], [0, 1, 2, 3]]), np.array([[0, 1, 2, 3], [1, 0, 2, 3]]))
    assert half["exact"] == 0.5 and half["by_step"] == [0.5, 0.5, 1.0, 1.0]
    assert half["exact_chance"] == pytest.approx(1 / 24) and half["first_chance"] == 0.25
    with pytest.raises(DiffGRMError, match="same shape"):
        agreement(np.zeros((2, 4), int), np.zeros((2, 3), int))


def test_measure_on_a_trained_run(chain_run, chain_ar_run):
    model, prepared, _ = load_run(chain_run, device="cpu")
    hist = prepared.splits["test"].histories[:40]
    result, ocn, cpd = measure(Recommender(model), hist, beam=16)
    assert ocn.shape == cpd.shape == (40, 4)
    assert all(sorted(row) == [0, 1, 2, 3] for row in np.concatenate([ocn, cpd]).tolist())
    assert result["users"] == 40 and np.allclose(np.sum(result["rank_matrix"], axis=1), 1.0)
    np.testing.assert_array_equal(ocn, ocn_order(Recommender(model), hist, batch=7))  # batching changes nothing
    fig = viz.order_agreement_figure(result)
    assert "Same first digit for" in fig.layout.title.text
    with pytest.raises(DiffGRMError, match="autoregressive"):
        ocn_order(Recommender(load_run(chain_ar_run, device="cpu")[0]), hist)


def test_the_committed_table_is_the_scripts_rendering_of_its_json():
    from bench.experiments import on_policy as bench

    saved = json.loads((ROOT / "bench" / "results" / "on-policy.json").read_text())
    assert bench.render(saved) == (ROOT / "bench" / "results" / "on-policy.md").read_text().rstrip("\n")
    a = saved["agreement"]
    assert a["users"] == 943 and 0 <= a["exact"] <= a["first"] <= 1
    figure = json.loads((ROOT / "bench" / "results" / "on-policy-figure.json").read_text())
    assert figure["data"][0]["type"] == "heatmap"
