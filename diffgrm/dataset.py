"""The one in-memory shape of a dataset, whatever its source: :class:`Dataset`, built and checked
by :func:`build_dataset`.

Every source (the embedded MovieLens-100K and the Amazon 2014 files in ``sources.py``, a
"sequences + items" folder in ``data.py``) becomes a :class:`Dataset`: an item table with one text
per item and, per user, the items in time order. Everything downstream (tokenizer, training,
evaluation) reads only this shape. It lives apart from ``data.py`` so that imports flow one way:
``data`` (loading by name) uses ``sources``, and both use this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from diffgrm.errors import DiffGRMError
from diffgrm.text import item_text

MIN_SEQUENCE = 3
"""Shortest usable user sequence: one training item, a validation target and a test target."""


@dataclass
class Dataset:
    """Items (``item_id``, ``title``, ``text``; row i is item index i) and per-user sequences.

    ``sequences[u]`` holds item indices in time order, oldest first. Users whose sequence was
    shorter than :data:`MIN_SEQUENCE` are not in ``users``; ``skipped_users`` counts them.
    """

    name: str
    items: pd.DataFrame
    users: list[str]
    sequences: list[np.ndarray]
    skipped_users: int = 0
    source: str = ""
    embeddings: np.ndarray | None = None  # [n_items, dim] vectors the data folder brought (item_embeddings.npy)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "source": self.source,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_interactions": self.n_interactions,
            "skipped_users": self.skipped_users,
        }


def build_dataset(
    name: str,
    items: Iterable[dict],
    sequences: Iterable[tuple[str, Sequence[str]]],
    *,
    source: str = "",
    need_text: bool = True,
) -> Dataset:
    """Validate raw records and index them.

    ``items`` are dicts with ``item_id`` and any of the text fields of :func:`diffgrm.text.item_text`
    (or a ready ``text``); ``sequences`` are ``(user_id, [item_id, ...])`` in time order.
    Raises :class:`DiffGRMError` for duplicate ids, unknown items and items without any text
    (unless ``need_text=False``: the items come with their own vectors, and an item without text
    is shown by its id); users with fewer than :data:`MIN_SEQUENCE` items are skipped and counted.
    """
    ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    index: dict[str, int] = {}
    no_text: list[str] = []
    for rec in items:
        iid = str(rec["item_id"])
        if iid in index:
            raise DiffGRMError(f"item {iid!r} appears twice in the item table")
        text = rec.get("text")
        text = (text.strip() if isinstance(text, str) else "") or item_text(rec)
        if not text:
            no_text.append(iid)
            text = iid
        index[iid] = len(ids)
        ids.append(iid)
        titles.append(str(rec.get("title") or "").strip() or iid)
        texts.append(text)
    if not ids:
        raise DiffGRMError(f"dataset {name!r} has no items")
    if no_text and need_text:
        raise DiffGRMError(
            f"{len(no_text)} item(s) have no text at all (no title, category or other field), "
            f"e.g. {no_text[0]!r}; give every item at least one text field"
        )

    users: list[str] = []
    seqs: list[np.ndarray] = []
    seen: set[str] = set()
    skipped = 0
    for user, seq in sequences:
        user = str(user)
        if user in seen:
            raise DiffGRMError(f"user {user!r} has more than one sequence")
        seen.add(user)
        try:
            idx = np.fromiter((index[str(i)] for i in seq), dtype=np.int64)
        except KeyError as exc:
            raise DiffGRMError(f"user {user!r}: item {exc.args[0]!r} is not in the item table") from None
        if len(idx) < MIN_SEQUENCE:
            skipped += 1
            continue
        users.append(user)
        seqs.append(idx)
    if not users:
        raise DiffGRMError(
            f"dataset {name!r} has no user with at least {MIN_SEQUENCE} items ({skipped} skipped)"
        )
    table = pd.DataFrame({"item_id": ids, "title": titles, "text": texts})
    return Dataset(name=name, items=table, users=users, sequences=seqs, skipped_users=skipped, source=source)
