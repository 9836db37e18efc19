"""How much information do the digits of a SID carry about the item?

A SID of ``n`` digits with ``K`` codes each could tell ``n * log2 K`` bits, but naming one of ``N``
items needs only ``log2 N``: the rest is redundancy, digits that repeat what the others already
say. These diagnostics measure it on the empirical distribution over items (every item counts
once, so "the entropy of a digit" is how evenly the items spread over its codes):

* ``prefix_entropy_bits``: H(d_0, ..., d_{k-1}) for k = 1..n. It never falls as k grows and never
  exceeds ``log2 N``; where it flattens, later digits add nothing new.
* ``conditional_entropy_bits``: H(d_i | all other digits) = H(all) - H(all but d_i), the bits only
  digit i holds. Zero means the other digits already determine it.
* ``collision_rates``: two ways of counting items that share a SID (papers use both).

Everything is linear in the number of items (up to the sort inside ``np.unique``): rows are packed
into dense integer ids one column at a time, never into a ``K^n`` table or an item x item matrix.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from diffgrm.errors import DiffGRMError


def _check(codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) == 0 or codes.shape[1] == 0:
        raise DiffGRMError(f"codes must be a non-empty [items, digits] array, got shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0:
        raise DiffGRMError("codes must be non-negative integers")
    return codes.astype(np.int64, copy=False)


def row_ids(codes: np.ndarray, digits: Sequence[int] | None = None) -> np.ndarray:
    """A dense id per item, equal for two items exactly when they agree on ``digits`` (all if None).

    Columns are folded in one at a time (``id * base + code``, then re-densified with
    ``np.unique``), so the ids stay below the number of items and never overflow int64.
    """
    codes = _check(codes)
    cols = range(codes.shape[1]) if digits is None else digits
    ids = np.zeros(len(codes), dtype=np.int64)
    for d in cols:
        column = codes[:, d]
        ids = ids * (int(column.max()) + 1) + column
        ids = np.unique(ids, return_inverse=True)[1].reshape(-1)
    return ids


def _entropy_of_ids(ids: np.ndarray) -> float:
    """Entropy in bits of the empirical distribution of ``ids`` (each entry counts once)."""
    counts = np.bincount(ids).astype(np.float64)
    counts = counts[counts > 0]
    n = counts.sum()
    return float(max(math.log2(n) - (counts * np.log2(counts)).sum() / n, 0.0))


def entropy_bits(codes: np.ndarray, digits: Sequence[int] | None = None) -> float:
    """Joint entropy in bits of ``digits`` (all digits if None; no digits: 0 bits)."""
    if digits is not None and len(digits) == 0:
        return 0.0
    return _entropy_of_ids(row_ids(codes, digits))


def prefix_entropy_bits(codes: np.ndarray) -> list[float]:
    """H(first k digits) for k = 1..n: how fast the digits, read left to right, single out an item."""
    codes = _check(codes)
    return [entropy_bits(codes, range(k)) for k in range(1, codes.shape[1] + 1)]


def conditional_entropy_bits(codes: np.ndarray) -> list[float]:
    """H(d_i | every other digit) = H(all) - H(all but d_i), per digit: the bits only digit i holds."""
    codes = _check(codes)
    n = codes.shape[1]
    joint = entropy_bits(codes)
    return [max(joint - entropy_bits(codes, [d for d in range(n) if d != i]), 0.0) for i in range(n)]


def collision_rates(codes: np.ndarray) -> dict[str, float]:
    """Share of items caught in SID collisions, counted two ways.

    ``sharing``: items whose SID is held by at least one other item (a group of 3 counts 3); this
    is ``pse.collision_rate``. ``beyond_first``: ``(items - distinct SIDs) / items``, the items that
    would have to move for the SIDs to be unique (a group of 3 counts 2), the figure the reference
    code and several papers print. Always ``sharing / 2 <= beyond_first <= sharing``.
    """
    ids = row_ids(codes)
    counts = np.bincount(ids)
    n = len(ids)
    return {
        "sharing": float(counts[counts > 1].sum() / n),
        "beyond_first": float((n - len(counts)) / n),
    }


def max_bits(n_items: int) -> float:
    """``log2(n_items)``: the most any set of digits can tell about which item it is."""
    if n_items < 1:
        raise DiffGRMError(f"n_items must be at least 1, got {n_items}")
    return math.log2(n_items)


def sid_information(codes: np.ndarray) -> dict[str, object]:
    """All of the above for one set of codes, as a JSON-ready dict.

    ``digit_bits`` are the digits' own entropies H(d_i); ``redundancy_bits`` is their sum minus the
    joint entropy (the total correlation: bits the digits spend repeating one another).
    """
    codes = _check(codes)
    n_items, n = codes.shape
    digit = [entropy_bits(codes, [d]) for d in range(n)]
    prefix = prefix_entropy_bits(codes)
    rates = collision_rates(codes)
    return {
        "n_items": int(n_items),
        "distinct_sids": int(row_ids(codes).max()) + 1,
        "max_bits": max_bits(n_items),
        "prefix_bits": prefix,
        "conditional_bits": conditional_entropy_bits(codes),
        "digit_bits": digit,
        "redundancy_bits": max(sum(digit) - prefix[-1], 0.0),
        "collision_rate_sharing": rates["sharing"],
        "collision_rate_beyond_first": rates["beyond_first"],
    }
