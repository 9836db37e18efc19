"""Which partial SIDs exist in the catalogue, and which item a full SID names.

Both decoders keep their beams inside the catalogue while they search: CPD may fill any digit
next, so it asks "does some item match these filled digits?" for arbitrary digit subsets; the
autoregressive decoder asks the same question for prefixes (a trie). One structure answers
both: every item contributes its pattern for every subset of digits, each pattern packed into an
int64 key (code + 1 per filled digit, 0 for a masked one, base K + 1), and lookups are a binary
search in the sorted key array. Batched over all beams at once, it is a single ``searchsorted``.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from diffgrm.errors import DiffGRMError

MASK = -1
"""The value of a still-masked digit in a partial SID."""


def masked_digits(tokens: torch.Tensor, m: int) -> torch.Tensor:
    """The first ``m`` masked digits of each partial SID ``[..., n]``, ascending: ``[..., m]``.

    One definition for both sides of the masked-only contract: CPD reads the network's
    masked-only log-probs in exactly this order (``DiffGRM.denoise(..., masked_only=True)``).
    """
    return torch.sort((tokens != MASK).to(torch.uint8), dim=-1, stable=True).indices[..., :m]


class SIDIndex:
    """Existence of partial SIDs and reverse lookup SID -> item, for a catalogue ``codes [N, n]``.

    ``item_of(full_sids)`` returns the item index of each complete SID (``-1`` if none). When the
    catalogue has collisions (``--no-repair``), a shared SID names its lowest item index, as the
    reference implementation's reverse lookup does; the other items can never be recommended.
    """

    def __init__(self, codes: np.ndarray | torch.Tensor, codebook_size: int, subsets: str = "all") -> None:
        codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
        if codes.ndim != 2:
            raise DiffGRMError(f"codes must be [items, digits], got shape {tuple(codes.shape)}")
        self.n_items, self.n_digits = codes.shape
        self.codebook_size = codebook_size
        if (codebook_size + 1) ** self.n_digits >= 2**63:
            raise DiffGRMError(
                f"{self.n_digits} digits x {codebook_size} codes do not fit the 64-bit partial-SID keys"
            )
        self.codes = codes
        self.base = torch.tensor([(codebook_size + 1) ** d for d in range(self.n_digits)], dtype=torch.long)
        n = self.n_digits
        if subsets == "all":
            masks = [m for m in itertools.product([False, True], repeat=n)]
        elif subsets == "prefix":
            masks = [tuple(d < t for d in range(n)) for t in range(n + 1)]
        else:
            raise ValueError(subsets)
        keys = [self.keys(torch.where(torch.tensor(m), codes, MASK)) for m in masks]
        self.sorted_keys = torch.unique(torch.cat(keys))
        full = self.keys(codes)
        order = torch.argsort(full, stable=True)
        self.full_keys, first = _first_of_runs(full[order])
        self.full_items = order[first]

    def keys(self, partial: torch.Tensor) -> torch.Tensor:
        """Pack partial SIDs ``[..., n]`` (``MASK`` for unfilled digits) into int64 keys ``[...]``."""
        return ((partial + 1) * self.base.to(partial.device)).sum(-1)

    def exists(self, partial: torch.Tensor) -> torch.Tensor:
        """Bool ``[...]``: does some item match the filled digits of each partial SID?"""
        return self.exists_keys(self.keys(partial))

    def exists_keys(self, keys: torch.Tensor) -> torch.Tensor:
        sk = self.sorted_keys.to(keys.device)
        pos = torch.searchsorted(sk, keys).clamp(max=len(sk) - 1)
        return sk[pos] == keys

    def item_of(self, sids: torch.Tensor) -> torch.Tensor:
        """Item index of each complete SID ``[..., n]``; ``-1`` where no item has it."""
        keys = self.keys(sids)
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
        k = self.codebook_size
        base = self.base.to(partial.device)
        # keys are sums over digits, so setting masked digit d to c adds (c + 1) * base[d]
        step = (torch.arange(k, device=partial.device) + 1)[None, :] * base[:, None]  # [n, K]
        ok = self.exists_keys(self.keys(partial)[..., None, None] + step)
        return ok & (partial == MASK)[..., :, None]


def _first_of_runs(sorted_vals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique values of a sorted tensor and the position where each first occurs."""
    new = torch.ones_like(sorted_vals, dtype=torch.bool)
    new[1:] = sorted_vals[1:] != sorted_vals[:-1]
    first = torch.nonzero(new).squeeze(1)
    return sorted_vals[first], first
