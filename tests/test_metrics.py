"""Recall@K / NDCG@K, item and SID level, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffgrm.errors import DiffGRMError
from diffgrm.metrics import (
    combined_score,
    popularity_ranking,
    ranking_metrics,
    sid_ranking_metrics,
    sid_target_ranks,
    target_ranks,
)


def _lists_with_target_at(ranks: list[int], length: int = 12, target: int = 999) -> np.ndarray:
    """One list per user with ``target`` at 1-based position ``rank`` (0 = absent); other items distinct."""
    out = np.arange(len(ranks) * length).reshape(len(ranks), length)
    for u, r in enumerate(ranks):
        if r:
            out[u, r - 1] = target
    return out


def test_hand_computed_ranks_1_3_11_missing():
    ranked = _lists_with_target_at([1, 3, 11, 0])
    targets = np.full(4, 999)
    np.testing.assert_array_equal(target_ranks(ranked, targets), [1, 3, 11, 0])
    m = ranking_metrics(ranked, targets)
    assert set(m) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
    assert m["recall@5"] == pytest.approx(0.5)
    assert m["recall@10"] == pytest.approx(0.5)  # rank 11 is outside the top 10
    expected_ndcg = (1 / math.log2(2) + 1 / math.log2(4)) / 4  # = 0.375
    assert m["ndcg@5"] == pytest.approx(expected_ndcg)
    assert m["ndcg@10"] == pytest.approx(expected_ndcg)
    m20 = ranking_metrics(ranked, targets, ks=(20,))
    assert m20["recall@20"] == pytest.approx(0.75)
    assert m20["ndcg@20"] == pytest.approx((1 + 0.5 + 1 / math.log2(12)) / 4)


def test_rank_between_cutoffs():
    ranked = _lists_with_target_at([7, 2])
    m = ranking_metrics(ranked, [999, 999])
    assert m["recall@5"] == pytest.approx(0.5)
    assert m["recall@10"] == pytest.approx(1.0)
    assert m["ndcg@5"] == pytest.approx(1 / math.log2(3) / 2)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(8)) / 2)


def test_padding_and_short_lists_and_torch_input():
    ranked = torch.tensor([[3, -1, -1], [-1, -1, -1], [5, 4, -1]])
    targets = torch.tensor([3, 7, 4])
    np.testing.assert_array_equal(target_ranks(ranked, targets), [1, 0, 2])
    # a target of -1 never matches the padding
    np.testing.assert_array_equal(target_ranks(ranked, torch.tensor([3, -1, -1])), [1, 0, 0])
    m = ranking_metrics(ranked, targets)
    assert m["recall@5"] == pytest.approx(2 / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 3)


def test_duplicates_in_item_list_count_once():
    ranked = np.array([[1, 9, 9, 9, 2]])
    m = ranking_metrics(ranked, [9])
    assert m["recall@5"] == 1.0  # not 3
    assert m["ndcg@5"] == pytest.approx(1 / math.log2(3))


def test_shape_mismatch_errors():
    with pytest.raises(DiffGRMError, match="targets"):
        ranking_metrics(np.zeros((3, 5), int), np.zeros(4, int))
    with pytest.raises(DiffGRMError, match="ranked_items"):
        ranking_metrics(np.zeros(5, int), np.zeros(5, int))
    with pytest.raises(DiffGRMError, match="target_sids"):
        sid_ranking_metrics(np.zeros((2, 5, 3), int), np.zeros((2, 4), int))
    with pytest.raises(DiffGRMError, match="ranked_sids"):
        sid_ranking_metrics(np.zeros((2, 5), int), np.zeros((2, 5), int))
    with pytest.raises(DiffGRMError, match="ks"):
        ranking_metrics(np.zeros((2, 5), int), np.zeros(2, int), ks=(0,))


def test_sid_level_equals_item_level_without_collisions():
    codes = np.array([[0, 1], [1, 0], [1, 1], [2, 2]])  # item i has SID codes[i]
    ranked_items = np.array([[2, 0, 3], [1, 3, -1]])
    targets = np.array([0, 3])
    sids = np.where(ranked_items[..., None] >= 0, codes[ranked_items], -1)
    assert sid_ranking_metrics(sids, codes[targets]) == pytest.approx(ranking_metrics(ranked_items, targets))


def test_sid_level_collision_inflates_over_item_level():
    # items 0 and 1 share SID (0, 0); the SID -> item lookup names item 0 for it
    codes = np.array([[0, 0], [0, 0], [1, 2], [2, 1]])
    targets = np.array([1, 2])  # user 0 wants item 1, which the decoder can only reach as "item 0"
    ranked_items = np.array([[0, 3], [2, 3]])
    ranked_sids = codes[ranked_items]
    item = ranking_metrics(ranked_items, targets)
    sid = sid_ranking_metrics(ranked_sids, codes[targets])
    assert item["recall@5"] == pytest.approx(0.5)
    assert sid["recall@5"] == pytest.approx(1.0)
    assert sid["ndcg@10"] > item["ndcg@10"]


def test_sid_level_duplicates_first_position_and_padding_rows():
    t = np.array([[1, 2, 3], [0, 0, 0]])
    ranked = np.array(
        [
            [[5, 5, 5], [1, 2, 3], [1, 2, 3], [1, 2, 3]],  # duplicates of the target: first at position 2
            [[-1, -1, -1], [-1, -1, -1], [0, 0, 0], [-1, -1, -1]],  # padding rows, target at position 3
        ]
    )
    np.testing.assert_array_equal(sid_target_ranks(ranked, t), [2, 3])
    m = sid_ranking_metrics(ranked, t)
    assert m["recall@5"] == 1.0
    assert m["ndcg@5"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 2)
    # a partial row with -1 never matches, even against a target that has those digits
    np.testing.assert_array_equal(sid_target_ranks(np.array([[[1, -1, 3]]]), np.array([[1, 2, 3]])), [0])


def test_popularity_ranking_ties_by_lower_index():
    train = np.array([4, 4, 2, 2, 7, 1, 1, 1])
    np.testing.assert_array_equal(popularity_ranking(train, 8, 4), [1, 2, 4, 7])
    np.testing.assert_array_equal(popularity_ranking(torch.tensor(train), 8, 6), [1, 2, 4, 7, 0, 3])
    np.testing.assert_array_equal(popularity_ranking(np.array([1]), 2, 4), [1, 0, -1, -1])
    with pytest.raises(DiffGRMError):
        popularity_ranking(np.array([8]), 8, 3)
    # as a baseline: the same list for every user
    pop = popularity_ranking(train, 8, 10)
    m = ranking_metrics(np.broadcast_to(pop, (3, 10)), np.array([1, 7, 5]))
    assert m["recall@5"] == pytest.approx(2 / 3)


def test_popularity_metrics_by_hand():
    from diffgrm.metrics import popularity_metrics

    train = np.array([4, 4, 2, 2, 7, 1, 1, 1])  # ranking 1, 2, 4, 7, 0, 3, 5, 6
    m = popularity_metrics(train, np.array([1, 4, 6]), n_items=8, ks=(1, 5))
    assert m["recall@1"] == pytest.approx(1 / 3) and m["recall@5"] == pytest.approx(2 / 3)
    assert m["ndcg@5"] == pytest.approx((1.0 + 1 / np.log2(4)) / 3)


def test_combined_score():
    m = {"recall@10": 0.5, "ndcg@10": 0.25, "recall@5": 0.0, "ndcg@5": 0.0}
    assert combined_score(m) == pytest.approx(0.8 * 0.25 + 0.2 * 0.5)
    with pytest.raises(DiffGRMError, match="ndcg@10"):
        combined_score({"recall@5": 1.0, "recall@10": 1.0})
