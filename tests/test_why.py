""""Why not this item?": its claims checked against the trace on random logits (CPD and AR), and
the decoder's own view (``Recommender.digit_logprobs``) against what the search recorded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffgrm.ar import ar_search
from diffgrm.cpd import cpd_search
from diffgrm.errors import DiffGRMError
from diffgrm.sid_index import MASK, SIDIndex
from diffgrm.why import RULED_OUT, why_not
from tests.test_cpd import RandomNet, catalogue


def cpd_case(seed: int, beam: int = 4, topk: int = 2):
    codes = catalogue(3, 4, 30, seed)
    index = SIDIndex(torch.from_numpy(codes), 4)
    net = RandomNet(index, batch=1, seed=seed)
    res = cpd_search(net, index, 1, beam=beam, topk=topk, trace=True)

    def logprobs(tokens: np.ndarray) -> np.ndarray:
        return net.table[0, net.rows(torch.from_numpy(tokens))].numpy()

    return codes, res.traces[0], logprobs


def ar_case(seed: int, beam: int = 4, topk: int = 2):
    codes = catalogue(3, 4, 30, seed)
    index = SIDIndex(torch.from_numpy(codes), 4)
    net = RandomNet(index, batch=1, seed=seed)

    def next_fn(prefix: torch.Tensor) -> torch.Tensor:  # the RandomNet row of the prefix, digit t
        full = torch.cat([prefix, torch.full((*prefix.shape[:2], 3 - prefix.shape[2]), MASK)], dim=2)
        return net(full)[..., prefix.shape[2], :]

    res = ar_search(next_fn, index, 1, beam=beam, topk=topk, trace=True)

    def logprobs(tokens: np.ndarray) -> np.ndarray:
        lp = net.table[0, net.rows(torch.from_numpy(tokens))].numpy().copy()
        filled = (tokens != MASK).sum(1)
        for j, t in enumerate(filled):  # AR predicts the next digit only
            lp[j, np.arange(3) != t] = -np.inf
        return lp

    return codes, res.traces[0], logprobs


def consistent(trace, sid, s):
    return [r for r in range(trace.beam) if trace.alive[s, r] and all(c in (-1, d) for c, d in zip(trace.tokens[s, r], sid))]


@pytest.mark.parametrize("case", [cpd_case, ar_case], ids=["cpd", "ar"])
@pytest.mark.parametrize("seed", range(6))
def test_every_items_story_agrees_with_the_trace(case, seed):
    codes, trace, logprobs = case(seed)
    verdicts = set()
    for item, sid in enumerate(codes):
        why = why_not(trace, sid, logprobs, item=item, topk=2)
        verdicts.add(why.verdict)
        assert why.message
        if why.verdict == "recommended":
            assert int(trace.items[why.rank - 1]) == item
            continue
        assert item not in trace.items[:2].tolist()
        if why.verdict == "below_top_k":
            assert consistent(trace, sid, trace.n_steps - 1)
            continue
        s = why.step
        assert not consistent(trace, sid, s), "it was still in the beam at the step it left"
        assert s == 0 or consistent(trace, sid, s - 1), "it had left before"
        # the best candidate, recomputed here by brute force over parents and masked digits
        parents = [(np.full(3, -1), 0.0)] if s == 0 else [(trace.tokens[s - 1, r], trace.score[s - 1, r])
                                                          for r in consistent(trace, sid, s - 1)]
        cands = [(base + logprobs(tok[None])[0, d, sid[d]], np.exp(logprobs(tok[None])[0, d, sid[d]]), d)
                 for tok, base in parents for d in range(3) if tok[d] == -1]
        score, prob, digit = max(cands, key=lambda c: c[0])
        assert why.score == pytest.approx(score) and why.prob == pytest.approx(prob) and why.digit == digit
        assert why.code == sid[digit]
        lowest = trace.score[s][trace.alive[s]].min()
        assert why.lowest_kept == pytest.approx(lowest)
        if why.verdict == "outscored":
            assert why.score < lowest
            assert (why.displaced_by["score"] > why.score).all()
            assert why.displaced_by["score"].is_monotonic_increasing
        elif why.verdict == "unreachable":
            assert why.prob < RULED_OUT
    assert "recommended" in verdicts and verdicts & {"outscored", "below_top_k"}


def test_a_code_the_network_rules_out_is_unreachable():
    codes, trace, logprobs = cpd_case(0, beam=30, topk=2)
    target = 5

    def ruled_out(tokens: np.ndarray) -> np.ndarray:  # digit 0's code of the target: probability 0
        lp = logprobs(tokens).copy()
        lp[:, 0, codes[target][0]] = -np.inf
        return lp

    res_codes = codes.copy()
    index = SIDIndex(torch.from_numpy(res_codes), 4)

    def net(tokens: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(ruled_out(tokens.reshape(-1, 3).numpy()).reshape(*tokens.shape, 4))

    trace = cpd_search(net, index, 1, beam=30, topk=2, trace=True).traces[0]
    why = why_not(trace, codes[target], ruled_out, item=target, topk=2)
    assert why.verdict == "unreachable" and why.prob == 0.0 and why.digit == 0
    assert "rules it out" in why.message


def test_path_tracks_the_items_best_beam_until_it_leaves():
    codes, trace, logprobs = cpd_case(3)
    item = next(i for i in range(len(codes)) if why_not(trace, codes[i], logprobs, item=i).verdict == "outscored")
    why = why_not(trace, codes[item], logprobs, item=item)
    path = why.path
    assert list(path["step"]) == list(range(trace.n_steps))
    assert path["rank"].iloc[: why.step].notna().all() and path["rank"].iloc[why.step:].isna().all()
    assert (path["lowest_kept"] <= path["highest_kept"]).all()


def test_bad_sid_is_a_clear_error():
    _, trace, logprobs = cpd_case(0)
    with pytest.raises(DiffGRMError, match="3 digits"):
        why_not(trace, [1, 2], logprobs)


@pytest.mark.parametrize("kind", ["diffgrm", "ar"])
def test_digit_logprobs_are_what_the_search_saw(kind, chain_run, chain_ar_run):
    from diffgrm.decode import Recommender
    from diffgrm.train import load_run

    model, prepared, _ = load_run(chain_run if kind == "diffgrm" else chain_ar_run, device="cpu")
    rec = Recommender(model)
    history = prepared.splits["test"].histories[3]
    trace = rec.search([history], beam=8, topk=5, trace=True).traces[0]
    for s in range(1, trace.n_steps):
        for r in np.flatnonzero(trace.alive[s])[:3]:
            parent = trace.tokens[s - 1, trace.parent[s, r]]
            lp = rec.digit_logprobs(history, parent[None])[0]
            seen = trace.distributions[s, r]
            rows = [s] if kind == "ar" else [d for d in range(trace.tokens.shape[2]) if parent[d] == -1]
            np.testing.assert_allclose(np.exp(lp[rows]), seen[rows], atol=1e-5)
    with pytest.raises(DiffGRMError, match="partial SIDs"):
        rec.digit_logprobs(history, np.array([[99, -1, -1, -1]]))
