"""exclude_seen: a user's history items stay out of the Top-K, removed inside the search.

With a beam that covers everything the result is the full ranking without the seen items (brute
force); with a small beam the freed slots are refilled, which filtering the result afterwards
cannot do; with nothing seen the searches are exactly what they were.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffgrm.ar import ar_search
from diffgrm.cpd import cpd_search, pass_sizes
from diffgrm.errors import DiffGRMError
from diffgrm.sid_index import MASK, SIDIndex
from tests.test_ar import PrefixTable, _catalogue
from tests.test_cpd import RandomNet, brute_force, catalogue, multi_pass_brute_force


def seen_items(ranked: torch.Tensor, n_items: int, extra: int, seed: int, pad: int = 3) -> torch.Tensor:
    """Per user: the given best items, ``extra`` random others, and ``pad`` trailing -1s."""
    rng = np.random.default_rng(seed)
    rows = []
    for row in ranked.tolist():
        others = rng.choice(np.setdiff1d(np.arange(n_items), row), size=extra, replace=False)
        rows.append(list(rng.permutation([*row, *others.tolist()])) + [-1] * pad)
    return torch.tensor(rows)


def assert_unseen(items: torch.Tensor, seen: torch.Tensor, k: int | None = None) -> None:
    for row, hist in zip(items.tolist(), seen.tolist()):
        assert not set(row) & (set(hist) - {-1})
        real = [i for i in row if i >= 0]
        assert len(set(real)) == len(real) and (k is None or len(real) == k)


def without(ranking: list[int], seen: torch.Tensor, k: int) -> list[int]:
    return [i for i in ranking if i not in set(seen.tolist())][:k]


# --- CPD ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [None, 2, 1])
@pytest.mark.parametrize("seed", [0, 1])
def test_cpd_with_a_full_beam_returns_the_ranking_without_the_seen_items(seed, steps):
    n, k, batch, topk = 3, 4, 2, 8
    codes = catalogue(n, k, 40, seed)
    index = SIDIndex(codes, k)
    net = RandomNet(index, batch, seed + 10)
    fills = pass_sizes(n, n if steps is None else steps)
    every = [multi_pass_brute_force(net, codes, u, fills, 40) for u in range(batch)]
    seen = seen_items(torch.tensor([e[0][:4] for e in every]), len(codes), 3, seed)
    res = cpd_search(net, index, batch, beam=64, topk=topk, passes=steps, seen=seen)  # 64 = every SID
    for u in range(batch):
        want = without(every[u][0], seen[u], topk)
        assert res.items[u].tolist() == want
        np.testing.assert_allclose(res.scores[u].numpy(), [every[u][1][every[u][0].index(i)] for i in want], rtol=1e-5)


@pytest.mark.parametrize("fixed", [(0, 1, 2), (2, 0, 1)])
def test_cpd_fixed_order_full_beam_without_the_seen_items(fixed):
    n, k, batch, topk = 3, 4, 2, 10
    codes = catalogue(n, k, 40, 7)
    index = SIDIndex(codes, k)
    net = RandomNet(index, batch, 3)
    every = [brute_force(net, codes, u, [fixed], 40)[0] for u in range(batch)]
    seen = seen_items(torch.tensor([e[:5] for e in every]), len(codes), 2, 1)
    res = cpd_search(net, index, batch, beam=64, topk=topk, order="fixed", fixed_order=fixed, seen=seen, trace=True)
    for u in range(batch):
        assert res.items[u].tolist() == without(every[u], seen[u], topk)


@pytest.mark.parametrize("order, steps, trace", [("confidence", None, False), ("confidence", None, True),
                                                 ("confidence", 2, False), ("fixed", None, False),
                                                 ("random", 3, True), ("confidence", 1, False)])
def test_a_small_cpd_beam_refills_the_slots_of_seen_items(order, steps, trace):
    """The five best items of a beam of 10 are in the history: filtering afterwards leaves five,
    the search finds ten others."""
    n, k, batch = 4, 8, 3
    codes = catalogue(n, k, 300, 4)
    index = SIDIndex(codes, k)
    net = RandomNet(index, batch, seed=2, table_size=4096)
    kwargs = dict(beam=10, topk=10, order=order, passes=steps, trace=trace, seed=3)
    plain = cpd_search(net, index, batch, **kwargs)
    seen = seen_items(plain.items[:, :5], len(codes), 4, 0)
    res = cpd_search(net, index, batch, seen=seen, **kwargs)
    assert_unseen(res.items, seen, k=10)
    assert torch.equal(index.item_of(res.sids), res.items)
    filtered = [without(row, s, 10) for row, s in zip(plain.items.tolist(), seen)]
    assert all(len(f) <= 5 for f in filtered)  # what filtering after the search would return
    assert (res.scores[:, :-1] >= res.scores[:, 1:]).all()
    wide = cpd_search(net, index, batch, beam=10, topk=5, order=order, passes=steps, seed=3, seen=seen)
    assert_unseen(wide.items, seen, k=5)  # topk < beam: the last digit reads beams in chunks


def test_cpd_prunes_partial_sids_whose_items_are_all_seen():
    """Confidence order lists the items of narrow partial SIDs: a beam never holds one that can
    only end on a seen item."""
    n, k, batch, beam = 4, 8, 3, 6
    codes = catalogue(n, k, 200, 9)
    index = SIDIndex(codes, k)
    net = RandomNet(index, batch, seed=5, table_size=4096)
    plain = cpd_search(net, index, batch, beam=beam, topk=beam, trace=True)
    seen = seen_items(plain.items, len(codes), 20, 2)
    res = cpd_search(net, index, batch, beam=beam, topk=beam, trace=True, seen=seen)
    assert_unseen(res.items, seen, k=beam)
    checked = 0
    for trace, hist in zip(res.traces, seen.tolist()):
        unseen = np.setdiff1d(np.arange(len(codes)), hist)
        for s in range(n - 1):
            for toks in trace.tokens[s][trace.alive[s]]:
                match = ((codes == toks) | (toks == MASK)).all(1)
                if match.sum() < beam:  # a listed partial SID: it must still reach an unseen item
                    assert match[unseen].any()
                    checked += 1
    assert checked > 0


def test_a_seen_item_that_shares_its_sid_excludes_nothing():
    """Without repair two items can share a SID, which names the lower index: seeing the other one
    leaves the SID in the search, seeing the named one removes it."""
    codes = catalogue(3, 4, 20, 0)
    codes = np.concatenate([codes, codes[[5]]])  # item 20 shares item 5's SID
    index = SIDIndex(codes, 4)
    favourite = torch.as_tensor(codes[5])

    def sure_of_item_5(tokens):
        logits = torch.zeros(*tokens.shape, 4)
        logits[..., torch.arange(3), favourite] = 5.0
        return logits.log_softmax(-1)

    def next_digit(prefix):  # the AR view of the same network: digit t's log-probs
        return sure_of_item_5(prefix.new_zeros(1, 1, 3))[0, 0, prefix.shape[-1]].expand(*prefix.shape[:2], 4)

    prefix_index = SIDIndex(codes, 4, subsets="prefix")
    for search in (lambda seen: cpd_search(sure_of_item_5, index, 1, beam=8, topk=3, seen=seen),
                   lambda seen: ar_search(next_digit, prefix_index, 1, beam=8, topk=3, seen=seen)):
        assert search(torch.tensor([[20]])).items[0, 0] == 5
        assert 5 not in search(torch.tensor([[5]])).items[0].tolist()


def test_nothing_seen_changes_nothing():
    n, k, batch = 4, 8, 3
    codes = catalogue(n, k, 300, 1)
    index = SIDIndex(codes, k)
    net = RandomNet(index, batch, seed=1, table_size=4096)
    empty = torch.full((batch, 4), -1)
    for kwargs in (dict(beam=16, topk=10), dict(beam=16, topk=5, passes=2), dict(beam=8, topk=8, order="fixed"),
                   dict(beam=16, topk=10, trace=True), dict(beam=16, topk=10, constrain=False)):
        a, b = cpd_search(net, index, batch, **kwargs), cpd_search(net, index, batch, seen=empty, **kwargs)
        assert torch.equal(a.items, b.items) and torch.equal(a.sids, b.sids) and torch.equal(a.scores, b.scores)
    prefix = SIDIndex(_catalogue(40, 2), 4, subsets="prefix")
    a = ar_search(PrefixTable(batch, 3), prefix, batch, beam=6, topk=5, trace=True)
    b = ar_search(PrefixTable(batch, 3), prefix, batch, beam=6, topk=5, trace=True, seen=empty)
    assert torch.equal(a.items, b.items) and torch.equal(a.scores, b.scores)


def test_bad_seen_is_a_clear_error():
    index = SIDIndex(catalogue(3, 4, 20, 0), 4)
    net = RandomNet(index, 2, 0)
    for bad, message in [(torch.zeros(3, 2, dtype=torch.long), "shape"), (torch.zeros(2), "float"),
                         (torch.tensor([[0, 20], [1, -1]]), "outside 0..19"), (torch.tensor([[-2], [0]]), "outside")]:
        with pytest.raises(DiffGRMError, match=message):
            cpd_search(net, index, 2, beam=4, topk=2, seen=bad)


# --- AR -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_ar_with_a_full_beam_returns_the_ranking_without_the_seen_items(seed, table, monkeypatch):
    import diffgrm.ar as ar

    if not table:  # no trie tables: the last digit is still checked, prefixes are not pruned
        monkeypatch.setattr(ar, "TABLE_LIMIT", 0)
    codes = _catalogue(23, seed)
    index = SIDIndex(codes, 4, subsets="prefix")
    users, topk = 3, 8
    model = PrefixTable(users, seed + 10)
    every = [list(np.argsort(-np.array([model.chain_score(u, tuple(c)) for c in codes]), kind="stable"))
             for u in range(users)]
    seen = seen_items(torch.tensor([e[:4] for e in every]), len(codes), 3, seed)
    res = ar_search(model, index, users, beam=64, topk=topk, seen=seen)
    for u in range(users):
        assert res.items[u].tolist() == without(every[u], seen[u], topk)


@pytest.mark.parametrize("table", [True, False])
def test_a_small_ar_beam_refills_and_prunes_seen_prefixes(table, monkeypatch):
    import diffgrm.ar as ar

    if not table:
        monkeypatch.setattr(ar, "TABLE_LIMIT", 0)
    n, k, users, beam = 4, 6, 3, 6
    codes = _catalogue(150, 3, n=n, k=k)
    index = SIDIndex(codes, k, subsets="prefix")
    model = PrefixTable(users, 5, n=n, k=k)
    plain = ar_search(model, index, users, beam=beam, topk=beam)
    seen = seen_items(plain.items[:, :4], len(codes), 10, 1)
    res = ar_search(model, index, users, beam=beam, topk=beam, seen=seen, trace=True)
    # without the trie tables only the last digit is checked: a prefix may lead to seen items only
    assert_unseen(res.items, seen, k=beam if table else None)
    assert all(len(without(row, s, beam)) <= 2 for row, s in zip(plain.items.tolist(), seen))
    if table:  # every kept prefix still leads to an unseen item
        for trace, hist in zip(res.traces, seen.tolist()):
            unseen = codes[np.setdiff1d(np.arange(len(codes)), hist)]
            for t in range(n):
                for toks in trace.tokens[t][trace.alive[t]]:
                    assert (unseen[:, : t + 1] == toks[: t + 1]).all(1).any()


# --- the Recommender and SASRec -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["diffgrm", "ar"])
def test_the_recommender_keeps_histories_out(kind):
    from diffgrm.config import ModelConfig
    from diffgrm.data import Samples
    from diffgrm.decode import Recommender
    from diffgrm.model import build_model

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n, k = 4, 8
    codes = np.unique(rng.integers(0, k, size=(400, n)), axis=0)[:200]
    cfg = ModelConfig(kind=kind, n_digits=n, codebook_size=k, d_model=32, n_heads=4, d_ff=64, dec_layers=2,
                      max_history=6)
    model = build_model(cfg, torch.from_numpy(codes))
    for p in model.parameters():
        torch.nn.init.normal_(p, 0.0, 0.3)
    rec = Recommender(model)
    plain = rec.search([np.array([1, 2])], beam=12, topk=10)
    # histories that hold the items the model likes best (longer than max_history: all are excluded)
    histories = [np.array([3, *plain.items[0, :6].tolist(), 9]), np.array(plain.items[0, 3:5].tolist())]
    res = rec.search(histories, beam=12, topk=10, exclude_seen=True)
    seen = torch.full((2, 8), -1)
    for u, h in enumerate(histories):
        seen[u, : len(h)] = torch.as_tensor(h)
    assert_unseen(res.items, seen, k=10)
    assert torch.equal(rec.search(histories, beam=12, topk=10).items, rec.search(histories, beam=12, topk=10,
                                                                                 exclude_seen=False).items)
    samples = Samples(histories, np.array([int(res.items[0, 0]), int(res.items[1, 9])]))
    metrics = rec.evaluate(samples, beam=12, progress=False, exclude_seen=True)
    assert metrics["exclude_seen"] is True and metrics["item"]["recall@10"] == 1.0
    assert "exclude_seen" not in rec.evaluate(samples, beam=12, progress=False)


def test_sasrec_masks_the_history_before_the_top_k():
    from diffgrm.sasrec import SASRec, SASRecConfig, rank_items

    torch.manual_seed(0)
    model = SASRec(40, SASRecConfig(d_model=16, n_heads=2, n_layers=1, dropout=0.0, max_history=4))
    for p in model.parameters():
        torch.nn.init.normal_(p, 0.0, 0.5)
    probe = [np.array([1, 2, 3]), np.array([7])]
    plain = rank_items(model, probe, k=10)
    histories = [np.array([5, *plain[0, :5], 6]), np.array([plain[1, 0], plain[1, 2]])]
    base = rank_items(model, histories, k=40)  # the full ranking of every item
    got = rank_items(model, histories, k=10, exclude_seen=True)
    for u, h in enumerate(histories):
        assert not set(got[u]) & set(h.tolist())
        assert got[u].tolist() == [i for i in base[u] if i not in set(h.tolist())][:10]
    assert (rank_items(model, histories, k=10, exclude_seen=False) == base[:, :10]).all()
