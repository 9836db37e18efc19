"""Recall@K and NDCG@K for next-item recommendation, at item level and at SID level.

Protocol (as in the DiffGRM / TIGER line of work): each user has exactly one held-out target,
the model ranks the full catalogue (no negative sampling), and

* Recall@K = Hit@K = 1 if the target is among the first K recommendations, else 0;
* NDCG@K = 1 / log2(rank + 1) if rank <= K, else 0 (one relevant item, so the ideal DCG is 1);

both averaged over *all* users: a user whose list misses the target (or is shorter than K, or
empty) counts as 0. Lists may be padded with ``-1`` (items) or rows of ``-1`` (SIDs).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from diffgrm.errors import DiffGRMError


def _np(x, name: str) -> np.ndarray:
    """A numpy view of a numpy array, torch tensor or nested list."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - ragged lists etc.
        raise DiffGRMError(f"{name} must be an array, got {type(x).__name__}: {exc}") from exc


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or any(k < 1 for k in ks):
        raise DiffGRMError(f"ks must be positive cutoffs, got {ks}")
    return ks


def _first_hit(match: np.ndarray) -> np.ndarray:
    """1-based position of the first True in each row of ``match [U, L]``; 0 where none."""
    if match.shape[1] == 0:
        return np.zeros(match.shape[0], dtype=np.int64)
    found = match.any(axis=1)
    return np.where(found, match.argmax(axis=1) + 1, 0).astype(np.int64)


def target_ranks(ranked_items, targets) -> np.ndarray:
    """1-based rank of each user's target in its list ``ranked_items [U, L]`` (``-1`` = padding).

    Returns ``[U]`` int64, 0 where the target is not in the list. A duplicate item counts at its
    first position. A target of ``-1`` is never found.
    """
    ranked = _np(ranked_items, "ranked_items")
    tgt = _np(targets, "targets")
    if ranked.ndim != 2:
        raise DiffGRMError(f"ranked_items must be [users, list length], got shape {ranked.shape}")
    if tgt.ndim != 1 or tgt.shape[0] != ranked.shape[0]:
        raise DiffGRMError(
            f"targets must be [users] = [{ranked.shape[0]}] to match ranked_items {ranked.shape}, got shape {tgt.shape}"
        )
    match = (ranked == tgt[:, None]) & (ranked >= 0)
    return _first_hit(match)


def metrics_from_ranks(ranks, ks: Iterable[int] = (5, 10)) -> dict[str, float]:
    """``recall@k`` and ``ndcg@k`` for each k from 1-based ranks ``[U]`` (0 = not found)."""
    ranks = _np(ranks, "ranks").astype(np.int64)
    ks = _check_ks(ks)
    if ranks.ndim != 1 or ranks.shape[0] == 0:
        raise DiffGRMError(f"need ranks for at least one user as a 1-d array, got shape {ranks.shape}")
    out: dict[str, float] = {}
    for k in ks:
        hit = (ranks >= 1) & (ranks <= k)
        out[f"recall@{k}"] = float(hit.mean())
    for k in ks:
        hit = (ranks >= 1) & (ranks <= k)
        gain = np.zeros(ranks.shape, dtype=np.float64)
        gain[hit] = 1.0 / np.log2(ranks[hit] + 1.0)
        out[f"ndcg@{k}"] = float(gain.mean())
    return out


def ranking_metrics(ranked_items, targets, ks: Iterable[int] = (5, 10)) -> dict[str, float]:
    """Item-level ``{"recall@k", "ndcg@k"}`` for each k, averaged over all users.

    ``ranked_items [U, L]`` item indices best first (``-1`` = padding), ``targets [U]``.
    """
    return metrics_from_ranks(target_ranks(ranked_items, targets), ks)


def sid_target_ranks(ranked_sids, target_sids) -> np.ndarray:
    """1-based position of the first generated SID equal to the target's SID; 0 if none.

    ``ranked_sids [U, L, n]`` (rows containing ``-1`` are padding), ``target_sids [U, n]``.
    Duplicates count at their first position; positions are those of the list as given (later
    entries do not move up when an earlier one is a duplicate).
    """
    ranked = _np(ranked_sids, "ranked_sids")
    tgt = _np(target_sids, "target_sids")
    if ranked.ndim != 3:
        raise DiffGRMError(f"ranked_sids must be [users, list length, digits], got shape {ranked.shape}")
    if tgt.ndim != 2 or tgt.shape[0] != ranked.shape[0] or tgt.shape[1] != ranked.shape[2]:
        raise DiffGRMError(
            f"target_sids must be [users, digits] = [{ranked.shape[0]}, {ranked.shape[2]}] to match ranked_sids "
            f"{ranked.shape}, got shape {tgt.shape}"
        )
    real = (ranked >= 0).all(axis=2)
    match = (ranked == tgt[:, None, :]).all(axis=2) & real
    return _first_hit(match)


def sid_ranking_metrics(ranked_sids, target_sids, ks: Iterable[int] = (5, 10)) -> dict[str, float]:
    """SID-level ``{"recall@k", "ndcg@k"}``: a hit when a generated SID equals the target's SID.

    This is how the reference code scores. Without collisions it equals the item-level metric.
    With SID collisions (several items sharing one SID, e.g. ``--no-repair``) it credits every
    item that shares the generated SID, so a model is rewarded for the target even though the
    SID cannot tell it apart from its neighbours: the numbers are inflated relative to the
    item-level ones and are not comparable with them. Report which level was used.
    """
    return metrics_from_ranks(sid_target_ranks(ranked_sids, target_sids), ks)


def popularity_ranking(train_targets, n_items: int, k: int) -> np.ndarray:
    """The ``k`` most frequent items of ``train_targets`` (ties: lower index first), a baseline.

    Returns ``[k]`` int64; padded with ``-1`` when ``k > n_items``. Recommend the same list to
    every user: ``np.broadcast_to(pop, (U, k))``.
    """
    t = _np(train_targets, "train_targets").reshape(-1)
    if n_items < 1 or k < 1:
        raise DiffGRMError(f"n_items and k must be positive, got n_items={n_items}, k={k}")
    if t.size and (not np.issubdtype(t.dtype, np.integer) or t.min() < 0 or t.max() >= n_items):
        raise DiffGRMError(f"train_targets must be item indices in [0, {n_items}), got values outside it")
    counts = np.bincount(t.astype(np.int64), minlength=n_items)
    order = np.argsort(-counts, kind="stable")[:k].astype(np.int64)
    if order.shape[0] < k:
        order = np.concatenate([order, np.full(k - order.shape[0], -1, dtype=np.int64)])
    return order


def popularity_metrics(train_targets, targets, n_items: int, ks: Iterable[int] = (5, 10),
                       histories: Sequence[np.ndarray] | None = None) -> dict[str, float]:
    """Item-level metrics of recommending the most frequent training targets to every user: the
    floor a personal recommender has to clear. With ``histories`` (one array of item indices per
    user) each user gets the most frequent items that are not in their own history."""
    ks = tuple(ks)
    targets = _np(targets, "targets").reshape(-1)
    if histories is None:
        pop = popularity_ranking(train_targets, n_items, max(ks))
        return ranking_metrics(np.broadcast_to(pop, (len(targets), len(pop))), targets, ks)
    if len(histories) != len(targets):
        raise DiffGRMError(f"{len(histories)} histories for {len(targets)} targets")
    longest = max((len(h) for h in histories), default=0)
    pop = popularity_ranking(train_targets, n_items, max(ks) + longest)
    ranked = np.full((len(targets), max(ks)), -1, dtype=np.int64)
    for u, h in enumerate(histories):
        unseen = pop[~np.isin(pop, h) & (pop >= 0)][: max(ks)]
        ranked[u, : len(unseen)] = unseen
    return ranking_metrics(ranked, targets, ks)


def combined_score(metrics: Mapping[str, float]) -> float:
    """The early-stopping criterion: ``0.8 * ndcg@10 + 0.2 * recall@10``."""
    missing = [key for key in ("ndcg@10", "recall@10") if key not in metrics]
    if missing:
        raise DiffGRMError(f"combined_score needs {', '.join(missing)} (compute metrics with 10 in ks)")
    return 0.8 * float(metrics["ndcg@10"]) + 0.2 * float(metrics["recall@10"])
