"""Which children the catalogue allows a CPD beam, and which items a beam can still reach.

Two questions of the search live here, apart from its core (:mod:`diffgrm.cpd`), because both
are answered by the same sorted list of every item's partial SIDs (:class:`_Matches`):

- the *validity mask*: which (digit, code) children of a partial SID name at least one item
  (:func:`_blocked`), or, deep in the search where a beam matches a handful of items, the list of
  those children, so that only they are scored (:func:`_listed_children`);
- *distinct beams*: which children still reach an item that no better child reaches
  (:meth:`_Matches.novel`).
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import torch

from diffgrm.beams import first_per_group
from diffgrm.seen import Seen
from diffgrm.sid_index import MAX_PATTERNS, MASK, SIDIndex


class Reach(NamedTuple):
    """What :meth:`_Matches.novel` tells about a user's best-first children ``[B, W]``."""

    novel: torch.Tensor  # [B, W] reaches an item no better child reaches
    reach: torch.Tensor  # [B] distinct items the live children reach (at least ``enough`` where one child alone does)
    hollow: torch.Tensor  # [B, W] live, but every item it matches is seen


class _Matches:
    """Which catalogue items match a partial SID, as a contiguous run of one sorted array.

    The validity mask is ``SIDIndex.allowed`` restricted to the candidate digits. Asking the index
    per candidate binary-searches ``beams x digits x codes`` keys (millions per step, the bulk of
    the search time). Deep in the search a beam matches only a handful of items, so it is much
    cheaper to list those items and mark the codes they carry: the same mask, built by a scatter.
    Every item's pattern for every subset of filled digits is keyed by the index (keys tell the
    subsets apart too: a masked digit packs as 0) and sorted into one array, so a beam's matches
    are found by two ``searchsorted`` calls.
    """

    def __init__(self, index: SIDIndex, device: torch.device) -> None:
        n = index.n_digits
        codes = index.codes.to(device)
        self.codes = codes
        keys, items = [], []
        for subset in range(1 << n):
            filled = torch.tensor([(subset >> d) & 1 == 1 for d in range(n)], device=device)
            keys.append(index.keys(torch.where(filled, codes, MASK)))
            items.append(torch.arange(len(codes), device=device))
        keys_all, items_all = torch.cat(keys), torch.cat(items)
        if not index.packed:  # a prefix-only index has no ranked key for other subsets' patterns
            held = keys_all >= 0
            keys_all, items_all = keys_all[held], items_all[held]
        order = torch.argsort(keys_all)
        self.sorted_keys, self.items = keys_all[order], items_all[order]
        # the item a full SID names (the lowest index where SIDs collide): what a search can return
        self.returned = index.item_of(index.codes).to(device)
        self.n_items = len(codes)

    def ranges(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First position and number of matching items per partial SID (by its index key)."""
        lo = torch.searchsorted(self.sorted_keys, keys)
        hi = torch.searchsorted(self.sorted_keys, keys, right=True)
        return lo, hi - lo

    def listed(self, lo: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every (partial SID, matching item) pair: the partial SID's flat position and the item."""
        count = count.reshape(-1)
        total = int(count.sum())
        owner = torch.repeat_interleave(torch.arange(len(count), device=count.device), count, output_size=total)
        start = torch.cumsum(count, 0) - count
        pos = lo.reshape(-1)[owner] + torch.arange(total, device=count.device) - start[owner]
        return owner, self.items[pos]

    def novel(self, keys: torch.Tensor, live: torch.Tensor, enough: int, seen: Seen | None = None) -> Reach:
        """Which live children ``[B, W]`` (index ``keys``) reach an item that no better child of
        their user reaches, how many distinct items each user's live children reach, and which
        live children are *hollow*, every item they match ``seen`` (they can return nothing).

        Columns are best-first. Children with different filled digits can match the same items
        (``{d0=a, d1=b}`` and ``{d2=c, d3=e}`` may both lead only to item ``(a, b, c, e)``), and
        after two or three digits most partial SIDs match a single item. A child all of whose
        items are reachable from better children is *redundant*: it can only end on an item
        another beam already leads to. Redundancy is measured against all better candidates, but
        each item's best child is novel, so an item reachable from a better candidate is also
        reachable from a better novel one: keeping novel children first, every kept novel child
        adds at least one item the beam can still return.

        A child that matches ``enough`` (the beam size) items or more counts as novel without its
        items being listed, nor counted against other children: listing them early in the search
        would be most of the work, and as soon as one is kept the beam can reach ``enough`` items.
        Seen items are left out of the listed ones (a big child is never hollow).
        """
        b, w = keys.shape
        lo, count = self.ranges(keys)
        big = live & (count >= enough)
        owner, item = self.listed(lo, torch.where(live & ~big, count, torch.zeros_like(count)))
        item = self.returned[item]
        hollow = torch.zeros_like(live)
        if seen is not None:
            unseen = ~seen.holds(item, owner // w)
            owner, item = owner[unseen], item[unseen]
            reached = torch.zeros(b * w, dtype=torch.bool, device=keys.device)
            reached[owner] = True
            hollow = live & ~big & ~reached.reshape(b, w)
        # each (user, item) pair's best child: pairs are listed user by user, best column first
        user = owner // w
        best = first_per_group(user * self.n_items + item)
        novel = torch.zeros(b * w, dtype=torch.bool, device=keys.device)
        novel[owner[best]] = True
        reach = torch.bincount(user[best], minlength=b)
        reach = torch.where(big.any(1), reach.clamp(min=enough), reach)
        return Reach(novel.reshape(b, w) | big, reach, hollow)


_MATCHES: "weakref.WeakKeyDictionary[SIDIndex, dict[torch.device, _Matches]]" = weakref.WeakKeyDictionary()


def _matches(index: SIDIndex, device: torch.device) -> _Matches | None:
    """The cached :class:`_Matches` of ``index`` on ``device``; None where every item's pattern
    for every digit subset would be more than ``MAX_PATTERNS``: the validity mask then asks the
    index per code, and the search tells beams apart by their partial SIDs only."""
    per_device = _MATCHES.setdefault(index, {})
    if device not in per_device:
        fits = index.n_items << index.n_digits <= MAX_PATTERNS
        per_device[device] = _Matches(index, device) if fits else None
    return per_device[device]


def _listed_children(index: SIDIndex, tokens: torch.Tensor, parent_keys: torch.Tensor, digits: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The (parent, candidate digit, code) children the catalogue allows, as flat indices into
    the dense ``[B, P * m * K]`` candidates, per user and padded: ``([B, T] indices, [B, T] valid)``.
    None when the parents match so many items that scoring every candidate is cheaper."""
    b, p, m = digits.shape
    k = index.codebook_size
    matches = _matches(index, tokens.device)
    if matches is None:
        return None
    lo, count = matches.ranges(parent_keys)
    if 4 * int(count.sum()) > b * p * k:  # listing pays off below a quarter of the dense candidates
        return None
    owner, items = matches.listed(lo, count)  # flat parent (b * P + p) of each matching item
    code = matches.codes[items[:, None], digits.reshape(b * p, m)[owner]]  # [T, m] the codes they carry
    slots = torch.arange(m, device=tokens.device)
    flat = torch.unique(((owner[:, None] * m + slots) * k + code).reshape(-1))  # sorted: user by user
    per_user = p * m * k
    user = flat // per_user
    counts = torch.bincount(user, minlength=b)
    pos = torch.arange(len(flat), device=flat.device) - (torch.cumsum(counts, 0) - counts)[user]
    width = max(int(counts.max()) if b else 0, 1)
    lookup = torch.zeros(b, width, dtype=torch.long, device=flat.device)
    valid = torch.zeros(b, width, dtype=torch.bool, device=flat.device)
    lookup[user, pos] = flat % per_user
    valid[user, pos] = True
    return lookup, valid


def _blocked(index: SIDIndex, tokens: torch.Tensor, parent_keys: torch.Tensor, digits: torch.Tensor) -> torch.Tensor:
    """Bool ``[B, P, m, K]``: is code c in digit ``digits[b, p, j]`` outside the catalogue for parent ``[b, p]``?

    The complement of ``SIDIndex.allowed`` on the candidate digits only.
    """
    b, p, m = digits.shape
    k = index.codebook_size
    device = tokens.device
    matches = _matches(index, device)
    if matches is not None:
        lo, count = matches.ranges(parent_keys)
        # listing costs one scatter per (matching item, digit), asking the index one binary search
        # per (digit, code): list unless the parents match more items than that
        if int(count.sum()) <= b * p * m * k:
            owner, items = matches.listed(lo, count)
            # [T, m] codes the matching items carry
            code = matches.codes[items[:, None], digits.reshape(b * p, m)[owner]]
            blocked = torch.ones(b * p, m, k, dtype=torch.bool, device=device)
            blocked[owner[:, None], torch.arange(m, device=device), code] = False
            return blocked.reshape(b, p, m, k)
    children = index.child_keys(parent_keys[..., None, None], digits[..., None], torch.arange(k, device=device))
    return ~index.exists_keys(children)

