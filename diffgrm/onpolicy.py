"""How on-policy OCN is: the order its views assume against the order CPD actually fills.

OCN (``ocn.py``, method.md section 3.2) builds its nested views from one confidence pass over the
fully masked SID: view t masks the t least confident digits, so the trajectory it trains unmasks
the digits most confident first. CPD (``cpd.py``, section 4.1) never computes that order: at every
step each beam may fill any masked digit, the network is asked again on the partial SID, and the
beam score decides. The two orders agree exactly when the confidence ranking of the first pass
survives the fills. This module measures how often it does, per user: the digit CPD's best final
beam filled at each step against that digit's rank in OCN's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import permutations

import numpy as np
import torch

from diffgrm.decode import Recommender, pad_histories
from diffgrm.errors import DiffGRMError
from diffgrm.model import DiffGRM
from diffgrm.ocn import digit_confidence
from diffgrm.trace import DenoisingTrace


@torch.no_grad()
def ocn_order(rec: Recommender, histories: Sequence[np.ndarray], batch: int = 256) -> np.ndarray:
    """``[U, n]``: per history, the digits in the order OCN's views unmask them (most confident first
    on the fully masked SID; the reverse of the order in which view t masks them)."""
    model = rec.model
    if not isinstance(model, DiffGRM):
        raise DiffGRMError("OCN's order is a DiffGRM run's: this run is autoregressive")
    out = []
    for s in range(0, len(histories), batch):
        hist = pad_histories(list(histories[s : s + batch]), model.config.max_history, model.device)
        memory, keep = model.encode(hist)
        conf = digit_confidence(model, model.cross_kv(memory), keep)  # [B, n]
        least_first = torch.argsort(conf, dim=1, stable=True)  # the masking order of ocn.make_views
        out.append(least_first.flip(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.n_digits), dtype=np.int64)


def cpd_order(trace: DenoisingTrace, beam: int = 0) -> np.ndarray:
    """``[n]``: the digit final beam ``beam`` filled at each step (one digit per step)."""
    path = trace.lineage(beam)
    return np.array([int(trace.digit[s, path[s]]) for s in range(trace.n_steps)], dtype=np.int64)


def agreement(ocn: np.ndarray, cpd: np.ndarray) -> dict:
    """How often the two orders (``[U, n]`` each) agree, with chance (a uniformly random order) beside.

    ``exact``: share of users whose whole order matches; ``first``: same first digit; ``by_step[s]``:
    same digit at step s; ``rank_matrix[s][j]``: share of users whose step-s digit is the j-th of
    OCN's order (the diagonal is agreement); ``kendall_tau``: mean rank correlation (1 = same order)."""
    ocn, cpd = np.asarray(ocn), np.asarray(cpd)
    if ocn.shape != cpd.shape or ocn.ndim != 2 or not len(ocn):
        raise DiffGRMError(f"orders must be [users, n] of the same shape, got {ocn.shape} and {cpd.shape}")
    users, n = ocn.shape
    rank = np.argsort(ocn, axis=1)  # rank[u, d] = position of digit d in OCN's order
    step_rank = np.take_along_axis(rank, cpd, axis=1)  # [U, n]: OCN's rank of the digit CPD filled at step s
    matrix = np.stack([np.bincount(step_rank[:, s], minlength=n) for s in range(n)]) / users
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    concordant = np.mean([step_rank[:, i] < step_rank[:, j] for i, j in pairs], axis=0)  # [U]
    return {
        "users": int(users), "n_digits": int(n),
        "exact": float((ocn == cpd).all(axis=1).mean()), "exact_chance": 1 / len(list(permutations(range(n)))),
        "first": float((ocn[:, 0] == cpd[:, 0]).mean()), "first_chance": 1 / n,
        "by_step": [float(x) for x in (ocn == cpd).mean(axis=0)],
        "rank_matrix": matrix.round(4).tolist(),
        "kendall_tau": float((2 * concordant - 1).mean()),
    }


def measure(rec: Recommender, histories: Sequence[np.ndarray], *, beam: int = 32, batch: int = 64,
            exclude_seen: bool = True) -> tuple[dict, np.ndarray, np.ndarray]:
    """The agreement over ``histories`` (CPD, confidence order, one digit per pass), with both orders."""
    ocn = ocn_order(rec, histories)
    cpd = []
    for s in range(0, len(histories), batch):
        result = rec.search(list(histories[s : s + batch]), beam=beam, topk=min(10, beam), trace=True,
                            exclude_seen=exclude_seen)
        cpd += [cpd_order(t) for t in result.traces]
    cpd = np.stack(cpd)
    return agreement(ocn, cpd), ocn, cpd
