"""What a decoder did, step by step: the search result and the denoising trace.

Both decoders (CPD in ``cpd.py``, the autoregressive baseline in ``ar.py``) return a
:class:`SearchResult`; asked for it, they also record one :class:`DenoisingTrace` per user. A
trace is plain arrays indexed ``[step, beam, ...]`` so that the notebooks and the app can draw
it without knowing how the search works; :meth:`DenoisingTrace.to_frame` flattens it for pandas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from diffgrm.errors import DiffGRMError
from diffgrm.sid_index import sid_text

STATUSES = ("kept", "duplicate", "not in the catalogue", "only history items", "below the beam", "redundant")
"""What became of a candidate fill, as a trace records it (``Weighed.status`` holds the index):
one of the step's new beams; the same partial SID as a better fill's (another fill order); no
item has it; every item it leads to is in the history (with ``exclude_seen``); scored under the
lowest kept beam; or scored high enough while leading only to items better beams lead to."""
KEPT, DUPLICATE, NOT_IN_CATALOGUE, ONLY_HISTORY, BELOW, REDUNDANT = range(len(STATUSES))


@dataclass
class Weighed:
    """The fills a decoder weighed at each step, ``[S, C]`` per user: every kept one and the best
    others by beam score (``status`` -1 pads). ``parent`` is the beam of the step before (0 at step
    0, the all-masked start), ``logp`` the fill's log-probability, ``score`` the beam score it would
    have (the parent's score plus ``logp``), ``items`` how many catalogue items its partial SID
    still matches (-1: not counted)."""

    parent: np.ndarray  # [S, C] int
    digit: np.ndarray  # [S, C] int
    code: np.ndarray  # [S, C] int
    logp: np.ndarray  # [S, C] float
    score: np.ndarray  # [S, C] float
    status: np.ndarray  # [S, C] int, an index into STATUSES; -1 pads
    items: np.ndarray  # [S, C] int


@dataclass
class DenoisingTrace:
    """One user's search, ``S = n_digits`` steps over ``R = beam`` beams.

    At step s every surviving beam came from beam ``parent[s, r]`` of step s - 1 by filling digit
    ``digit[s, r]`` with code ``code[s, r]``, which the decoder gave probability ``prob[s, r]``;
    ``score[s, r]`` is the beam's summed log-probability after the step and ``tokens[s, r]`` its
    partial SID (-1 = still masked). ``runner_up_codes/probs[s, r, j]`` are the next-best codes
    for the same digit. ``distributions[s, r]`` (``[n, K]``) is what the decoder predicted for
    every digit of the parent beam before this step's fill (with fewer passes than digits, the
    prediction of the pass the step belongs to: ``passes[s]``). Dead beams (fewer valid candidates
    than the beam size) have ``alive[s, r] = False``.
    """

    decoder: str  # "cpd" or "ar"
    order: str  # "confidence", "fixed", "random" or "left-to-right"
    parent: np.ndarray  # [S, R] int
    digit: np.ndarray  # [S, R] int
    code: np.ndarray  # [S, R] int
    prob: np.ndarray  # [S, R] float
    score: np.ndarray  # [S, R] float
    tokens: np.ndarray  # [S, R, n] int
    alive: np.ndarray  # [S, R] bool
    runner_up_codes: np.ndarray  # [S, R, J] int
    runner_up_probs: np.ndarray  # [S, R, J] float
    distributions: np.ndarray  # [S, R, n, K] float
    passes: np.ndarray | None = None  # [S] the network pass each step's fill came from (None: one per step)
    items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # final Top-K items
    item_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))  # their scores
    weighed: Weighed | None = None  # the fills each step weighed and what became of them

    @property
    def n_steps(self) -> int:
        return int(self.digit.shape[0])

    @property
    def step_passes(self) -> np.ndarray:
        """``[S]`` the network pass each step's fill came from (one pass per step unless ``passes`` says otherwise)."""
        return np.arange(self.n_steps) if self.passes is None else np.asarray(self.passes)

    @property
    def n_passes(self) -> int:
        """Network passes the search took (CPD with ``steps`` < n fills several digits per pass)."""
        return int(self.step_passes.max()) + 1

    @property
    def beam(self) -> int:
        return int(self.digit.shape[1])

    def to_frame(self) -> pd.DataFrame:
        """One row per (step, beam): step, beam, parent, digit, code, prob, score, sid, runners-up."""
        s, r = self.digit.shape
        steps, beams = np.meshgrid(np.arange(s), np.arange(r), indexing="ij")
        frame = pd.DataFrame(
            {
                "step": steps.ravel(),
                "beam": beams.ravel(),
                "parent": self.parent.ravel(),
                "digit": self.digit.ravel(),
                "code": self.code.ravel(),
                "prob": self.prob.ravel(),
                "score": self.score.ravel(),
                "alive": self.alive.ravel(),
                "sid": [tuple(int(c) for c in t) for t in self.tokens.reshape(s * r, -1)],
                "runner_up_codes": [tuple(int(c) for c in t) for t in self.runner_up_codes.reshape(s * r, -1)],
                "runner_up_probs": [tuple(float(p) for p in t) for t in self.runner_up_probs.reshape(s * r, -1)],
            }
        )
        return frame[frame["alive"]].reset_index(drop=True)

    def confidence(self, beam: int = 0) -> pd.DataFrame:
        """Per step and digit along the lineage of final beam ``beam``: max probability and entropy (bits)."""
        lineage = self.lineage(beam)
        rows = []
        for s, r in enumerate(lineage):
            p = self.distributions[s, r]
            ent = -(p * np.log2(np.clip(p, 1e-12, 1))).sum(-1)
            for d in range(p.shape[0]):
                rows.append({"step": s, "digit": d, "max_prob": float(p[d].max()), "entropy_bits": float(ent[d]),
                             "filled_now": int(self.digit[s, r]) == d})
        return pd.DataFrame(rows)

    def fills_table(self, step: int, limit: int | None = None) -> pd.DataFrame:
        """The fills step ``step`` (0-based) weighed, best beam score first, and what became of each
        (:data:`STATUSES`); the fill on the way to final beam #1 is marked ``on_path`` and always
        listed. Columns: rank, parent (1-based rank of the parent beam, 0 at step 0), parent_sid,
        digit, code, prob, beam_score, sid, items, status, on_path; the best ``limit`` (None: all)."""
        if self.weighed is None:
            raise DiffGRMError("this trace holds no weighed fills (decode with trace=True to record them)")
        if not 0 <= step < self.n_steps:
            raise DiffGRMError(f"step must be in 0..{self.n_steps - 1}, got {step}")
        w = self.weighed
        cols = np.flatnonzero(w.status[step] >= 0)
        cols = cols[np.argsort(-w.score[step, cols], kind="stable")]
        path = self.lineage(0)[step]
        on_path = ((w.parent[step, cols] == (self.parent[step, path] if step else 0))
                   & (w.digit[step, cols] == self.digit[step, path]) & (w.code[step, cols] == self.code[step, path])
                   & (w.status[step, cols] == KEPT))
        shown = np.arange(len(cols) if limit is None else min(limit, len(cols)))
        mine = np.flatnonzero(on_path)
        if len(mine) and mine[0] >= len(shown):  # the path's fill is always listed
            shown = np.append(shown, mine[0])
        rows = []
        for rank in shown.tolist():
            c = cols[rank]
            par, digit, code = int(w.parent[step, c]), int(w.digit[step, c]), int(w.code[step, c])
            before = self.tokens[step - 1, par] if step else np.full(self.tokens.shape[2], -1)
            after = before.copy()
            after[digit] = code
            rows.append({"rank": rank + 1, "parent": par + 1 if step else 0, "parent_sid": sid_text(before),
                         "digit": digit, "code": code, "prob": float(np.exp(w.logp[step, c])),
                         "beam_score": float(w.score[step, c]), "sid": sid_text(after), "items": int(w.items[step, c]),
                         "status": STATUSES[int(w.status[step, c])], "on_path": bool(on_path[rank])})
        return pd.DataFrame(rows, columns=["rank", "parent", "parent_sid", "digit", "code", "prob", "beam_score",
                                           "sid", "items", "status", "on_path"])

    def lineage(self, beam: int = 0) -> list[int]:
        """Beam index at each step on the way to final beam ``beam`` (the parent of step s is the beam at s - 1)."""
        out = [beam]
        for s in range(self.n_steps - 1, 0, -1):
            out.append(int(self.parent[s, out[-1]]))
        return out[::-1]


@dataclass
class SearchResult:
    """Top-K per user: ``items [B, K]`` (-1 where fewer than K valid SIDs were found), their
    ``scores [B, K]`` (summed log-probabilities, descending) and ``sids [B, K, n]``."""

    items: torch.Tensor
    scores: torch.Tensor
    sids: torch.Tensor
    traces: list[DenoisingTrace] | None = None


def check_beam(beam: int, topk: int) -> None:
    """The one "beam >= K" rule, for the searches, the command line and the app alike: each beam
    ends on at most one item, so fewer beams than K cannot fill a Top-K."""
    if topk < 1:
        raise DiffGRMError(f"K must be at least 1, got {topk}")
    if beam < topk:
        raise DiffGRMError(f"the beam ({beam}) must be at least K ({topk}): each beam ends on at most one item")


def check_search_sizes(batch_size: int, beam: int, topk: int, runners_up: int) -> None:
    """The argument checks both decoders share: one clear error instead of an empty result."""
    if batch_size < 1:
        raise DiffGRMError(f"batch_size must be at least 1, got {batch_size}")
    check_beam(beam, topk)
    if runners_up < 0:
        raise DiffGRMError(f"runners_up must be 0 or more, got {runners_up}")
