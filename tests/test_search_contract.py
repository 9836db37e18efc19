"""The contract every decoder's search keeps, run on CPD's and the autoregressive one alike.

Both read the same stand-in network (a seeded table keyed by the partial SID), each through its
own interface: CPD asks for every digit of a partial SID, AR for the next digit of a prefix. A
later decoder joins by adding one entry to ``SEARCHES``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from diffgrm.ar import ar_search
from diffgrm.cpd import cpd_search
from diffgrm.errors import DiffGRMError
from diffgrm.sid_index import MASK, SIDIndex
from diffgrm.trace import KEPT, STATUSES

N, K = 3, 5


class TableNet:
    """Log-probs as a fixed random function of (user, partial SID); ``banned`` codes of digit 0 get -inf."""

    def __init__(self, index: SIDIndex, users: int, seed: int, banned: tuple[int, ...] = ()) -> None:
        self.index = index
        gen = torch.Generator().manual_seed(seed)
        self.table = (2.0 * torch.randn(users, (K + 1) ** N, N, K, generator=gen)).log_softmax(-1)
        self.table[..., 0, list(banned)] = float("-inf")

    def every_digit(self, tokens: torch.Tensor) -> torch.Tensor:  # CPD: [B, R, n] -> [B, R, n, K]
        return self.table[torch.arange(tokens.shape[0])[:, None], self.index.keys(tokens)]

    def next_digit(self, prefix: torch.Tensor) -> torch.Tensor:  # AR: [B, R, t] -> [B, R, K]
        b, r, t = prefix.shape
        tokens = torch.cat([prefix, torch.full((b, r, N - t), MASK, dtype=torch.long)], dim=2)
        return self.every_digit(tokens)[:, :, t]


SEARCHES = {
    "cpd": lambda net, index, users, **kw: cpd_search(net.every_digit, index, users, **kw),
    "ar": lambda net, index, users, **kw: ar_search(net.next_digit, index, users, **kw),
}


def catalogue(n_items: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    every = np.array(list(itertools.product(range(K), repeat=N)))
    return every[np.sort(rng.choice(len(every), size=n_items, replace=False))]


@pytest.fixture(params=list(SEARCHES))
def search(request):
    return SEARCHES[request.param]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_k_shapes_order_and_distinct_catalogue_items(search, seed):
    codes = catalogue(60, seed)
    index = SIDIndex(torch.from_numpy(codes), K)
    res = search(TableNet(index, 4, seed), index, 4, beam=12, topk=8)
    assert res.items.shape == (4, 8) and res.scores.shape == (4, 8) and res.sids.shape == (4, 8, N)
    assert res.items.dtype == torch.long and res.scores.is_floating_point() and res.traces is None
    items, scores, sids = res.items.numpy(), res.scores.numpy(), res.sids.numpy()
    assert (items >= 0).all() and np.isfinite(scores).all()  # 60 items: a full Top-8 for everyone
    assert all(len(set(row)) == 8 for row in items.tolist())
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    np.testing.assert_array_equal(sids, codes[items])


def test_padding_when_the_catalogue_holds_fewer_items_than_k(search):
    codes = catalogue(3, 0)
    index = SIDIndex(torch.from_numpy(codes), K)
    res = search(TableNet(index, 2, 0), index, 2, beam=8, topk=6)
    items, scores, sids = res.items.numpy(), res.scores.numpy(), res.sids.numpy()
    assert (items[:, :3] >= 0).all() and sorted(items[0, :3].tolist()) == [0, 1, 2]
    assert (items[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all() and (sids[:, 3:] == MASK).all()


def test_items_the_network_rules_out_are_padding_not_results(search):
    codes = catalogue(40, 3)
    index = SIDIndex(torch.from_numpy(codes), K)
    banned = (0, 1, 2, 3)  # only SIDs starting with code 4 stay possible
    res = search(TableNet(index, 2, 3, banned=banned), index, 2, beam=40, topk=40)
    allowed = set(np.flatnonzero(codes[:, 0] == 4).tolist())
    for row, sc in zip(res.items.numpy(), res.scores.numpy()):
        found = row[row >= 0]
        assert set(found.tolist()) == allowed and np.isneginf(sc[len(found):]).all()


def test_beam_below_k_is_one_clear_error(search):
    index = SIDIndex(torch.from_numpy(catalogue(20, 0)), K)
    with pytest.raises(DiffGRMError, match=r"the beam \(3\) must be at least K \(5\)"):
        search(TableNet(index, 1, 0), index, 1, beam=3, topk=5)
    with pytest.raises(DiffGRMError, match="K must be at least 1"):
        search(TableNet(index, 1, 0), index, 1, beam=3, topk=0)


def test_seen_items_are_never_returned(search):
    codes = catalogue(50, 4)
    index = SIDIndex(torch.from_numpy(codes), K)
    net = TableNet(index, 3, 4)
    plain = search(net, index, 3, beam=10, topk=5)
    seen = plain.items[:, :3].clone()  # each user's best three, now in the history
    res = search(net, index, 3, beam=10, topk=5, seen=seen)
    for row, hist in zip(res.items.tolist(), seen.tolist()):
        assert not set(row) & set(hist) and len(set(row)) == 5 and min(row) >= 0


def test_trace_lineage_scores_and_weighed_fills(search):
    codes = catalogue(70, 5)
    index = SIDIndex(torch.from_numpy(codes), K)
    res = search(TableNet(index, 3, 5), index, 3, beam=9, topk=6, trace=True)
    assert len(res.traces) == 3
    for u, tr in enumerate(res.traces):
        assert tr.n_steps == N and tr.beam == 9 and tr.distributions.shape == (N, 9, N, K)
        np.testing.assert_array_equal(tr.items, res.items[u].numpy())
        for k in range(6):  # final beam k is item k, and its lineage builds its SID one digit at a time
            path = tr.lineage(k)
            np.testing.assert_array_equal(tr.tokens[N - 1, path[-1]], res.sids[u, k].numpy())
            before, total = np.full(N, MASK), 0.0
            for s, r in enumerate(path):
                assert tr.alive[s, r] and (s == 0 or tr.parent[s, r] == path[s - 1])
                after = before.copy()
                after[tr.digit[s, r]] = tr.code[s, r]
                np.testing.assert_array_equal(tr.tokens[s, r], after)
                total += np.log(tr.prob[s, r])
                assert tr.score[s, r] == pytest.approx(total, abs=1e-4)
                before = after
        dead = ~tr.alive
        assert (tr.parent[dead] == -1).all() and (tr.tokens[dead] == MASK).all() and np.isneginf(tr.score[dead]).all()
        for s in range(N):  # the weighed fills: every kept beam once, each status a known one
            table = tr.fills_table(s, limit=None)
            assert (table["status"] == STATUSES[KEPT]).sum() == tr.alive[s].sum()
            assert set(table["status"]) <= set(STATUSES) and table["on_path"].sum() == 1
            assert table["beam_score"].is_monotonic_decreasing


def test_the_step_hook_sees_every_steps_beams(search):
    codes = catalogue(60, 6)
    index = SIDIndex(torch.from_numpy(codes), K)
    net = TableNet(index, 2, 6)
    seen = []
    res = search(net, index, 2, beam=7, topk=5, on_step=lambda s, tokens, scores: seen.append((s, tokens, scores)))
    assert [s for s, _, _ in seen] == list(range(N))
    for s, tokens, scores in seen:  # s + 1 digits filled in every live beam, best first
        live = torch.isfinite(scores)
        assert ((tokens != MASK).sum(-1)[live] == s + 1).all()
        assert (scores[:, 1:] <= scores[:, :-1]).all()
    last_tokens, last_scores = seen[-1][1], seen[-1][2]  # the whole last beam: the Top-K leads it
    for u in range(2):
        np.testing.assert_array_equal(last_tokens[u, :5].numpy(), res.sids[u].numpy())
    traced = search(net, index, 2, beam=7, topk=5, trace=True)
    assert torch.equal(traced.items, res.items)  # the hook changes nothing the search returns
