"""The autoregressive baseline decoder against brute-force enumeration, plus invariants."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from diffgrm.ar import ar_search
from diffgrm.errors import DiffGRMError
from diffgrm.sid_index import SIDIndex

N_DIGITS, K = 3, 4


def _catalogue(n_items: int, seed: int, n: int = N_DIGITS, k: int = K) -> np.ndarray:
    rng = np.random.default_rng(seed)
    all_sids = np.array(list(itertools.product(range(k), repeat=n)))
    return all_sids[np.sort(rng.choice(len(all_sids), size=n_items, replace=False))]


class PrefixTable:
    """A model whose log-probs are a fixed random function of (user, prefix): a seeded table keyed
    by the prefix's value in base K (its "hash"), one table row per prefix length."""

    def __init__(self, users: int, seed: int, n: int = N_DIGITS, k: int = K, temperature: float = 1.5):
        g = torch.Generator().manual_seed(seed)
        logits = torch.randn(users, n, k ** (n - 1), k, generator=g, dtype=torch.float64) * temperature
        self.table = torch.log_softmax(logits, -1)
        self.k = k
        self.calls: list[tuple[int, ...]] = []

    def key(self, prefix: torch.Tensor) -> torch.Tensor:
        t = prefix.shape[-1]
        weights = self.k ** torch.arange(t - 1, -1, -1)
        return (prefix * weights).sum(-1)

    def __call__(self, prefix: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(prefix.shape))
        b, r, t = prefix.shape
        assert (prefix >= 0).all(), "a prefix handed to the model holds an unfilled digit"
        users = torch.arange(b)[:, None].expand(b, r)
        return self.table[users, t, self.key(prefix)]

    def chain_score(self, user: int, sid) -> float:
        """Left-to-right chain rule: sum over t of log p(digit t | digits < t)."""
        total = 0.0
        for t in range(len(sid)):
            prefix = torch.tensor(sid[:t], dtype=torch.long)
            total += float(self.table[user, t, self.key(prefix), sid[t]])
        return total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_beam_equals_brute_force(seed):
    codes = _catalogue(23, seed)
    index = SIDIndex(codes, K, subsets="prefix")
    users, topk = 3, 10
    model = PrefixTable(users, seed + 10)
    res = ar_search(model, index, users, beam=K**N_DIGITS, topk=topk)
    assert model.calls == [(users, 1, 0), (users, K, 1), (users, K * K, 2)]
    for u in range(users):
        scores = np.array([model.chain_score(u, tuple(c)) for c in codes])
        order = np.argsort(-scores, kind="stable")[:topk]
        np.testing.assert_array_equal(res.items[u].numpy(), order)
        np.testing.assert_allclose(res.scores[u].numpy(), scores[order], rtol=0, atol=1e-9)
        np.testing.assert_array_equal(res.sids[u].numpy(), codes[order])


def test_unconstrained_full_beam_filters_to_the_catalogue():
    codes = _catalogue(9, 5)
    index = SIDIndex(codes, K, subsets="prefix")
    model = PrefixTable(2, 7)
    free = ar_search(model, index, 2, beam=K**N_DIGITS, topk=5, constrain=False)
    tied = ar_search(model, index, 2, beam=K**N_DIGITS, topk=5, constrain=True)
    # the whole tree is enumerated either way, so dropping non-items at the end gives the same answer
    torch.testing.assert_close(free.items, tied.items)
    torch.testing.assert_close(free.scores, tied.scores)


def test_unconstrained_small_beam_never_returns_invalid_items():
    codes = _catalogue(6, 3)
    index = SIDIndex(codes, K, subsets="prefix")
    for seed in range(5):
        res = ar_search(PrefixTable(4, seed), index, 4, beam=4, topk=3, constrain=False)
        items, scores, sids = res.items.numpy(), res.scores.numpy(), res.sids.numpy()
        real = items >= 0
        assert np.isfinite(scores[real]).all() and np.isneginf(scores[~real]).all()
        np.testing.assert_array_equal(sids[real], codes[items[real]])
        assert (sids[~real] == -1).all()


def _random_logprob_fn(k: int, seed: int):
    g = torch.Generator().manual_seed(seed)

    def fn(prefix: torch.Tensor) -> torch.Tensor:
        b, r, _ = prefix.shape
        return torch.log_softmax(torch.randn(b, r, k, generator=g) * 3, -1)

    return fn


@pytest.mark.parametrize("seed", [0, 1])
def test_invariants_and_trace_consistency(seed):
    n, k, users, beam, topk = 4, 6, 3, 7, 5
    codes = _catalogue(150, seed, n=n, k=k)
    index = SIDIndex(codes, k, subsets="all")
    res = ar_search(_random_logprob_fn(k, seed), index, users, beam=beam, topk=topk, trace=True, runners_up=2)
    items, scores, sids = res.items.numpy(), res.scores.numpy(), res.sids.numpy()
    assert items.shape == (users, topk) and sids.shape == (users, topk, n)
    assert (items >= 0).all()  # 150 items: always at least topk reachable
    assert (sids >= 0).all()
    np.testing.assert_array_equal(sids, codes[items])
    assert all(len(set(row)) == topk for row in items.tolist())
    assert (np.diff(scores, axis=1) <= 0).all() and np.isfinite(scores).all()

    assert len(res.traces) == users
    for u, tr in enumerate(res.traces):
        assert tr.decoder == "ar" and tr.order == "left-to-right"
        assert tr.n_steps == n and tr.beam == beam
        assert tr.distributions.shape == (n, beam, n, k) and tr.runner_up_codes.shape == (n, beam, 2)
        np.testing.assert_array_equal(tr.items, items[u])
        for s in range(n):
            live = np.nonzero(tr.alive[s])[0]
            assert (tr.digit[s, live] == s).all() and (tr.digit[s, ~tr.alive[s]] == -1).all()
            assert (np.diff(tr.score[s, live]) <= 1e-6).all()
            assert (tr.tokens[s, ~tr.alive[s]] == -1).all()
            for r in live:
                tok = tr.tokens[s, r]
                assert (tok[: s + 1] >= 0).all() and (tok[s + 1 :] == -1).all()
                assert tok[s] == tr.code[s, r]
                p = tr.parent[s, r]
                prev_score = 0.0 if s == 0 else tr.score[s - 1, p]
                if s == 0:
                    assert p == 0
                else:
                    assert tr.alive[s - 1, p]
                    np.testing.assert_array_equal(tok[:s], tr.tokens[s - 1, p, :s])
                assert tr.score[s, r] == pytest.approx(prev_score + np.log(tr.prob[s, r]), abs=1e-5)
                # partial SID is inside the catalogue
                assert (codes[:, : s + 1] == tok[: s + 1]).all(1).any()
                dist = tr.distributions[s, r]
                assert dist[s].sum() == pytest.approx(1.0, abs=1e-5)
                assert dist[s, tr.code[s, r]] == pytest.approx(tr.prob[s, r], rel=1e-5)
                assert (np.delete(dist, s, axis=0) == 0).all()
                ru = tr.runner_up_codes[s, r]
                assert tr.code[s, r] not in ru[ru >= 0]
                for c, q in zip(ru, tr.runner_up_probs[s, r]):
                    if c >= 0:
                        assert q == pytest.approx(dist[s, c], rel=1e-5)
                        assert (codes[:, :s] == tok[:s]).all(1)[codes[:, s] == c].any()
        # the final Top-K are final beams of the trace, reachable through their lineage
        final = {tuple(t): sc for t, sc, a in zip(tr.tokens[-1], tr.score[-1], tr.alive[-1]) if a}
        for j in range(topk):
            assert final[tuple(sids[u, j])] == pytest.approx(scores[u, j], abs=1e-5)
        lineage = tr.lineage(0)
        assert len(lineage) == n
        frame = tr.to_frame()
        assert len(frame) == int(tr.alive.sum())
        assert {"step", "beam", "parent", "digit", "code", "prob", "score", "sid"} <= set(frame.columns)
        conf = tr.confidence(0)
        assert len(conf) == n * n


def test_dead_beams_when_catalogue_is_small():
    codes = np.array([[0, 1, 2], [0, 1, 3], [3, 3, 3]])
    index = SIDIndex(codes, K, subsets="prefix")
    res = ar_search(PrefixTable(2, 0), index, 2, beam=8, topk=5, trace=True)
    items = res.items.numpy()
    assert sorted(items[0, :3].tolist()) == [0, 1, 2] and (items[:, 3:] == -1).all()
    assert torch.isneginf(res.scores[:, 3:]).all() and (res.sids[:, 3:] == -1).all()
    tr = res.traces[0]
    assert tr.alive[0].sum() == 2 and tr.alive[1].sum() == 2 and tr.alive[2].sum() == 3
    assert (tr.parent[~tr.alive] == -1).all() and np.isneginf(tr.score[~tr.alive]).all()


def test_errors():
    index = SIDIndex(_catalogue(10, 0), K, subsets="prefix")
    fn = PrefixTable(2, 0)
    with pytest.raises(DiffGRMError, match=r"the beam \(3\) must be at least K \(5\)"):
        ar_search(fn, index, 2, beam=3, topk=5)
    with pytest.raises(DiffGRMError, match="K must be at least 1"):
        ar_search(fn, index, 2, beam=3, topk=0)
    with pytest.raises(DiffGRMError, match="shape"):
        ar_search(lambda p: torch.zeros(p.shape[0], p.shape[1], K + 1), index, 2, beam=5, topk=2)
    with pytest.raises(DiffGRMError, match="shape"):
        ar_search(lambda p: torch.zeros(p.shape[1], K), index, 2, beam=5, topk=2)


def test_children_table_and_key_lookup_agree(monkeypatch):
    import diffgrm.ar as ar

    n, k = 4, 6
    codes = _catalogue(90, 4, n=n, k=k)
    fast = ar_search(_random_logprob_fn(k, 3), SIDIndex(codes, k, subsets="prefix"), 3, beam=9, topk=6)
    monkeypatch.setattr(ar, "TABLE_LIMIT", 0)
    slow = ar_search(_random_logprob_fn(k, 3), SIDIndex(codes, k, subsets="prefix"), 3, beam=9, topk=6)
    torch.testing.assert_close(fast.items, slow.items)
    torch.testing.assert_close(fast.scores, slow.scores)


def test_nan_logprobs_are_never_chosen():
    codes = _catalogue(20, 1)
    index = SIDIndex(codes, K, subsets="prefix")

    def fn(prefix):
        out = torch.log_softmax(torch.zeros(prefix.shape[0], prefix.shape[1], K), -1)
        out[..., 0] = float("nan")
        return out

    res = ar_search(fn, index, 2, beam=64, topk=5)
    real = res.items >= 0
    assert (res.sids[real] != 0).all() and torch.isfinite(res.scores[real]).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_key_value_cache_gives_the_uncached_beams(seed):
    """A fair AR: one new slot per step from cached keys/values, the same search as recomputing the prefix."""
    from diffgrm.config import ModelConfig
    from diffgrm.decode import Recommender
    from diffgrm.model import build_model

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n, k, n_items = 4, 8, 300
    codes = np.unique(rng.integers(0, k, size=(n_items * 2, n)), axis=0)[:n_items]
    cfg = ModelConfig(kind="ar", n_digits=n, codebook_size=k, d_model=32, n_heads=4, d_ff=64, dec_layers=3,
                      max_history=12)
    model = build_model(cfg, torch.from_numpy(codes))
    for p in model.parameters():  # random weights far from the tiny init, so beams differ sharply
        torch.nn.init.normal_(p, 0.0, 0.3)
    rec = Recommender(model)
    histories = [rng.integers(0, len(codes), size=int(rng.integers(1, 12))) for _ in range(7)]
    cached = rec.search(histories, beam=16, topk=10, trace=True)
    plain = rec.search(histories, beam=16, topk=10, trace=True, kv_cache=False)
    assert torch.equal(cached.items, plain.items) and torch.equal(cached.sids, plain.sids)
    torch.testing.assert_close(cached.scores, plain.scores, rtol=1e-5, atol=1e-5)
    for a, b in zip(cached.traces, plain.traces):
        np.testing.assert_array_equal(a.parent, b.parent)
        np.testing.assert_allclose(a.distributions, b.distributions, atol=1e-5)
