"""One CPD transition in two parts: make the candidates, then select the new beams.

:func:`cpd_search` (``cpd.py``) fills one digit per step. A step expands every parent beam by one
(digit, code): :func:`make_candidates` scores those children, each the parent's score plus the
fill's log-probability, with the catalogue's verdict applied. :func:`select` then keeps the best
``beam`` distinct children and says what became of every child it looked at (``STATUSES``: kept,
a duplicate of a better fill, only history items, redundant, below the beam). Neither sees the
network: they read one pass's log-probabilities (:class:`~diffgrm.cpd_passes._Prediction`).
:func:`trace_record` turns a step into what a :class:`~diffgrm.trace.DenoisingTrace` keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffgrm.beams import NEG_INF, by_tier, first_per_group, runners_up, weighed_fills
from diffgrm.cpd_passes import _Prediction
from diffgrm.cpd_validity import _blocked, _listed_children, _matches
from diffgrm.seen import Seen
from diffgrm.sid_index import SIDIndex, masked_digits
from diffgrm.trace import BELOW, DUPLICATE, KEPT, NOT_IN_CATALOGUE, ONLY_HISTORY, REDUNDANT


@dataclass
class Candidates:
    """Every child one step may create, flat per user: column c of ``scores`` is one (parent beam,
    digit, code) child, and :meth:`at` says which.

    Dense candidates are every (parent, candidate digit, code) in that order (``C = P * m * K``).
    Deep in the search, where a parent matches a handful of items, only the children the catalogue
    allows are listed, and ``flat`` maps each column to its dense position.
    """

    scores: torch.Tensor  # [B, C] the child's beam score; -inf where the catalogue (or the network) rules it out
    digits: torch.Tensor  # [B, P, m] the digits each parent may fill: its masked ones, or the scheduled one
    parent_keys: torch.Tensor  # [B, P] the parents' index keys
    codebook: int
    flat: torch.Tensor | None = None  # [B, C] dense position of each listed column
    logp: torch.Tensor | None = None  # [B, P, m, K] the fills' log-probs before the catalogue's verdict (trace)
    blocked: torch.Tensor | None = None  # [B, P, m, K] children no item has (trace, with the catalogue kept)

    def at(self, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Parent beam, slot (position among the parent's candidate digits), digit and code of columns ``cols [B, W]``."""
        if self.flat is not None:
            cols = self.flat.gather(1, cols)
        m, k = self.digits.shape[-1], self.codebook
        parent, slot, code = cols // (m * k), cols % (m * k) // k, cols % k
        digit = self.digits.reshape(cols.shape[0], -1).gather(1, parent * m + slot)
        return parent, slot, digit, code


def make_candidates(index: SIDIndex, tokens: torch.Tensor, scores: torch.Tensor, pred: _Prediction, s: int,
                    schedule: torch.Tensor | None, *, constrain: bool, trace: bool) -> Candidates:
    """Score every child of the parents ``tokens [B, P, n]`` (each with ``s`` digits filled).

    All parents of a step have the same number of masked digits, so the candidate digits form a
    dense ``[B, P, m]`` tensor: the ``n - s`` masked digits (confidence order) or the one scheduled
    digit. Where the parents match few items, the allowed children are listed and only they are
    scored; otherwise (and for a trace, which records the masked distributions) every (parent,
    digit, code) is scored and the ones no item has are set to -inf. Same candidates, same scores.
    """
    b, p, n = tokens.shape
    k = pred.logp.shape[-1]
    digits = masked_digits(tokens, n - s) if schedule is None else schedule[:, s, None, None].expand(b, p, 1)
    m = digits.shape[-1]
    parent_keys = index.keys(tokens)
    dtype = torch.promote_types(pred.logp.dtype, scores.dtype)  # >= float32 sums
    listed = _listed_children(index, tokens, parent_keys, digits) if constrain and not trace else None
    if listed is not None:
        flat, valid = listed  # [B, T] dense positions of the allowed children
        parent, rest = flat // (m * k), flat % (m * k)
        digit = digits.reshape(b, -1).gather(1, parent * m + rest // k)
        value = pred.values(parent, digit, rest % k).to(dtype) + scores.gather(1, parent)
        return Candidates(torch.where(valid, value, torch.full_like(value, NEG_INF)), digits, parent_keys, k, flat=flat)
    lp = pred.at(digits)
    lp = pred.logp if lp is None else lp  # [B, P, m, K]
    value = lp.to(dtype) + scores[..., None, None]
    blocked = _blocked(index, tokens, parent_keys, digits) if constrain else None
    if blocked is not None:
        value = value.masked_fill(blocked, NEG_INF)
    return Candidates(value.reshape(b, -1), digits, parent_keys, k, logp=lp if trace else None,
                      blocked=blocked if trace else None)


@dataclass
class Selection:
    """What a step kept, ``[B, beam]`` per user, best first, and why (``status`` of each looked-at
    column ``examined``, as ``trace.STATUSES`` indices; -1 where the column was already dead)."""

    tokens: torch.Tensor  # [B, beam, n] the new beams' partial SIDs
    scores: torch.Tensor  # [B, beam] their scores (-inf: a dead beam)
    parent: torch.Tensor  # [B, beam] the parent each came from
    slot: torch.Tensor  # [B, beam] the filled digit's position among its parent's candidate digits
    digit: torch.Tensor  # [B, beam]
    code: torch.Tensor  # [B, beam]
    examined: torch.Tensor  # [B, W] columns of the candidates the selection looked at, best first
    status: torch.Tensor  # [B, W]


@dataclass
class _Look:
    """The best ``W`` candidates and how they stand: the columns, their scores, who they are, and
    whether they are live (the best copy of their partial SID, not ruled out by the history)."""

    cols: torch.Tensor
    score: torch.Tensor
    fill: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # parent, slot, digit, code
    live: torch.Tensor
    duplicate: torch.Tensor
    history: torch.Tensor  # every item it leads to is seen
    novel: torch.Tensor | None  # reaches an item no better child reaches (None: not asked)
    enough: bool  # looking further down the list cannot change the beams


def select(index: SIDIndex, cand: Candidates, tokens: torch.Tensor, s: int, beam: int, *, constrain: bool,
           scheduled: bool, seen: Seen | None) -> Selection:
    """Keep the best ``beam`` distinct children per user: novel ones first, then redundant ones.

    A child with s + 1 filled digits has at most s + 1 distinct parents, so the best ``beam``
    distinct children are among the top ``(s + 1) * beam`` candidates; more are read only while a
    user has too few. In confidence order, children with different filled digits can lead to the
    same items, so beams are also told apart by the items they can still reach
    (``_Matches.novel``). Not needed at the last step (distinct complete SIDs name distinct items)
    nor in a scheduled order (a user's children fill the same digits, so distinct ones match
    disjoint items), except to prune children whose items are all seen.
    """
    b, _, n = tokens.shape
    scores = cand.scores
    total = scores.shape[1]
    if total < beam:  # too few candidates: pad with dead ones (score -inf)
        scores = torch.cat([scores, scores.new_full((b, beam - total), NEG_INF)], dim=1)
    listing = not scheduled or seen is not None
    matches = _matches(index, scores.device) if constrain and listing and s < n - 1 else None
    width = min((s + 1) * beam, scores.shape[1])
    look = _look(index, cand, scores, tokens, s, width, total, beam, constrain, matches, seen)
    while not look.enough and width < scores.shape[1]:
        width = min(4 * width, scores.shape[1])
        look = _look(index, cand, scores, tokens, s, width, total, beam, constrain, matches, seen)

    novel = look.novel if look.novel is not None else look.live
    tier = 2 - look.live.to(torch.uint8) - novel.to(torch.uint8)  # 0 novel, 1 redundant, 2 dead or a repeat
    keep = by_tier(tier)[:, :beam]
    live_scores = look.score.masked_fill(~look.live, NEG_INF)
    new_scores, order = torch.sort(live_scores.gather(1, keep), dim=1, descending=True, stable=True)
    keep = keep.gather(1, order)
    parent, slot, digit, code = (x.gather(1, keep) for x in look.fill)
    new_tokens = tokens.gather(1, parent[..., None].expand(b, beam, n)).scatter(2, digit[..., None], code[..., None])

    status = torch.full_like(look.cols, BELOW)
    lowest = torch.where(torch.isfinite(new_scores), new_scores, float("inf")).amin(1, keepdim=True)
    status[look.live & ~novel & (look.score >= lowest)] = REDUNDANT  # high enough, but leads nowhere new
    status[look.duplicate] = DUPLICATE
    status[look.history] = ONLY_HISTORY
    status.scatter_(1, keep, torch.where(torch.isfinite(new_scores), KEPT, status.gather(1, keep)))
    status[~torch.isfinite(look.score)] = -1
    return Selection(new_tokens, new_scores, parent, slot, digit, code, look.cols, status)


def _look(index: SIDIndex, cand: Candidates, scores: torch.Tensor, tokens: torch.Tensor, s: int, width: int,
          total: int, beam: int, constrain: bool, matches, seen: Seen | None) -> _Look:
    """The best ``width`` candidates per user and how they stand (see :class:`_Look`)."""
    b, _, n = tokens.shape
    top, cols = scores.topk(width, dim=1)
    cols = cols % total  # padded columns point at some real candidate; they stay dead
    fill = parent, _, digit, code = cand.at(cols)
    keys = index.child_keys(cand.parent_keys.gather(1, parent), digit, code)
    same = keys
    if not (constrain or index.packed):  # children outside the catalogue may share the key ABSENT
        same = index.ids(tokens.gather(1, parent[..., None].expand(b, width, n)).scatter(2, digit[..., None],
                                                                                          code[..., None]))
    alive = torch.isfinite(top)
    duplicate = alive & ~first_per_group(same)
    live = alive & ~duplicate
    history = torch.zeros_like(live)
    if seen is not None and s == n - 1:  # a complete SID naming a seen item
        history = live & seen.holds(index.item_of_keys(keys))
        live &= ~history
    last_alive = torch.isfinite(top[:, -1])  # the user may have more candidates further down
    if matches is None:
        short = (live.sum(1) < beam) & last_alive
        enough = seen is None or s < n - 1 or not bool(short.any())
        return _Look(cols, top, fill, live, duplicate, history, None, enough)
    reach = matches.novel(keys, live, beam, seen)
    history |= live & reach.hollow
    live &= ~reach.hollow
    done = (reach.novel.sum(1) >= beam) | (reach.reach >= beam) | ~last_alive
    return _Look(cols, top, fill, live, duplicate, history, reach.novel, bool(done.all()))


def trace_record(index: SIDIndex, cand: Candidates, sel: Selection, pred: _Prediction, parent_scores: torch.Tensor,
                 n_runners_up: int, weigh: int, seen: Seen | None, last: bool) -> dict[str, torch.Tensor]:
    """What one step did, per user and new beam, for the trace: the fills, their probabilities,
    runners-up and the parents' predictions, and the fills the step weighed (every kept one and
    the best ``weigh`` others by beam score) with what became of each. ``last``: the step completes
    the SIDs."""
    b, beam = sel.parent.shape
    masked = cand.logp if cand.blocked is None else cand.logp.masked_fill(cand.blocked, NEG_INF)  # [B, P, m, K]
    rows = masked[torch.arange(b, device=masked.device)[:, None], sel.parent, sel.slot]  # [B, beam, K]
    ru_codes, ru_probs = runners_up(rows, sel.code, n_runners_up)
    dist = pred.full().float().softmax(-1)  # [B, P, n, K] each parent's prediction
    record = {
        "parent": sel.parent, "digit": sel.digit, "code": sel.code,
        "prob": rows.gather(2, sel.code[..., None]).squeeze(2).exp(), "score": sel.scores, "tokens": sel.tokens,
        "alive": torch.isfinite(sel.scores), "runner_up_codes": ru_codes, "runner_up_probs": ru_probs,
        # the parent's prediction; at step 0 the single root is broadcast to every beam
        "distributions": dist.gather(1, sel.parent[..., None, None].expand(b, beam, *dist.shape[2:])),
    }
    # every child's beam score before the catalogue's verdict, and what became of it
    raw = (cand.logp.to(parent_scores.dtype) + parent_scores[..., None, None]).reshape(b, -1)
    status = torch.full_like(raw, BELOW, dtype=torch.long)
    if cand.blocked is not None:
        status[cand.blocked.reshape(b, -1)] = NOT_IN_CATALOGUE
    looked = sel.status >= 0
    users = torch.arange(b, device=raw.device)[:, None].expand_as(sel.examined)
    status[users[looked], sel.examined[looked]] = sel.status[looked]
    matches = _matches(index, raw.device)

    def fill(cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        parent, _, digit, code = cand.at(cols)
        return parent, digit, code

    def count_items(parent: torch.Tensor, digit: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return matches.ranges(index.child_keys(cand.parent_keys.gather(1, parent), digit, code))[1]

    weighed = weighed_fills(raw, status, fill, parent_scores, weigh, count_items if matches is not None else None)
    # fills the selection never reached can still repeat a better fill's partial SID, or (with the
    # history kept out) lead to seen items only: the recorded ones say so
    keys = index.child_keys(cand.parent_keys.gather(1, weighed["w_parent"]), weighed["w_digit"], weighed["w_code"])
    open_ = (weighed["w_status"] == BELOW) | (weighed["w_status"] == REDUNDANT)
    repeat = open_ & ~first_per_group(keys)  # recorded kept-first, then best-first
    only_seen = torch.zeros_like(open_)
    if seen is not None:
        if matches is not None:
            only_seen = matches.novel(keys, open_, 1 << 62, seen).hollow  # nothing counts as big: all listed
        elif last:
            only_seen = open_ & seen.holds(index.item_of_keys(keys))
    weighed["w_status"] = torch.where(repeat, DUPLICATE, torch.where(only_seen, ONLY_HISTORY, weighed["w_status"]))
    record.update(weighed)
    return record
