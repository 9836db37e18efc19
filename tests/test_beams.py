"""The helpers both searches rank their beams with, against slow references written as loops."""

from __future__ import annotations

import pytest
import torch

from diffgrm.beams import by_tier, finish, first_per_group
from diffgrm.sid_index import MASK, SIDIndex


def first_per_group_slow(keys: torch.Tensor) -> torch.Tensor:
    """Row by row, left to right: a key is first the first time the row shows it."""
    out = torch.zeros_like(keys, dtype=torch.bool)
    for r, row in enumerate(keys.reshape(-1, keys.shape[-1]).tolist()):
        met = set()
        for c, key in enumerate(row):
            out.view(-1, keys.shape[-1])[r, c] = key not in met
            met.add(key)
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 11), (2, 4, 9)])
def test_first_per_group_matches_the_loop(seed, shape):
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randint(-3, 5, shape, generator=gen)  # many repeats, negative keys too
    assert torch.equal(first_per_group(keys), first_per_group_slow(keys))


def test_by_tier_keeps_column_order_inside_each_tier():
    tier = torch.tensor([[2, 0, 1, 0, 2, 1], [1, 1, 1, 0, 0, 0]])
    want = [sorted(range(6), key=lambda c: (int(t[c]), c)) for t in tier]
    assert by_tier(tier).tolist() == want
    assert by_tier(tier == 2).tolist() == [[1, 2, 3, 5, 0, 4], [0, 1, 2, 3, 4, 5]]  # bools are tiers 0 and 1


def test_finish_drops_dead_outside_and_repeated_beams_and_pads():
    codes = torch.tensor([[0, 0], [0, 1], [1, 0]])
    index = SIDIndex(codes, 2)
    tokens = torch.tensor([[[0, 1], [1, 1], [0, 1], [0, 0], [1, 0]]])  # item 1, outside, item 1 again, 0, 2
    scores = torch.tensor([[-1.0, -0.5, -2.0, float("-inf"), -3.0]])
    res = finish(index, tokens, scores, topk=4)
    assert res.items.tolist() == [[1, 2, -1, -1]]  # the dead beam, the SID outside and the repeat go
    assert res.scores[0, :2].tolist() == [-1.0, -3.0] and torch.isinf(res.scores[0, 2:]).all()
    assert res.sids[0, 0].tolist() == [0, 1] and (res.sids[0, 2:] == MASK).all()
