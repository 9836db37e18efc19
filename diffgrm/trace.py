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
