"""Each user's history as the searches ask about it, to keep seen items out of the Top-K.

No user of Beauty or MovieLens interacts with the same item twice, so recommending a history
item wastes a slot. With ``seen`` (item indices ``[B, L]``, padded with -1) both decoders treat a
complete SID that names a history item as outside the catalogue: the search refills the slot
with the next best candidate instead of dropping the item afterwards, and partial SIDs whose
every item is seen are pruned where that is cheap to tell.
"""

from __future__ import annotations

import torch

from diffgrm.errors import DiffGRMError
from diffgrm.sid_index import SIDIndex


class Seen:
    """The items each of ``batch_size`` users has seen, ``items [B, L]`` (-1 pads)."""

    def __init__(self, index: SIDIndex, items: torch.Tensor, batch_size: int) -> None:
        items = torch.as_tensor(items)
        if items.ndim != 2 or items.shape[0] != batch_size or items.is_floating_point():
            raise DiffGRMError(f"seen must be item indices [batch ({batch_size}), history] padded with -1, "
                               f"got {items.dtype} of shape {tuple(items.shape)}")
        items = items.long()
        if bool(((items < -1) | (items >= index.n_items)).any()):
            raise DiffGRMError(f"seen holds an item index outside 0..{index.n_items - 1} (-1 pads)")
        self.n_items = index.n_items
        users = torch.arange(batch_size, device=items.device)[:, None].expand_as(items)
        self.keys = torch.unique((users * self.n_items + items)[items >= 0])  # sorted (user, item)
        # a complete SID is excluded when the item it names is seen (where SIDs collide, a seen
        # item other than the lowest-indexed one excludes nothing): these are the seen items that
        # their own SID names, and their SIDs
        codes = index.codes.to(items.device)[items.clamp(min=0)]  # [B, L, n]
        self.named = torch.where((items >= 0) & (index.item_of(codes) == items), items, -1)
        self.codes = codes

    def holds(self, items: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """Bool, shaped like ``items``: has the user seen the item? ``users`` broadcasts with
        ``items``; by default the first dimension of ``items`` is the user. Item -1 is never seen."""
        if users is None:
            users = torch.arange(items.shape[0], device=items.device).reshape(-1, *[1] * (items.ndim - 1))
        keys = self.keys.to(items.device)
        if len(keys) == 0:
            return torch.zeros_like(items, dtype=torch.bool)
        query = users * self.n_items + items
        pos = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
        return (keys[pos] == query) & (items >= 0)

    def prefix_hits(self, sids: torch.Tensor, t: int, k: int) -> torch.Tensor:
        """Long ``[B, R, K]``: how many of the user's seen items (those their SID names) start
        with beam ``sids[b, r]``'s first ``t`` digits followed by code c."""
        b, r = sids.shape[:2]
        codes = self.codes.to(sids.device)
        named = self.named.to(sids.device)
        match = (sids[:, :, None, :t] == codes[:, None, :, :t]).all(-1) & (named >= 0)[:, None, :]  # [B, R, L]
        hits = torch.zeros(b, r, k, dtype=torch.long, device=sids.device)
        return hits.scatter_add_(2, codes[:, None, :, t].expand(-1, r, -1), match.long())
