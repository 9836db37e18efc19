"""CPD search: invariants on random logits, parity with brute force, errors, confidence order, traces."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from diffgrm.cpd import cpd_search
from diffgrm.cpd_validity import _blocked
from diffgrm.errors import DiffGRMError
from diffgrm.sid_index import MASK, SIDIndex


class RandomNet:
    """A stand-in network: log-probs are a fixed random function of (user, partial SID).

    The partial SID's key picks a row of a seeded random table, so the same partial SID always gets
    the same prediction, however the search reached it (the property brute force relies on).
    """

    def __init__(self, index: SIDIndex, batch: int, seed: int, table_size: int | None = None, scale: float = 2.0):
        n, k = index.n_digits, index.codebook_size
        self.index, self.exact = index, table_size is None
        self.size = (k + 1) ** n if table_size is None else table_size
        gen = torch.Generator().manual_seed(seed)
        self.table = (scale * torch.randn(batch, self.size, n, k, generator=gen)).log_softmax(-1)
        self.calls = 0

    def rows(self, tokens: torch.Tensor) -> torch.Tensor:
        keys = self.index.keys(tokens)
        return keys if self.exact else (keys * 2654435761) % self.size

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        users = torch.arange(tokens.shape[0])[:, None]
        return self.table[users, self.rows(tokens)]

    def chain_score(self, user: int, sid: tuple[int, ...], order: tuple[int, ...]) -> float:
        """Chain-rule log-probability of filling ``sid`` in digit order ``order``."""
        partial = torch.full((len(sid),), MASK, dtype=torch.long)
        total = 0.0
        for d in order:
            total += float(self.table[user, self.rows(partial), d, sid[d]])
            partial[d] = sid[d]
        return total


def catalogue(n: int, k: int, n_items: int, seed: int) -> np.ndarray:
    """``n_items`` distinct random SIDs."""
    rng = np.random.default_rng(seed)
    every = np.array(list(itertools.product(range(k), repeat=n)))
    return every[rng.choice(len(every), size=n_items, replace=False)]


def brute_force(net: RandomNet, codes: np.ndarray, user: int, orders, topk: int) -> tuple[list[int], list[float]]:
    """Top-K items by the best chain-rule score over the given fill orders."""
    scored = [(max(net.chain_score(user, tuple(map(int, sid)), o) for o in orders), i) for i, sid in enumerate(codes)]
    scored.sort(key=lambda t: -t[0])
    return [i for _, i in scored[:topk]], [s for s, _ in scored[:topk]]


# --- invariants ---------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["confidence", "fixed", "random"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_invariants_on_random_logits(order, seed):
    n, k, batch = 4, 8, 3
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, k, size=(300, n))  # collisions allowed: a shared SID names its lowest item
    index = SIDIndex(codes, k)
    net = RandomNet(index, batch, seed, table_size=2048)
    res = cpd_search(net, index, batch, beam=16, topk=10, order=order, seed=seed, trace=True)

    assert net.calls == n  # one network call per step, all users and beams together
    assert res.items.shape == (batch, 10) and res.scores.shape == (batch, 10) and res.sids.shape == (batch, 10, n)
    valid = res.items >= 0
    assert valid.all()  # constrained search over a 300-item catalogue fills the top 10
    assert (res.sids[valid] != MASK).all()
    assert torch.equal(index.item_of(res.sids), res.items)
    assert (res.scores[:, :-1] >= res.scores[:, 1:]).all()
    for u in range(batch):
        assert len(set(res.items[u].tolist())) == 10

    for u, tr in enumerate(res.traces):
        assert tr.n_steps == n and tr.beam == 16 and tr.decoder == "cpd" and tr.order == order
        np.testing.assert_array_equal(tr.items, res.items[u].numpy())
        for s in range(n):
            alive = tr.alive[s]
            toks = tr.tokens[s][alive]
            assert ((toks != MASK).sum(-1) == s + 1).all()
            assert len({tuple(t) for t in toks}) == len(toks)  # deduplicated partial SIDs
            r = np.nonzero(alive)[0]
            assert (toks[np.arange(len(r)), tr.digit[s, r]] == tr.code[s, r]).all()
            # prob is the parent's predicted probability of the filled (digit, code)
            np.testing.assert_allclose(tr.prob[s, r], tr.distributions[s, r, tr.digit[s, r], tr.code[s, r]], rtol=1e-4)
            prev_score = tr.score[s - 1, tr.parent[s, r]] if s else 0.0
            np.testing.assert_allclose(tr.score[s, r], prev_score + np.log(tr.prob[s, r]), rtol=1e-4, atol=1e-4)
            if s:
                parent_toks = tr.tokens[s - 1, tr.parent[s, r]]
                assert tr.alive[s - 1, tr.parent[s, r]].all()
                assert (parent_toks[np.arange(len(r)), tr.digit[s, r]] == MASK).all()
                changed = parent_toks != toks
                assert (changed.sum(-1) == 1).all()  # committed digits never change
            if order != "confidence":
                assert len(set(tr.digit[s, r].tolist())) == 1  # one scheduled digit per step and user
            # runners-up: other codes of the same digit and parent, best first, read off the parent's prediction
            ru, ru_p = tr.runner_up_codes[s, r], tr.runner_up_probs[s, r]
            assert (ru != tr.code[s, r][:, None]).all() and (ru_p[:, :-1] >= ru_p[:, 1:]).all()
            dist = tr.distributions[s, r[:, None], tr.digit[s, r][:, None], np.maximum(ru, 0)]
            np.testing.assert_allclose(np.where(ru >= 0, dist, 0.0), ru_p, rtol=1e-4)
            parents = tr.tokens[s - 1, tr.parent[s, r]] if s else np.full((len(r), n), MASK)
            allowed = index.allowed(torch.as_tensor(parents)).numpy()
            ok = allowed[np.arange(len(r))[:, None], tr.digit[s, r][:, None], np.maximum(ru, 0)]
            assert ok[ru >= 0].all()  # runners-up stay inside the catalogue
        # lineage of every final beam: each step adds one digit, keeps the others
        for final in np.nonzero(tr.alive[-1])[0]:
            lin = tr.lineage(int(final))
            for s in range(1, n):
                before, after = tr.tokens[s - 1, lin[s - 1]], tr.tokens[s, lin[s]]
                kept = before != MASK
                assert (after[kept] == before[kept]).all()
        if order != "confidence":
            assert sorted(tr.digit[:, 0].tolist()) == list(range(n))
        if order == "fixed":
            assert tr.digit[:, 0].tolist() == list(range(n))


def test_random_order_is_seeded_per_user():
    n, k, batch = 4, 8, 6
    index = SIDIndex(np.random.default_rng(0).integers(0, k, size=(200, n)), k)
    net = RandomNet(index, batch, 0, table_size=512)
    a = cpd_search(net, index, batch, beam=8, topk=4, order="random", seed=5, trace=True)
    b = cpd_search(net, index, batch, beam=8, topk=4, order="random", seed=5, trace=True)
    orders = [tuple(t.digit[:, 0].tolist()) for t in a.traces]
    assert orders == [tuple(t.digit[:, 0].tolist()) for t in b.traces]
    assert torch.equal(a.items, b.items)
    assert len(set(orders)) > 1  # users get their own order


# --- parity with brute force --------------------------------------------------------------------


@pytest.mark.parametrize("constrain", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confidence_matches_brute_force_over_all_orders(seed, constrain):
    n, k, batch, topk = 3, 4, 2, 10
    codes = catalogue(n, k, 40, seed)
    index = SIDIndex(codes, k)
    net = RandomNet(index, batch, seed + 10)
    res = cpd_search(net, index, batch, beam=64, topk=topk, constrain=constrain)  # 64 = every SID
    for u in range(batch):
        items, scores = brute_force(net, codes, u, list(itertools.permutations(range(n))), topk)
        assert res.items[u].tolist() == items
        np.testing.assert_allclose(res.scores[u].numpy(), scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fixed", [(0, 1, 2), (2, 0, 1)])
def test_fixed_order_matches_brute_force_of_that_order(fixed):
    n, k, batch, topk = 3, 4, 2, 10
    codes = catalogue(n, k, 40, 7)
    index = SIDIndex(codes, k)
    net = RandomNet(index, batch, 3)
    res = cpd_search(net, index, batch, beam=64, topk=topk, order="fixed", fixed_order=fixed)
    for u in range(batch):
        items, scores = brute_force(net, codes, u, [fixed], topk)
        assert res.items[u].tolist() == items
        np.testing.assert_allclose(res.scores[u].numpy(), scores, rtol=1e-5, atol=1e-5)


def test_few_items_pad_with_minus_one():
    codes = catalogue(3, 4, 5, 0)
    index = SIDIndex(codes, 4)
    net = RandomNet(index, 2, 0)
    res = cpd_search(net, index, 2, beam=8, topk=8, trace=True)
    assert ((res.items >= 0).sum(1) == 5).all()
    assert torch.isinf(res.scores[:, 5:]).all() and (res.items[:, 5:] == -1).all()
    assert (res.sids[:, 5:] == MASK).all()
    assert not res.traces[0].alive[-1].all()  # dead beams: fewer valid candidates than the beam
    assert len(res.traces[0].to_frame()) == res.traces[0].alive.sum()


@pytest.mark.parametrize("n_items", [10, 12, 60, 300])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_beam_of_k_returns_k_distinct_items(seed, n_items):
    """Partial SIDs with different filled digits can all lead to one item ({d0, d1} and {d2, d3}
    of the same SID); beams that can only reach items other beams already reach must not crowd
    out the rest, or a beam of K returns fewer than K items (it used to: 6 of 10 on MovieLens)."""
    n, k, batch, topk = 4, 8, 4, 10
    codes = catalogue(n, k, n_items, seed)
    index = SIDIndex(codes, k)
    net = RandomNet(index, batch, seed, table_size=4096)
    res = cpd_search(net, index, batch, beam=topk, topk=topk, trace=True)
    assert (res.items >= 0).all()
    for u in range(batch):
        assert len(set(res.items[u].tolist())) == topk
    assert torch.equal(index.item_of(res.sids), res.items)
    for tr in res.traces:  # every step keeps a full beam of distinct partial SIDs
        assert tr.alive.all()
        for s in range(n):
            assert len({tuple(t) for t in tr.tokens[s]}) == topk


def test_duplicate_routes_to_one_item_do_not_fill_the_beam():
    """A network sure of one item: every fill order reaches it, but it takes one final beam only."""
    n, k = 4, 8
    codes = catalogue(n, k, 40, 5)
    index = SIDIndex(codes, k)
    favourite = torch.as_tensor(codes[7])

    def sure_of_item_7(tokens):
        logits = torch.zeros(*tokens.shape, k)
        logits[..., torch.arange(n), favourite] = 6.0
        return logits.log_softmax(-1)

    res = cpd_search(sure_of_item_7, index, 2, beam=5, topk=5)
    assert (res.items[:, 0] == 7).all()
    assert (res.items >= 0).all() and all(len(set(row.tolist())) == 5 for row in res.items)


# --- unconstrained search -----------------------------------------------------------------------


def test_unconstrained_search_returns_only_catalogue_items():
    n, k, batch = 3, 4, 2
    codes = np.array(list(itertools.product(range(2), repeat=n)))  # catalogue uses codes 0 and 1 only
    index = SIDIndex(codes, k)

    def likes_code_3(tokens):  # the network prefers codes outside the catalogue
        logits = torch.tensor([0.0, 0.5, 1.0, 4.0]).expand(*tokens.shape, k)
        return logits.log_softmax(-1)

    free = cpd_search(likes_code_3, index, batch, beam=4, topk=4, constrain=False)
    held = cpd_search(likes_code_3, index, batch, beam=4, topk=4, constrain=True)
    assert ((free.items >= 0).sum() < (held.items >= 0).sum())
    assert (held.items >= 0).all()
    got = free.items >= 0
    assert torch.equal(index.item_of(free.sids)[got], free.items[got])
    assert torch.isinf(free.scores[~got]).all()


# --- errors -------------------------------------------------------------------------------------


@pytest.fixture
def tiny():
    index = SIDIndex(catalogue(3, 4, 20, 0), 4)
    return index, RandomNet(index, 2, 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(beam=4, topk=5), "beam"),
        (dict(beam=4, topk=0), "K must be at least 1"),
        (dict(beam=4, topk=2, order="sideways"), "order"),
        (dict(beam=4, topk=2, order="fixed", fixed_order=[0, 0, 1]), "fixed_order"),
        (dict(beam=4, topk=2, order="fixed", fixed_order=[0, 1]), "fixed_order"),
    ],
)
def test_bad_settings_raise(tiny, kwargs, message):
    index, net = tiny
    with pytest.raises(DiffGRMError, match=message):
        cpd_search(net, index, 2, **kwargs)


@pytest.mark.parametrize(
    "bad", [lambda lp: lp[..., :-1], lambda lp: lp[:, :, 0], lambda lp: lp.sum(1, keepdim=True).expand(2, 3, 3, 4)]
)
def test_wrong_logprob_shape_raises(tiny, bad):
    index, net = tiny
    with pytest.raises(DiffGRMError, match="shape"):
        cpd_search(lambda t: bad(net(t)), index, 2, beam=4, topk=2)


def masked_digits_only(net):
    """``net`` as a masked-only network: the rows of the masked digits, ascending, ``[B, R, m, K]``."""

    def fn(tokens: torch.Tensor) -> torch.Tensor:
        lp = net(tokens)
        m = int((tokens[0, 0] == MASK).sum())
        return lp[tokens == MASK].reshape(*tokens.shape[:2], m, lp.shape[-1])

    return fn


@pytest.mark.parametrize("steps", [None, 3, 2, 1])
@pytest.mark.parametrize("order", ["confidence", "fixed", "random"])
def test_masked_only_log_probs_give_the_same_search(order, steps):
    """Also when a pass fills several digits from the masked digits' rows of its one prediction."""
    n, k, batch = 4, 8, 3
    codes = np.random.default_rng(3).integers(0, k, size=(300, n))
    index = SIDIndex(codes, k)
    net = RandomNet(index, batch, 3, table_size=2048)
    kwargs = dict(beam=12, topk=10, order=order, fixed_order=[2, 0, 3, 1] if order == "fixed" else None, seed=4,
                  passes=steps)
    full = cpd_search(net, index, batch, **kwargs)
    fast = cpd_search(masked_digits_only(net), index, batch, masked_only=True, **kwargs)
    assert torch.equal(full.items, fast.items) and torch.equal(full.sids, fast.sids)
    torch.testing.assert_close(full.scores, fast.scores)
    if steps != 1:  # a later pass gets all n digits where the n - s masked ones were promised
        with pytest.raises(DiffGRMError, match="masked digits only"):
            cpd_search(net, index, batch, masked_only=True, **kwargs)
    with pytest.raises(DiffGRMError, match="trace"):
        cpd_search(masked_digits_only(net), index, batch, masked_only=True, trace=True, **kwargs)


# --- confidence order and traces ----------------------------------------------------------------


def test_confidence_fills_the_certain_digit_first():
    n, k, batch = 4, 8, 2
    codes = np.random.default_rng(0).integers(0, k, size=(400, n))
    codes[:50, 2] = 5
    index = SIDIndex(codes, k)

    def sure_of_digit_2(tokens):
        logits = torch.zeros(*tokens.shape, k)
        logits[..., 2, 5] = 12.0  # digit 2 is near-certainly code 5, the rest is flat
        return logits.log_softmax(-1)

    res = cpd_search(sure_of_digit_2, index, batch, beam=8, topk=4, trace=True)
    for u, tr in enumerate(res.traces):
        lin = tr.lineage(0)
        assert tr.digit[0, lin[0]] == 2 and tr.code[0, lin[0]] == 5
        assert (res.sids[u, :, 2] == 5).all()
        assert tr.prob[0, lin[0]] > 0.99
    fixed = cpd_search(sure_of_digit_2, index, batch, beam=8, topk=4, order="fixed", trace=True)
    assert fixed.traces[0].digit[0, fixed.traces[0].lineage(0)[0]] == 0


def test_trace_frame_lineage_and_confidence():
    n, k, batch, beam = 4, 8, 2, 6
    index = SIDIndex(np.random.default_rng(3).integers(0, k, size=(300, n)), k)
    net = RandomNet(index, batch, 4, table_size=1024)
    res = cpd_search(net, index, batch, beam=beam, topk=3, trace=True, runners_up=2)
    tr = res.traces[1]
    assert tr.runner_up_codes.shape == (n, beam, 2) and tr.distributions.shape == (n, beam, n, k)
    np.testing.assert_allclose(tr.distributions.sum(-1), 1.0, rtol=1e-5)
    # step 0 has one all-masked parent: its prediction is broadcast to every beam
    assert (tr.parent[0] == 0).all() and np.allclose(tr.distributions[0], tr.distributions[0, :1])
    frame = tr.to_frame()
    assert len(frame) == tr.alive.sum()
    assert {"step", "beam", "parent", "digit", "code", "prob", "score", "sid", "runner_up_codes"} <= set(frame.columns)
    lin = tr.lineage(0)
    assert len(lin) == n
    assert tuple(tr.tokens[-1, lin[-1]]) == tuple(res.sids[1, 0].tolist())  # final beam 0 is the top item
    conf = tr.confidence(0)
    assert len(conf) == n * n
    assert conf.groupby("step")["filled_now"].sum().tolist() == [1] * n
    assert (conf["max_prob"] <= 1).all() and (conf["entropy_bits"] >= 0).all()
    assert math.isclose(float(res.scores[1, 0]), float(tr.score[-1, lin[-1]]), rel_tol=1e-6)
    np.testing.assert_allclose(tr.item_scores, res.scores[1].numpy())


@pytest.mark.parametrize("n_items", [3, 40, 300])
def test_validity_mask_matches_sid_index(n_items):
    """Both ways of building the mask (listing matches, asking the index per code) agree with allowed()."""
    n, k = 4, 6
    rng = np.random.default_rng(n_items)
    codes = rng.integers(0, k, size=(n_items, n))
    index = SIDIndex(codes, k)
    for filled in range(n):
        # partial SIDs with `filled` digits: half from the catalogue, half random (mostly outside it)
        src = np.concatenate([codes[rng.integers(0, n_items, 8)], rng.integers(0, k, size=(8, n))])
        digit_sets = np.stack([rng.permutation(n) for _ in range(len(src))])
        tokens = src.copy()
        for row, perm in enumerate(digit_sets):
            tokens[row, perm[filled:]] = MASK
        tokens = torch.as_tensor(tokens).reshape(2, 8, n)
        masked = torch.as_tensor(np.sort(digit_sets[:, filled:], axis=1)).reshape(2, 8, n - filled)
        want = ~index.allowed(tokens).gather(2, masked[..., None].expand(2, 8, n - filled, k))
        assert torch.equal(_blocked(index, tokens, index.keys(tokens), masked), want)


# --- fewer passes than digits (steps < n) -------------------------------------------------------


def multi_pass_brute_force(net: RandomNet, codes: np.ndarray, user: int, fills: list[int], topk: int):
    """Top-K items by the best score over the ways to split the digits into passes of ``fills``
    digits: a pass scores its digits with the prediction at the partial SID it starts from."""
    n = codes.shape[1]
    best = []
    for i, sid in enumerate(codes):
        top = -math.inf
        for perm in itertools.permutations(range(n)):
            partial = torch.full((n,), MASK, dtype=torch.long)
            total, at = 0.0, 0
            for size in fills:
                row = net.table[user, net.rows(partial)]
                group = perm[at : at + size]
                total += sum(float(row[d, sid[d]]) for d in group)
                for d in group:
                    partial[d] = int(sid[d])
                at += size
            top = max(top, total)
        best.append((top, i))
    best.sort(key=lambda t: (-t[0], t[1]))
    return [i for _, i in best[:topk]], [s for s, _ in best[:topk]]


@pytest.mark.parametrize("steps", [1, 2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_fewer_passes_find_the_best_joint_choices_with_a_full_beam(steps, seed):
    codes = catalogue(3, 4, 30, seed)
    index = SIDIndex(torch.from_numpy(codes), 4)
    net = RandomNet(index, batch=2, seed=seed)
    res = cpd_search(net, index, 2, beam=64, topk=5, passes=steps)
    assert net.calls == steps
    from diffgrm.cpd import pass_sizes

    for user in range(2):
        items, scores = multi_pass_brute_force(net, codes, user, pass_sizes(3, steps), 5)
        assert res.items[user].tolist() == items
        np.testing.assert_allclose(res.scores[user].numpy(), scores, rtol=1e-5)


@pytest.mark.parametrize("steps", [1, 2])
def test_fewer_passes_keep_beams_valid_and_trace_the_passes(steps):
    codes = catalogue(4, 4, 120, 7)
    index = SIDIndex(torch.from_numpy(codes), 4)
    net = RandomNet(index, batch=3, seed=7, table_size=997)
    res = cpd_search(net, index, 3, beam=8, topk=8, passes=steps, trace=True)
    assert net.calls == steps
    for u, trace in enumerate(res.traces):
        items = res.items[u].tolist()
        assert len(set(items)) == len(items) == 8 and min(items) >= 0
        assert (np.diff(res.scores[u].numpy()) <= 1e-6).all()
        assert trace.n_steps == 4 and trace.n_passes == steps
        assert trace.passes.tolist() == ([0, 0, 0, 0] if steps == 1 else [0, 1, 1, 1])
        for s in range(4):  # every kept partial SID is a prefix of some item, at every step
            alive = trace.tokens[s][trace.alive[s]]
            assert bool(index.exists(torch.from_numpy(alive)).all())


def test_passes_out_of_range_is_a_clear_error():
    codes = catalogue(3, 4, 30, 0)
    index = SIDIndex(torch.from_numpy(codes), 4)
    net = RandomNet(index, batch=1, seed=0)
    for passes in (0, 4):
        with pytest.raises(DiffGRMError, match="passes must be a whole number between 1 and 3"):
            cpd_search(net, index, 1, beam=4, topk=2, passes=passes)


@pytest.mark.parametrize("steps", [None, 2, 1])
@pytest.mark.parametrize("order", ["confidence", "fixed"])
def test_listing_the_allowed_children_gives_the_dense_search(order, steps, monkeypatch):
    """Deep steps score only the children the catalogue allows (`_listed_children`): the same
    beams and scores as masking the dense (parent, digit, code) candidates."""
    import diffgrm.cpd_step as cpd

    n, k, batch = 4, 16, 3
    codes = catalogue(n, k, 900, seed=11)
    index = SIDIndex(torch.from_numpy(codes), k)
    net = RandomNet(index, batch, seed=5, table_size=4099)
    calls = []
    real = cpd._listed_children

    def spy(*args):
        out = real(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(cpd, "_listed_children", spy)
    listed = cpd_search(net, index, batch, beam=24, topk=10, order=order, passes=steps)
    assert any(calls) and not all(calls)  # early steps dense, deep steps listed
    monkeypatch.setattr(cpd, "_listed_children", lambda *args: None)
    dense = cpd_search(net, index, batch, beam=24, topk=10, order=order, passes=steps)
    assert torch.equal(listed.items, dense.items) and torch.equal(listed.sids, dense.sids)
    torch.testing.assert_close(listed.scores, dense.scores)


@pytest.mark.parametrize("order", ["confidence", "fixed"])
@pytest.mark.parametrize("seed", range(3))
def test_the_last_digit_reads_only_the_beams_that_can_reach_the_top_k(order, seed, monkeypatch):
    """Top-5 from a beam of 40: the last step stops reading beams once none can enter the Top-5,
    and returns exactly the first 5 of the search that reads every beam."""
    import diffgrm.cpd as cpd

    monkeypatch.setattr(cpd, "LAST_CHUNK", 4)
    n, k, batch = 4, 8, 3
    codes = catalogue(n, k, 700, seed=seed + 20)
    index = SIDIndex(torch.from_numpy(codes), k)
    nets = [RandomNet(index, batch, seed=seed, table_size=2053)]
    rows = []

    def sharp(tokens):  # a trained model is nearly sure of the last digit (here: certain of every
        lp = nets[-1](tokens)  # allowed code), so its parents' order decides the Top-K
        return lp * 0.01 if int((tokens[0, 0] == MASK).sum()) == 1 else lp

    def counting(tokens):
        rows.append(((tokens == MASK).sum(-1)[0, 0].item(), tokens.shape[1]))
        return sharp(tokens)

    every = cpd_search(sharp, index, batch, beam=40, topk=40, order=order)  # topk = beam: every beam is read
    top = cpd_search(counting, index, batch, beam=40, topk=5, order=order)
    assert torch.equal(top.items, every.items[:, :5]) and torch.equal(top.sids, every.sids[:, :5])
    torch.testing.assert_close(top.scores, every.scores[:, :5])
    nets.append(RandomNet(index, 1, seed=seed, table_size=2053))  # one user: the stop is that user's alone
    rows.clear()
    cpd_search(counting, index, 1, beam=40, topk=5, order=order)
    last = sum(r for masked, r in rows if masked == 1)
    assert 0 < last < 40  # the last step read some beams, not all 40
