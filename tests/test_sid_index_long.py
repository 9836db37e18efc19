"""Long SIDs: 8 digits x 256 codes do not fit one packed 64-bit key, and the index stays exact.

Beyond ``(K + 1) ** n < 2 ** 63`` the index ranks the high digits' patterns (``_RankedKeys``):
lookups agree with brute force, both decoders search inside the catalogue, CPD still finds the
best chain over all fill orders, and 4 digits keep the plain packing they always had.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffgrm.ar import ar_search
from diffgrm.cpd import cpd_search
from diffgrm.cpd_validity import _blocked, _matches
from diffgrm.errors import DiffGRMError
from diffgrm.sid_index import ABSENT, MASK, SIDIndex
from tests.test_ar import _random_logprob_fn
from tests.test_cpd import RandomNet


def long_catalogue(n: int, k: int, n_items: int, seed: int, spread: int = 3) -> np.ndarray:
    """Distinct SIDs whose digits take few codes each (so partial SIDs are shared), anywhere in 0..K-1
    (the top code included)."""
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, k - spread, size=n)
    offsets[0] = k - spread  # some digit reaches code K - 1
    codes = np.unique(offsets + rng.integers(0, spread, size=(3 * n_items, n)), axis=0)
    return codes[rng.permutation(len(codes))[:n_items]]


def random_partials(codes: np.ndarray, k: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Partial SIDs: half masked catalogue SIDs, a quarter with one digit changed, a quarter random."""
    n = codes.shape[1]
    src = codes[rng.integers(0, len(codes), count)].copy()
    q = count // 4
    src[q : 2 * q, rng.integers(0, n)] = rng.integers(0, k, q)
    src[3 * q :] = rng.integers(0, k, (count - 3 * q, n))
    return np.where(rng.random((count, n)) < 0.5, MASK, src)


def brute_matches(codes: np.ndarray, partial: np.ndarray) -> np.ndarray:
    return ((codes == partial) | (partial == MASK)).all(1)


@pytest.mark.parametrize("n, k, n_items, packed", [(8, 256, 40, False), (8, 256, 2500, False), (6, 256, 300, True),
                                                  (9, 256, 200, False), (8, 128, 500, True)])
def test_lookups_agree_with_brute_force(n, k, n_items, packed):
    rng = np.random.default_rng(n * 1000 + n_items)
    codes = long_catalogue(n, k, n_items, seed=n_items)
    index = SIDIndex(codes, k)
    assert index.packed == packed
    partial = random_partials(codes, k, 400, rng)
    want = np.array([brute_matches(codes, p).any() for p in partial])
    np.testing.assert_array_equal(index.exists(torch.as_tensor(partial)).numpy(), want)
    allowed = index.allowed(torch.as_tensor(partial[:60])).numpy()
    for row, p in zip(allowed, partial[:60]):
        expect = np.zeros((n, k), dtype=bool)
        hit = brute_matches(codes, p)
        for d in np.flatnonzero(p == MASK):
            expect[d, codes[hit, d]] = True
        np.testing.assert_array_equal(row, expect)
    full = np.concatenate([codes, np.where(partial == MASK, 0, partial)])
    named = index.item_of(torch.as_tensor(full)).numpy()
    lookup = {tuple(c): i for i, c in reversed(list(enumerate(codes)))}
    np.testing.assert_array_equal(named, [lookup.get(tuple(s), -1) for s in full])


def test_keys_are_exact_over_every_subset_pattern():
    """No two different partial SIDs of the catalogue share a key, none is ABSENT, and setting a
    digit with child_keys gives the key of the child."""
    n, k = 8, 256
    codes = long_catalogue(n, k, 300, seed=4)
    index = SIDIndex(codes, k)
    rng = np.random.default_rng(0)
    masks = rng.random((4000, n)) < 0.5
    partial = np.where(masks, MASK, codes[rng.integers(0, len(codes), 4000)])
    keys = index.keys(torch.as_tensor(partial))
    assert (keys != ABSENT).all() and (keys >= 0).all()
    assert len(torch.unique(keys)) == len(np.unique(partial, axis=0))
    digit = torch.as_tensor(rng.integers(0, n, 4000))
    child = torch.as_tensor(partial).clone()
    code = torch.as_tensor(codes[rng.integers(0, len(codes), 4000), digit.numpy()])
    open_ = child[torch.arange(4000), digit] == MASK
    child[torch.arange(4000), digit] = code
    got = index.child_keys(keys, digit, code)
    want = index.keys(child)
    assert torch.equal(got[open_], want[open_])
    assert torch.equal(index.child_keys(torch.full((3,), ABSENT), 0, 1), torch.full((3,), ABSENT))


def test_several_ranked_chunks_for_prefixes_of_sixteen_digits():
    n, k = 16, 256
    codes = long_catalogue(n, k, 400, seed=2, spread=2)
    index = SIDIndex(codes, k, subsets="prefix")
    assert not index.packed and len(index._ranked.levels) >= 2
    rng = np.random.default_rng(1)
    for t in (0, 3, 9, 15):
        src = codes[rng.integers(0, len(codes), 100)].copy()
        src[:50, rng.integers(0, t + 1)] = rng.integers(0, k, 50)
        src[:, t:] = MASK
        keys = index.keys(torch.as_tensor(src))
        want = np.array([(codes[:, :t] == p[:t]).all(1).any() for p in src])
        np.testing.assert_array_equal(index.exists_keys(keys).numpy(), want)
        ok = index.exists_keys(index.child_keys(keys[:, None], t, torch.arange(k))).numpy()
        for row, p in zip(ok[:20], src[:20]):
            expect = np.zeros(k, dtype=bool)
            expect[codes[(codes[:, :t] == p[:t]).all(1), t]] = True
            np.testing.assert_array_equal(row, expect)
    np.testing.assert_array_equal(index.item_of(torch.as_tensor(codes)).numpy(), np.arange(len(codes)))


def test_four_digits_keep_the_plain_packing():
    codes = long_catalogue(4, 256, 500, seed=1)
    index = SIDIndex(codes, 256)
    assert index.packed
    partial = torch.as_tensor(np.where(np.random.default_rng(0).random((50, 4)) < 0.4, MASK, codes[:50]))
    base = 257 ** torch.arange(4)
    assert torch.equal(index.keys(partial), ((partial + 1) * base).sum(-1))
    digits, code = torch.tensor([0, 1, 2, 3]), torch.tensor([5, 0, 255, 7])
    assert torch.equal(index.child_keys(index.keys(partial)[:, None], digits, code),
                       index.keys(partial)[:, None] + (code + 1) * base)


def test_too_many_patterns_is_a_clear_error():
    codes = np.random.default_rng(0).integers(0, 16, size=(5000, 16))
    with pytest.raises(DiffGRMError, match=r"65,536 digit subsets.*use fewer digits per SID.*--model ar"):
        SIDIndex(codes, 16)
    assert SIDIndex(codes, 16, subsets="prefix").n_items == 5000  # prefixes: 17 patterns per item


# --- decoding -----------------------------------------------------------------------------------


def best_chain_scores(net: RandomNet, codes: np.ndarray, user: int) -> np.ndarray:
    """Best chain-rule score of every item over all n! fill orders, by dynamic programming over the
    subsets of filled digits (the order of the last fills does not matter to the first ones)."""
    n_items, n = codes.shape
    best = np.full((1 << n, n_items), -np.inf)
    best[0] = 0.0
    for subset in range(1 << n):  # subsets in increasing order: every subset after its parts
        filled = np.array([(subset >> d) & 1 for d in range(n)], dtype=bool)
        partial = torch.as_tensor(np.where(filled, codes, MASK))
        lp = net.table[user, net.rows(partial)].double().numpy()  # [N, n, K]
        for d in np.flatnonzero(~filled):
            child = subset | (1 << d)
            best[child] = np.maximum(best[child], best[subset] + lp[np.arange(n_items), d, codes[:, d]])
    return best[-1]


@pytest.mark.parametrize("seed", [0, 1])
def test_cpd_matches_brute_force_over_all_orders_at_eight_digits(seed):
    n, k, batch, topk = 8, 256, 2, 5
    codes = long_catalogue(n, k, 6, seed=seed + 30)
    index = SIDIndex(codes, k)
    assert not index.packed and _matches(index, torch.device("cpu")) is not None
    net = RandomNet(index, batch, seed=seed, table_size=1009)
    res = cpd_search(net, index, batch, beam=512, topk=topk)  # more beams than distinct partial SIDs
    for u in range(batch):
        scores = best_chain_scores(net, codes, u)
        order = np.argsort(-scores, kind="stable")[:topk]
        assert res.items[u].tolist() == order.tolist()
        np.testing.assert_allclose(res.scores[u].numpy(), scores[order], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("order, steps", [("confidence", None), ("confidence", 3), ("fixed", None), ("random", 1)])
def test_cpd_returns_distinct_catalogue_items_at_eight_digits(order, steps):
    n, k, batch = 8, 256, 3
    codes = long_catalogue(n, k, 400, seed=5)
    index = SIDIndex(codes, k)
    net = RandomNet(index, batch, seed=2, table_size=2053)
    res = cpd_search(net, index, batch, beam=16, topk=10, order=order, passes=steps, trace=True)
    assert (res.items >= 0).all()
    assert torch.equal(index.item_of(res.sids), res.items)
    assert torch.equal(torch.as_tensor(codes)[res.items], res.sids)
    for u, trace in enumerate(res.traces):
        assert len(set(res.items[u].tolist())) == 10
        for s in range(n):
            alive = trace.tokens[s][trace.alive[s]]
            assert index.exists(torch.as_tensor(alive)).all()
    fast = cpd_search(net, index, batch, beam=16, topk=10, order=order, passes=steps)  # listing, last-digit Top-K
    assert torch.equal(fast.items, res.items)
    torch.testing.assert_close(fast.scores, res.scores)


def test_cpd_unconstrained_at_eight_digits_tells_partial_sids_outside_the_catalogue_apart():
    n, k, batch = 8, 256, 2
    codes = long_catalogue(n, k, 50, seed=6, spread=2)
    index = SIDIndex(codes, k)
    noise = torch.randn(n, k, generator=torch.Generator().manual_seed(0))
    noise[torch.arange(n), torch.as_tensor(codes[0])] += 4.0  # likes item 0's codes and their neighbours
    noise[torch.arange(n), torch.as_tensor((codes[0] + 1) % k)] += 3.5

    def near_catalogue(tokens):
        return noise.log_softmax(-1).expand(*tokens.shape, k)

    res = cpd_search(near_catalogue, index, batch, beam=32, topk=8, constrain=False, trace=True)
    real = res.items >= 0
    assert real.any() and (res.items[:, 0] == 0).all()
    assert torch.equal(index.item_of(res.sids)[real], res.items[real])
    for trace in res.traces:  # distinct partial SIDs at every step, inside the catalogue or not
        for s in range(n):
            alive = trace.tokens[s][trace.alive[s]]
            assert len(alive) == 32 and len({tuple(t) for t in alive}) == 32
            assert not index.exists(torch.as_tensor(alive)).all()  # beams left the catalogue


def test_validity_mask_at_eight_digits_matches_the_index():
    n, k = 8, 256
    codes = long_catalogue(n, k, 300, seed=8)
    index = SIDIndex(codes, k)
    rng = np.random.default_rng(2)
    for filled in (1, 4, 7):
        src = codes[rng.integers(0, len(codes), 16)]
        perms = np.stack([rng.permutation(n) for _ in range(16)])
        tokens = src.copy()
        for row, perm in enumerate(perms):
            tokens[row, perm[filled:]] = MASK
        tokens = torch.as_tensor(tokens).reshape(2, 8, n)
        masked = torch.as_tensor(np.sort(perms[:, filled:], axis=1)).reshape(2, 8, n - filled)
        want = ~index.allowed(tokens).gather(2, masked[..., None].expand(2, 8, n - filled, k))
        assert torch.equal(_blocked(index, tokens, index.keys(tokens), masked), want)


class HashedPrefixModel:
    """AR log-probs as a fixed random function of (user, prefix), through a hashed table."""

    def __init__(self, users: int, n: int, k: int, seed: int, size: int = 997):
        g = torch.Generator().manual_seed(seed)
        self.table = (2.0 * torch.randn(users, n, size, k, generator=g, dtype=torch.float64)).log_softmax(-1)
        self.size = size

    def row(self, prefix: torch.Tensor) -> torch.Tensor:
        weights = torch.tensor([(1_000_003 ** j) % 2**31 for j in range(prefix.shape[-1])], dtype=torch.long)
        return ((prefix + 1) * weights).sum(-1) % self.size

    def __call__(self, prefix: torch.Tensor) -> torch.Tensor:
        b, r, t = prefix.shape
        return self.table[torch.arange(b)[:, None], t, self.row(prefix)]

    def chain_score(self, user: int, sid: np.ndarray) -> float:
        return sum(float(self.table[user, t, self.row(torch.as_tensor(sid[:t])), sid[t]]) for t in range(len(sid)))


@pytest.mark.parametrize("subsets", ["prefix", "all"])
@pytest.mark.parametrize("table", [True, False])
def test_ar_at_eight_digits_matches_brute_force(subsets, table, monkeypatch):
    import diffgrm.ar as ar

    if not table:
        monkeypatch.setattr(ar, "TABLE_LIMIT", 0)
    n, k, users = 8, 256, 2
    codes = long_catalogue(n, k, 60, seed=9)
    index = SIDIndex(codes, k, subsets=subsets)
    model = HashedPrefixModel(users, n, k, seed=3)
    res = ar_search(model, index, users, beam=len(codes), topk=10)  # a beam as wide as the catalogue
    for u in range(users):
        scores = np.array([model.chain_score(u, c) for c in codes])
        order = np.argsort(-scores, kind="stable")[:10]
        np.testing.assert_array_equal(res.items[u].numpy(), order)
        np.testing.assert_allclose(res.scores[u].numpy(), scores[order], atol=1e-9)
    small = ar_search(_random_logprob_fn(k, 1), index, 3, beam=6, topk=5)
    assert (small.items >= 0).all() and torch.equal(index.item_of(small.sids), small.items)


@pytest.mark.parametrize("kind", ["diffgrm", "ar"])
def test_a_network_with_eight_digits_of_256_codes_recommends_catalogue_items(kind):
    from diffgrm.config import ModelConfig
    from diffgrm.decode import Recommender
    from diffgrm.model import build_model

    torch.manual_seed(0)
    n, k = 8, 256
    codes = long_catalogue(n, k, 300, seed=12)
    cfg = ModelConfig(kind=kind, n_digits=n, codebook_size=k, d_model=32, n_heads=4, d_ff=64, dec_layers=2,
                      max_history=6)
    rec = Recommender(build_model(cfg, torch.from_numpy(codes)))
    histories = [np.array([1, 2, 3]), np.array([7]), np.array([5, 9])]
    res = rec.search(histories, beam=12, topk=10, passes=4 if kind == "diffgrm" else None, exclude_seen=True)
    assert (res.items >= 0).all() and torch.equal(torch.as_tensor(codes)[res.items], res.sids)
    for row, h in zip(res.items.tolist(), histories):
        assert len(set(row)) == 10 and not set(row) & set(h.tolist())
