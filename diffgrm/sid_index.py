"""Which partial SIDs exist in the catalogue, and which item a full SID names.

Both decoders keep their beams inside the catalogue while they search: CPD may fill any digit
next, so it asks "does some item match these filled digits?" for arbitrary digit subsets; the
autoregressive decoder asks the same question for prefixes (a trie). One structure answers
both: every item contributes its pattern for every subset of digits, each pattern packed into an
int64 key (code + 1 per filled digit, 0 for a masked one, base K + 1), and lookups are a binary
search in the sorted key array. Batched over all beams at once, it is a single ``searchsorted``.

When ``(K + 1) ** n`` does not fit 64 bits (8 digits x 256 codes), the keys stay exact: the low
digits are packed as above and the pattern of the digits above them is replaced by its rank among
the patterns the catalogue holds (:class:`_RankedKeys`). A partial SID whose high digits match no
catalogue pattern gets the key :data:`ABSENT`, which no stored key equals. Callers never add to
keys themselves: :meth:`SIDIndex.child_keys` sets one digit of a key.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from diffgrm.errors import DiffGRMError

MASK = -1
"""The value of a still-masked digit in a partial SID."""

MASK_GLYPH = "?"
"""How a still-masked digit is written wherever a SID is shown as text."""

ABSENT = -1
"""The key of a partial SID the index can tell holds no catalogue item (ranked keys only)."""

MAX_PATTERNS = 1 << 28
"""Most (item, digit subset) patterns an index holds: 2 GiB of keys while it is built."""

_FITS = 2**63  # every key is below this


def sid_text(sid) -> str:
    """A (partial) SID as every table, figure and command line shows it: ``12-200-?-45``."""
    return "-".join(MASK_GLYPH if int(c) < 0 else str(int(c)) for c in sid)


def masked_digits(tokens: torch.Tensor, m: int) -> torch.Tensor:
    """The first ``m`` masked digits of each partial SID ``[..., n]``, ascending: ``[..., m]``.

    One definition for both sides of the masked-only contract: CPD reads the network's
    masked-only log-probs in exactly this order (``DiffGRM.denoise_masked``).
    """
    return torch.sort((tokens != MASK).to(torch.uint8), dim=-1, stable=True).indices[..., :m]


class SIDIndex:
    """Existence of partial SIDs and reverse lookup SID -> item, for a catalogue ``codes [N, n]``.

    ``item_of(full_sids)`` returns the item index of each complete SID (``-1`` if none). When the
    catalogue has collisions (``--no-repair``), a shared SID names its lowest item index, as the
    reference implementation's reverse lookup does; the other items can never be recommended.

    ``subsets``: "all" (every subset of digits: CPD) or "prefix" (the AR decoder's prefixes only).
    ``packed`` tells whether keys are the plain base-(K + 1) packing (``base``); otherwise they are
    ranked (see the module docstring) and ``base`` is None.
    """

    def __init__(self, codes: np.ndarray | torch.Tensor, codebook_size: int, subsets: str = "all") -> None:
        codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
        if codes.ndim != 2:
            raise DiffGRMError(f"codes must be [items, digits], got shape {tuple(codes.shape)}")
        self.n_items, self.n_digits = codes.shape
        self.codebook_size = codebook_size
        n = self.n_digits
        if subsets == "all":
            masks = [m for m in itertools.product([False, True], repeat=n)]
        elif subsets == "prefix":
            masks = [tuple(d < t for d in range(n)) for t in range(n + 1)]
        else:
            raise ValueError(subsets)
        self.subsets = subsets
        if self.n_items * len(masks) > MAX_PATTERNS:
            raise DiffGRMError(
                f"the catalogue index would hold {self.n_items:,} items x {len(masks):,} digit subsets = "
                f"{self.n_items * len(masks):,} partial SIDs, more than {MAX_PATTERNS:,}: CPD may fill any digit "
                f"first, so it indexes all 2**{n} subsets of the {n} digits; use fewer digits per SID "
                f"(--digits, e.g. 8) or the AR decoder (--model ar), which indexes the {n + 1} prefixes only"
            )
        self.codes = codes
        self.packed = (codebook_size + 1) ** n < _FITS
        if self.packed:
            self.base = torch.tensor([(codebook_size + 1) ** d for d in range(n)], dtype=torch.long)
            self._ranked = None
        else:
            self.base = None
            self._ranked = _RankedKeys(codes, codebook_size, masks)
        keys = [self.keys(torch.where(torch.tensor(m), codes, MASK)) for m in masks]
        self.sorted_keys = torch.unique(torch.cat(keys))
        full = self.keys(codes)
        order = torch.argsort(full, stable=True)
        self.full_keys, first = _first_of_runs(full[order])
        self.full_items = order[first]

    def keys(self, partial: torch.Tensor) -> torch.Tensor:
        """Pack partial SIDs ``[..., n]`` (``MASK`` for unfilled digits) into int64 keys ``[...]``.

        Exact: two partial SIDs the catalogue holds share a key only if they are equal. With ranked
        keys, a partial SID whose high digits match no catalogue pattern gets :data:`ABSENT`."""
        if self._ranked is not None:
            return self._ranked.keys(partial)
        return ((partial + 1) * self.base.to(partial.device)).sum(-1)

    def child_keys(self, keys: torch.Tensor, digit: torch.Tensor | int, code: torch.Tensor | int) -> torch.Tensor:
        """Keys of the partial SIDs ``keys`` with masked ``digit`` set to ``code`` (all three broadcast).

        ``digit`` must be masked in the parent (elsewhere the result is meaningless). A parent key
        :data:`ABSENT` has absent children."""
        digit = torch.as_tensor(digit, device=keys.device)
        code = torch.as_tensor(code, device=keys.device)
        if self._ranked is not None:
            return self._ranked.child_keys(keys, digit, code)
        return keys + (code + 1) * self.base.to(keys.device)[digit]

    def ids(self, partial: torch.Tensor) -> torch.Tensor:
        """Int64 ``[...]`` equal exactly where the partial SIDs ``[..., n]`` are equal, whether the
        catalogue holds them or not: the keys where they are the plain packing, otherwise each
        distinct row's rank in this call (compare ids from one call only)."""
        if self._ranked is None:
            return self.keys(partial)
        rows = partial.reshape(-1, self.n_digits)
        return torch.unique(rows, dim=0, return_inverse=True)[1].reshape(partial.shape[:-1])

    def exists(self, partial: torch.Tensor) -> torch.Tensor:
        """Bool ``[...]``: does some item match the filled digits of each partial SID?"""
        return self.exists_keys(self.keys(partial))

    def exists_keys(self, keys: torch.Tensor) -> torch.Tensor:
        sk = self.sorted_keys.to(keys.device)
        pos = torch.searchsorted(sk, keys).clamp(max=len(sk) - 1)
        return sk[pos] == keys

    def item_of(self, sids: torch.Tensor) -> torch.Tensor:
        """Item index of each complete SID ``[..., n]``; ``-1`` where no item has it."""
        return self.item_of_keys(self.keys(sids))

    def item_of_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """Item index named by each complete SID's key; ``-1`` where no item has it."""
        fk = self.full_keys.to(keys.device)
        pos = torch.searchsorted(fk, keys).clamp(max=len(fk) - 1)
        hit = fk[pos] == keys
        return torch.where(hit, self.full_items.to(keys.device)[pos], torch.full_like(keys, -1))

    def allowed(self, partial: torch.Tensor) -> torch.Tensor:
        """Bool ``[..., n, K]``: may masked digit d take code c given the filled digits?

        Filled digits are never allowed (they are committed). This is the validity mask of both
        decoders: a candidate (d, c) survives only if some catalogue item matches the beam's filled
        digits and has code c in digit d.
        """
        device = partial.device
        digits = torch.arange(self.n_digits, device=device)[:, None]
        codes = torch.arange(self.codebook_size, device=device)[None, :]
        ok = self.exists_keys(self.child_keys(self.keys(partial)[..., None, None], digits, codes))
        return ok & (partial == MASK)[..., :, None]


class _RankedKeys:
    """Exact int64 keys of partial SIDs when ``(K + 1) ** n`` does not fit 64 bits.

    Digits ``[0, h)`` are packed in base K + 1 (``lo``, below ``span = (K + 1) ** h``); the digits
    above are cut into chunks (``levels``, top chunk first), each small enough to pack. The top
    chunk's packed pattern is replaced by its rank among the patterns the catalogue holds there;
    each lower chunk's packed pattern times the number of ranks above plus the rank above is ranked
    in turn. The key is ``lo + span * rank``: injective over the catalogue's partial SIDs, and
    :data:`ABSENT` for a partial SID whose pattern above ``h`` the catalogue does not hold. ``h``
    is the widest that fits (one chunk above it for 8 digits x 256 codes).
    """

    def __init__(self, codes: torch.Tensor, k: int, masks: list[tuple[bool, ...]]) -> None:
        n = codes.shape[1]
        widest = max(w for w in range(1, n + 1) if (k + 1) ** w < _FITS)
        for h in range(min(n - 1, widest), 0, -1):
            levels = _levels(codes, k, masks, h)
            if levels is not None and (k + 1) ** h * len(levels[-1][3]) < _FITS:
                break
        else:
            raise DiffGRMError(
                f"{n} digits x {k} codes: partial SIDs of this catalogue have no exact 64-bit key; "
                f"use fewer digits per SID (--digits) or a smaller codebook (--codebook)"
            )
        self.h, self.span = h, (k + 1) ** h
        self.lo_base = torch.tensor([(k + 1) ** d for d in range(h)], dtype=torch.long)
        self.levels = levels  # (start, end, base [end - start], values sorted, ranks above), top first
        self._on: dict[torch.device, tuple] = {}

    def _tensors(self, device: torch.device) -> tuple:
        if device not in self._on:
            self._on[device] = (self.lo_base.to(device),
                                [(s, e, b.to(device), v.to(device), r) for s, e, b, v, r in self.levels])
        return self._on[device]

    def keys(self, partial: torch.Tensor) -> torch.Tensor:
        lo_base, levels = self._tensors(partial.device)
        lo = ((partial[..., : self.h] + 1) * lo_base).sum(-1)
        rank = _suffix_rank(levels, partial)
        return torch.where(rank >= 0, lo + self.span * rank, ABSENT)

    def child_keys(self, keys: torch.Tensor, digit: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        lo_base, levels = self._tensors(keys.device)
        known = keys >= 0
        lo, rank = keys.clamp(min=0) % self.span, keys.clamp(min=0) // self.span
        packs = [torch.empty(0)] * len(levels)
        for i in reversed(range(len(levels))):  # unrank the parents, lowest chunk first
            _, _, _, values, above = levels[i]
            value = values[rank.clamp(max=len(values) - 1)]
            packs[i], rank = value // above, value % above
        step = code + 1
        lo = lo + torch.where(digit < self.h, step * lo_base[digit.clamp(max=self.h - 1)], 0)
        rank = None
        for (start, end, base, values, above), pack in zip(levels, packs):  # set the digit, rank again
            inside = (digit >= start) & (digit < end)
            pack = pack + torch.where(inside, step * base[(digit - start).clamp(0, end - start - 1)], 0)
            rank = _lookup(values, pack if rank is None else torch.where(rank >= 0, pack * above + rank, -1))
        return torch.where(known & (rank >= 0), lo + self.span * rank, ABSENT)


def _levels(codes: torch.Tensor, k: int, masks: list[tuple[bool, ...]], h: int) -> list | None:
    """The chunks of digits ``[h, n)``, top first, with the sorted values each ranks; None if a
    chunk of one digit cannot fit beside the ranks above it."""
    n = codes.shape[1]
    levels: list = []
    end, above = n, 1
    while end > h:
        width = 0
        while end - width > h and (k + 1) ** (width + 1) * above < _FITS:
            width += 1
        if width == 0:
            return None
        start = end - width
        base = torch.tensor([(k + 1) ** j for j in range(width)], dtype=torch.long)
        values = []
        for sub in sorted({m[start:] for m in masks}):  # the subsets' patterns of digits [start, n)
            partial = torch.full_like(codes, MASK)
            partial[:, start:] = torch.where(torch.tensor(sub), codes[:, start:], MASK)
            pack = ((partial[:, start:end] + 1) * base).sum(-1)
            rank = _suffix_rank(levels, partial)
            values.append(pack if not levels else pack * above + rank)
        values = torch.unique(torch.cat(values))
        levels.append((start, end, base, values, above))
        end, above = start, len(values)
    return levels


def _suffix_rank(levels: list, partial: torch.Tensor) -> torch.Tensor:
    """Rank of each partial SID's pattern above the packed digits; -1 where the catalogue has none."""
    rank = None
    for start, end, base, values, above in levels:
        pack = ((partial[..., start:end] + 1) * base).sum(-1)
        rank = _lookup(values, pack if rank is None else torch.where(rank >= 0, pack * above + rank, -1))
    return rank


def _lookup(values: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Position of each query in the sorted ``values``; -1 where it is not there."""
    pos = torch.searchsorted(values, query).clamp(max=len(values) - 1)
    return torch.where(values[pos] == query, pos, -1)


def _first_of_runs(sorted_vals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique values of a sorted tensor and the position where each first occurs."""
    new = torch.ones_like(sorted_vals, dtype=torch.bool)
    new[1:] = sorted_vals[1:] != sorted_vals[:-1]
    first = torch.nonzero(new).squeeze(1)
    return sorted_vals[first], first
