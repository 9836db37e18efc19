"""Collisions: items that the tokenizer gives the same SID, and the repair that makes a catalogue
one-to-one (method.md section 1.5).

Making a catalogue one-to-one is a property of a whole item set, not of one item, so it lives
apart from the tokenizer (``pse.py``), which only measures distances: :func:`repair_collisions`
moves every colliding item but the closest to its nearest free SID.
"""

from __future__ import annotations

import heapq
from typing import Callable

import numpy as np

from diffgrm.errors import DiffGRMError
from diffgrm.sid_info import collision_rates

CHUNK = 1 << 16
"""Items measured at once. Chunks start at multiples of it, so the same item always sees the
same floating-point distances (a BLAS product can round differently in another batch)."""


def collision_groups(codes: np.ndarray) -> list[np.ndarray]:
    """Groups (of two or more item indices) that share one SID, largest group first.

    One sort over the items (no pass per group), so a million items take a second.
    """
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    shared = np.flatnonzero(counts[inverse] > 1)  # items in a group, ascending
    if len(shared) == 0:
        return []
    order = shared[np.argsort(inverse[shared], kind="stable")]  # grouped by SID, ascending within a group
    cuts = np.flatnonzero(np.diff(inverse[order])) + 1
    groups = np.split(order, cuts)
    return sorted(groups, key=lambda g: (-len(g), int(g[0])))


def collision_rate(codes: np.ndarray) -> float:
    """Fraction of items whose SID is shared with at least one other item (a group of 3 counts 3).

    The other count, items beyond the first in each SID, is in :func:`diffgrm.sid_info.collision_rates`.
    """
    return collision_rates(codes)["sharing"]


DistanceFn = Callable[[int, int], np.ndarray]
"""``(start, stop)`` -> squared distances of items ``start..stop-1`` to every code, ``[stop - start, n_digits, K]``."""


def repair_collisions(codes: np.ndarray, distances: np.ndarray | DistanceFn, chunk: int = CHUNK) -> np.ndarray:
    """Make the SIDs unique by moving colliding items to their cheapest free SID.

    In each group of items sharing a SID, the item closest to that SID keeps it; every other
    item takes the free SID with the least extra distortion, found by a best-first walk over
    per-digit rank tuples (0 = its nearest code in that digit). Deterministic.

    ``distances`` is the ``[N, n, K]`` array, or a function giving it for a slice of items: the
    items are then measured ``chunk`` at a time and only colliding items' rows are kept, so a
    million-item catalogue never holds ``N x n x K`` floats.
    """
    n_items, n = codes.shape
    groups = collision_groups(codes)
    out = codes.copy()
    if not groups:
        return out
    slice_of = distances if callable(distances) else (lambda start, stop: distances[start:stop])

    def rows(wanted: np.ndarray):  # (item, its [n, K] distances) for the wanted items, chunk by chunk
        flag = np.zeros(n_items, dtype=bool)
        flag[wanted] = True
        for start in range(0, n_items, chunk):
            picked = np.flatnonzero(flag[start : start + chunk])
            if len(picked):
                block = slice_of(start, min(n_items, start + chunk))
                yield from ((start + int(i), block[i]) for i in picked)

    members = np.concatenate(groups)
    own = {}  # each group member's distance to its own SID
    for item, dist in rows(members):
        own[item] = float(dist[np.arange(n), codes[item]].sum())
        k = dist.shape[1]
    if k**n < n_items:
        raise DiffGRMError(f"{k}^{n} = {k**n} SIDs cannot hold {n_items} distinct items; raise --codebook or --digits")
    movers = [int(i) for g in groups for i in g[np.argsort([own[int(j)] for j in g], kind="stable")][1:]]
    dist_of = {item: dist.copy() for item, dist in rows(np.asarray(movers))}
    taken = {row.tobytes() for row in out}
    for item in movers:  # in group order: the largest groups choose first
        out[item] = _nearest_free(dist_of.pop(item), taken, out.dtype)
        taken.add(out[item].tobytes())
    return out


def _nearest_free(dist: np.ndarray, taken: set[bytes], dtype: np.dtype) -> np.ndarray:
    n, _ = dist.shape
    order = np.argsort(dist, axis=1, kind="stable")
    delta = np.take_along_axis(dist, order, axis=1)
    delta = delta - delta[:, :1]
    start = (0,) * n
    heap: list[tuple[float, tuple[int, ...]]] = [(0.0, start)]
    seen = {start}
    while heap:
        cost, ranks = heapq.heappop(heap)
        sid = order[np.arange(n), ranks].astype(dtype)
        if sid.tobytes() not in taken:
            return sid
        for d in range(n):
            if ranks[d] + 1 < order.shape[1]:
                nxt = ranks[:d] + (ranks[d] + 1,) + ranks[d + 1 :]
                if nxt not in seen:
                    seen.add(nxt)
                    heapq.heappush(heap, (cost + float(delta[d, nxt[d]] - delta[d, ranks[d]]), nxt))
    raise DiffGRMError("no free SID left")  # unreachable: k**n >= n_items is checked first
