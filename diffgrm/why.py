"""Why not this item? Where an item's SID left the search, and what pushed it out.

A search keeps ``R`` partial SIDs per step. An item is still reachable after step ``s`` while some
kept beam agrees with the item's SID on every digit it has filled. :func:`why_not` follows one
item through a :class:`~diffgrm.trace.DenoisingTrace`: the first step at which no kept beam
agrees any more; the best candidate that would have kept it there (a consistent beam of the step
before with one more of the item's digits filled, as CPD may fill any masked digit and AR only
the next one), that candidate's probability and score; the lowest kept beam's score it had to
beat; and the kept beams just above it, which displaced it. A code the decoder gives (almost)
zero probability cannot be reached at any beam: the network rules it out.

The decoder's view of the candidates is asked for, not guessed: ``logprobs`` maps partial SIDs
``[m, n]`` to log-probabilities ``[m, n, K]`` (``Recommender.digit_logprobs`` for one history).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from diffgrm.errors import DiffGRMError
from diffgrm.sid_index import sid_text
from diffgrm.trace import DenoisingTrace

RULED_OUT = 1e-9
"""A code with a smaller probability than this is "ruled out" by the network, not merely outscored."""

VERDICTS = ("recommended", "below_top_k", "outscored", "redundant", "unreachable")


@dataclass
class WhyNot:
    """The story of one item in one search (see the module docstring); ``message`` says it in a sentence."""

    item: int
    sid: tuple[int, ...]
    verdict: str  # one of VERDICTS
    message: str
    rank: int | None = None  # 1-based: in the Top-K (recommended) or among the last step's beams
    step: int | None = None  # the step (0-based) at which its partial SID left the beam
    digit: int | None = None  # the digit whose fill would have kept it there
    code: int | None = None  # the item's code of that digit
    prob: float | None = None  # the decoder's probability of that code there
    score: float | None = None  # the score the candidate would have had
    lowest_kept: float | None = None  # the lowest score kept at that step
    displaced_by: pd.DataFrame = field(default_factory=pd.DataFrame)  # beam, sid, score: kept just above it
    path: pd.DataFrame = field(default_factory=pd.DataFrame)  # per step, see :func:`item_path`


def item_path(trace: DenoisingTrace, sid: Sequence[int]) -> pd.DataFrame:
    """Per step: how many beams were kept, the lowest and highest kept scores, and the item's best
    consistent beam (its index, 1-based rank by score, score), NaN once it has left."""
    sid = np.asarray(sid)
    consistent = _consistent(trace, sid)
    rows = []
    for s in range(trace.n_steps):
        alive = np.flatnonzero(trace.alive[s])
        scores = trace.score[s, alive]
        row = {"step": s, "kept": len(alive), "lowest_kept": float(scores.min()) if len(alive) else np.nan,
               "highest_kept": float(scores.max()) if len(alive) else np.nan,
               "beam": -1, "rank": np.nan, "score": np.nan}
        ours = np.flatnonzero(consistent[s])
        if len(ours):
            best = int(ours[np.argmax(trace.score[s, ours])])
            row.update(beam=best, score=float(trace.score[s, best]),
                       rank=int((scores > trace.score[s, best]).sum()) + 1)
        rows.append(row)
    return pd.DataFrame(rows)


def why_not(trace: DenoisingTrace, sid: Sequence[int], logprobs: Callable[[np.ndarray], np.ndarray], *,
            item: int = -1, topk: int | None = None, show: int = 5) -> WhyNot:
    """Where item ``item`` (SID ``sid``) left ``trace``'s search and why; ``topk`` = the K shown."""
    sid = np.asarray(sid, dtype=np.int64)
    n = trace.tokens.shape[2]
    if sid.shape != (n,):
        raise DiffGRMError(f"the SID must have {n} digits, got {sid.tolist()}")
    topk = topk or len(trace.items)
    consistent = _consistent(trace, sid)
    path = item_path(trace, sid)
    key = tuple(int(c) for c in sid)
    last = trace.n_steps - 1
    if consistent[last].any():  # reached: in the Top-K, or among the beams below it
        items = [int(i) for i in trace.items[:topk]]
        if item in items:
            rank = items.index(item) + 1
            return WhyNot(item, key, "recommended", f"recommended at rank {rank} of {topk} (log p "
                          f"{trace.item_scores[rank - 1]:.2f})", rank=rank, path=path)
        rank = int(path["rank"].iloc[-1])
        return WhyNot(item, key, "below_top_k", f"its SID survived every step, as beam {rank} of "
                      f"{int(path['kept'].iloc[-1])} at the end; only the Top-{topk} are shown", rank=rank, path=path)

    step = int(np.flatnonzero(~consistent.any(axis=1))[0])
    if step == 0:
        parents, bases = np.full((1, n), -1, dtype=np.int64), np.zeros(1)
    else:
        rows = np.flatnonzero(consistent[step - 1])
        parents, bases = trace.tokens[step - 1, rows], trace.score[step - 1, rows]
    lp = np.asarray(logprobs(parents), dtype=np.float64)  # [m, n, K]
    own = lp[:, np.arange(n), sid]  # [m, n]: log p of the item's code in every digit
    own = np.where(parents == -1, own, -np.inf)  # only still-masked digits can be filled
    cand = bases[:, None] + own
    j, digit = np.unravel_index(int(np.argmax(cand)), cand.shape)
    best, logp = float(cand[j, digit]), float(own[j, digit])
    prob = float(np.exp(logp)) if np.isfinite(logp) else 0.0
    alive = np.flatnonzero(trace.alive[step])
    lowest = float(trace.score[step, alive].min()) if len(alive) else -np.inf
    above = alive[trace.score[step, alive] > best] if np.isfinite(best) else alive
    order = above[np.argsort(trace.score[step, above], kind="stable")][:show]
    displaced = pd.DataFrame({"beam": order.astype(int),
                              "sid": [sid_text(trace.tokens[step, b]) for b in order],
                              "score": trace.score[step, order].astype(float)})
    common = dict(step=step, digit=int(digit), code=int(sid[digit]), prob=prob, score=best, lowest_kept=lowest,
                  displaced_by=displaced, path=path)
    where = f"at step {step + 1} of {trace.n_steps}"
    if prob < RULED_OUT:
        return WhyNot(item, key, "unreachable", f"unreachable: {where} the decoder gives code {sid[digit]} of digit "
                      f"{digit} probability {prob:.1e}; the network rules it out at any beam width", **common)
    if best < lowest or len(alive) == 0:
        return WhyNot(item, key, "outscored", f"left the beam {where}: filling digit {digit} with code {sid[digit]} "
                      f"(p = {prob:.3f}) would have scored {best:.2f}, below the lowest kept beam ({lowest:.2f}); "
                      f"{len(above)} kept beams scored higher", **common)
    return WhyNot(item, key, "redundant", f"left the beam {where} although filling digit {digit} with code "
                  f"{sid[digit]} (p = {prob:.3f}) would have scored {best:.2f}, above the lowest kept beam "
                  f"({lowest:.2f}): the search kept partial SIDs that still led to new items first", **common)


def _consistent(trace: DenoisingTrace, sid: np.ndarray) -> np.ndarray:
    """``[S, R]``: kept beams whose filled digits all agree with ``sid``."""
    agree = ((trace.tokens == -1) | (trace.tokens == sid[None, None, :])).all(axis=2)
    return agree & trace.alive
