"""The autoregressive baseline decoder: catalogue-constrained beam search over a trie of SIDs.

An autoregressive generative recommender (TIGER-style) predicts the digits of a semantic ID left
to right, each conditioned on the ones before. Decoding keeps ``beam`` partial SIDs per user; at
step t every beam is extended by every code of digit t, candidates are scored by the summed
log-probability (the chain rule), and the best ``beam`` survive. With ``constrain=True`` only
codes that keep the prefix inside the catalogue are candidates (a trie walk, answered by
:class:`~diffgrm.sid_index.SIDIndex` with one ``searchsorted`` for all users and beams).

The model is abstracted as ``next_logprob_fn(prefix [B, R, t]) -> log-probs [B, R, K]``, so this
module needs no network and is tested against brute-force enumeration.
"""

from __future__ import annotations

import weakref
from typing import Callable

import torch

from diffgrm.beams import NEG_INF, assemble_traces, check_logprobs, finish, runners_up, weighed_fills
from diffgrm.cpd_validity import _matches
from diffgrm.seen import Seen
from diffgrm.sid_index import MASK, SIDIndex
from diffgrm.trace import BELOW, KEPT, NOT_IN_CATALOGUE, ONLY_HISTORY, SearchResult, check_search_sizes

NextLogProbFn = Callable[[torch.Tensor], torch.Tensor]
"""``prefix [B, R, t]`` long (the t digits chosen so far) -> log-probabilities ``[B, R, K]`` of digit t."""


def ar_search(
    next_logprob_fn: NextLogProbFn,
    index: SIDIndex,
    batch_size: int,
    *,
    beam: int,
    topk: int,
    constrain: bool = True,
    trace: bool = False,
    runners_up: int = 3,
    weigh: int = 200,
    device: torch.device | str | None = None,
    on_reorder: Callable[[torch.Tensor], None] | None = None,
    seen: torch.Tensor | None = None,
    on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> SearchResult:
    """Beam search digit by digit, left to right, for ``batch_size`` users at once.

    Each of the ``n`` steps makes one call ``next_logprob_fn(prefix)`` with ``prefix [B, R, t]``
    (``R`` = number of live-or-dead beams at that step: 1 at t = 0, then ``min(beam, R * K)``).
    Beams that died earlier are passed with their last (real) codes; their output is ignored.

    Candidates are ``score + logp``; with ``constrain`` a candidate whose prefix matches no
    catalogue item is dropped. A candidate with score ``-inf`` (including a code the model gives
    probability 0, or NaN) is dead and never returned. The final beams are mapped to items with
    ``index.item_of``; complete SIDs that name no item (possible only with ``constrain=False``)
    are dropped. The result holds the best ``topk`` per user, padded with item ``-1``, score
    ``-inf`` and SID ``-1``.

    ``trace=True`` records one :class:`DenoisingTrace` per user (``decoder="ar"``,
    ``order="left-to-right"``, ``digit[s, r] = s``). ``prob`` is the model's raw probability of
    the chosen code (not renormalised over the allowed codes). ``distributions[s, r]`` is ``[n,
    K]`` with row s the parent beam's predicted distribution of digit s and **zeros** in every
    other row, because an AR model predicts one digit per step. Runners-up are the next-best
    codes for the same digit from the same parent, among the allowed codes when ``constrain``
    (code ``-1``, probability 0 where there are fewer). Dead beams have ``alive = False``,
    ``parent = digit = code = -1``, ``score = -inf`` and tokens all ``-1``, as in CPD's traces.

    ``on_reorder(parent)`` is called after every step with ``parent [B, R']``, the previous beam
    each kept beam came from, so a network wrapper can keep per-beam state in step with the
    search (the decoder's key/value cache: see ``Recommender.search``).

    ``seen`` (item indices ``[B, L]``, -1 pads: each user's history) keeps those items out of the
    result inside the search: at the last digit a code that completes a SID naming a seen item is
    no candidate, so the beam slot goes to the next best one; with ``constrain`` (and the trie
    tables, up to ``TABLE_LIMIT``) a prefix all of whose items are seen is pruned at every digit.

    ``on_step(t, sids, scores)`` is called after every step with its beams (``[B, R, n]``, best
    first, dead ones at score -inf, and ``[B, R]``), as in :func:`~diffgrm.cpd.cpd_search`.
    """
    n, k = index.n_digits, index.codebook_size
    check_search_sizes(batch_size, beam, topk, runners_up)
    dev = torch.device(device) if device is not None else index.codes.device
    b = batch_size

    sids = torch.full((b, 1, n), MASK, dtype=torch.long, device=dev)  # [B, R, n]
    scores = torch.zeros((b, 1), dtype=torch.float32, device=dev)
    alive = torch.ones((b, 1), dtype=torch.bool, device=dev)
    children = _children_table(index, dev) if constrain else None
    seen_items = Seen(index, torch.as_tensor(seen).to(dev), b) if seen is not None else None
    rec: list[dict[str, torch.Tensor]] = []

    for t in range(n):
        r_cur = sids.shape[1]
        prefix = sids[..., :t].contiguous()
        logp = check_logprobs(next_logprob_fn(prefix), (b, r_cur, k), "next_logprob_fn",
                              f"batch, beams, codes of digit {t}").to(dev)
        dtype = torch.promote_types(scores.dtype, logp.dtype)
        logp, scores = logp.to(dtype), scores.to(dtype)

        dead = torch.isnan(logp) | ~alive[..., None]  # NaN counts as impossible
        outside = torch.zeros_like(dead)  # children no catalogue item has
        if constrain:
            outside = ~(children.allowed(sids, t) if children is not None else _allowed_by_keys(index, sids, t))
        only_seen = torch.zeros_like(dead)  # children whose every item is in the history
        if seen_items is not None:
            if children is not None:  # prefixes (at the last digit: SIDs) every item of which is seen
                only_seen = children.hollow(sids, t, seen_items)
            elif t == n - 1:  # the codes that complete a SID naming a seen item
                complete = index.child_keys(index.keys(sids)[..., None], t, torch.arange(k, device=dev))
                only_seen = seen_items.holds(index.item_of_keys(complete))
        bad = dead | outside | only_seen
        raw = scores[..., None] + logp.masked_fill(dead, NEG_INF)
        cand = raw.masked_fill(bad, NEG_INF).reshape(b, r_cur * k)
        r_new = min(beam, r_cur * k)
        top_val, top_idx = torch.topk(cand, r_new, dim=1)  # sorted descending
        parent = torch.div(top_idx, k, rounding_mode="floor")
        code = top_idx % k
        new_alive = top_val > NEG_INF
        parents, parent_scores = sids, scores
        sids = torch.gather(sids, 1, parent[..., None].expand(b, r_new, n)).clone()
        sids[..., t] = code
        scores, alive = top_val, new_alive
        if on_reorder is not None:  # a caller that caches per-beam state (keys/values) follows the beams
            on_reorder(parent)
        if on_step is not None:
            on_step(t, sids, scores)
        if trace:
            rec.append(_trace_step(index, logp, bad, raw, outside, only_seen, parent, code, parents, parent_scores,
                                   scores, alive, sids, t, runners_up, weigh))

    result = finish(index, sids, scores, topk)
    if trace:
        result.traces = assemble_traces(rec, result, decoder="ar", order="left-to-right", beam=beam)
    return result


def _trace_step(index: SIDIndex, logp, bad, raw, outside, only_seen, parent, code, parents, parent_scores, scores,
                alive, sids, t: int, n_runners_up: int, weigh: int) -> dict[str, torch.Tensor]:
    """What digit ``t``'s step did, per user and new beam, for the trace (the same record as CPD's):
    the fills, their raw probabilities, runners-up among the allowed codes, the predicted
    distribution of digit t (zeros in the other digits' rows: an AR model predicts one digit per
    step), and the fills the step weighed with what became of each."""
    b, r_new = parent.shape
    n, k = sids.shape[2], logp.shape[-1]
    par_logp = logp.gather(1, parent[..., None].expand(b, r_new, k))  # [B, R', K]
    masked = logp.masked_fill(bad, NEG_INF).gather(1, parent[..., None].expand(b, r_new, k))
    ru_codes, ru_probs = runners_up(masked, code, n_runners_up)
    dist = torch.zeros(b, r_new, n, k, dtype=torch.float32, device=logp.device)
    dist[:, :, t] = par_logp.float().exp()
    status = torch.full_like(raw, BELOW, dtype=torch.long)
    status[outside] = NOT_IN_CATALOGUE
    status[only_seen & ~outside] = ONLY_HISTORY
    status = status.reshape(b, -1)
    status.scatter_(1, parent * k + code, torch.where(alive, KEPT, status.gather(1, parent * k + code)))
    matches = _matches(index, raw.device)

    def fill(cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return cols // k, torch.full_like(cols, t), cols % k

    def count_items(par: torch.Tensor, digit: torch.Tensor, cd: torch.Tensor) -> torch.Tensor:
        return matches.ranges(index.child_keys(index.keys(parents).gather(1, par), digit, cd))[1]

    weighed = weighed_fills(raw.reshape(b, -1), status, fill, parent_scores, weigh,
                            count_items if matches is not None else None)
    return {"parent": parent, "digit": torch.full_like(parent, t), "code": code,
            "prob": par_logp.gather(2, code[..., None]).squeeze(-1).exp(), "score": scores, "tokens": sids.clone(),
            "alive": alive, "runner_up_codes": ru_codes, "runner_up_probs": ru_probs, "distributions": dist, **weighed}


TABLE_LIMIT = 1 << 27
"""Most bools the per-prefix children tables may hold (summed over digits); larger catalogues
fall back to one ``SIDIndex`` key lookup per candidate (same answer, slower)."""

_TABLES: "weakref.WeakKeyDictionary[SIDIndex, dict[str, _ChildrenTable | None]]" = weakref.WeakKeyDictionary()


class _ChildrenTable:
    """The trie of catalogue prefixes as dense tables: for each digit t, the sorted keys of the
    distinct length-t prefixes and ``[prefixes, K]`` bools of which codes may follow each one.

    A beam's allowed codes are then one ``searchsorted`` per beam plus a row gather, instead of
    one key lookup per (beam, code) candidate.
    """

    def __init__(self, index: SIDIndex, device: torch.device) -> None:
        self.index = index
        codes = index.codes.to(device)
        self.levels: list[tuple[torch.Tensor, torch.Tensor]] = []
        for t in range(index.n_digits):
            partial = codes.clone()
            partial[:, t:] = MASK
            uniq, inv = torch.unique(index.keys(partial), return_inverse=True)
            table = torch.zeros((len(uniq), index.codebook_size), dtype=torch.bool, device=device)
            table[inv, codes[:, t]] = True
            self.levels.append((uniq, table))
        self._counts: dict[int, torch.Tensor] = {}

    def _row(self, sids: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each beam's row in the digit-t tables and whether its prefix is there at all."""
        uniq = self.levels[t][0]
        keys = self.index.keys(sids)
        pos = torch.searchsorted(uniq, keys).clamp(max=len(uniq) - 1)
        return pos, uniq[pos] == keys

    def allowed(self, sids: torch.Tensor, t: int) -> torch.Tensor:
        """Bool ``[B, R, K]``: codes of digit t that keep each beam's prefix in the catalogue.
        ``sids [B, R, n]`` must hold ``MASK`` in digits >= t."""
        pos, there = self._row(sids, t)
        return self.levels[t][1][pos] & there[..., None]

    def hollow(self, sids: torch.Tensor, t: int, seen: Seen) -> torch.Tensor:
        """Bool ``[B, R, K]``: does every item under (prefix, code c) count among the user's seen
        ones? (Counting the items a SID names: where SIDs collide, the lowest index.)"""
        if t not in self._counts:  # [prefixes, K] items under each child prefix, built on first use
            uniq, table = self.levels[t]
            codes = self.index.codes.to(table.device)
            named = self.index.item_of(codes) == torch.arange(len(codes), device=table.device)
            partial = codes[named].clone()
            partial[:, t:] = MASK
            rows = torch.searchsorted(uniq, self.index.keys(partial))
            counts = torch.zeros(table.shape, dtype=torch.int32, device=table.device)
            ones = torch.ones(len(rows), dtype=torch.int32, device=table.device)
            self._counts[t] = counts.index_put_((rows, codes[named, t]), ones, accumulate=True)
        pos, there = self._row(sids, t)
        return (seen.prefix_hits(sids, t, self.index.codebook_size) >= self._counts[t][pos]) | ~there[..., None]


def _children_table(index: SIDIndex, device: torch.device) -> _ChildrenTable | None:
    """The cached children tables of ``index`` on ``device``, or None when they would exceed TABLE_LIMIT."""
    per_index = _TABLES.setdefault(index, {})
    key = str(device)
    if key not in per_index:
        size = 0
        for t in range(index.n_digits):  # an upper bound without building anything
            size += min(index.n_items, index.codebook_size**t) * index.codebook_size
        per_index[key] = _ChildrenTable(index, device) if size <= TABLE_LIMIT else None
    return per_index[key]


def _allowed_by_keys(index: SIDIndex, sids: torch.Tensor, t: int) -> torch.Tensor:
    """Bool ``[B, R, K]`` from the index directly: the keys of the prefixes with digit t set to each code."""
    codes_k = torch.arange(index.codebook_size, device=sids.device)
    return index.exists_keys(index.child_keys(index.keys(sids)[..., None], t, codes_k))
