"""Readable codes: each code named by the words most over-represented among the items that hold it.

A code is a cell of one digit's sub-space and has no name of its own; "digit 0 = code 29" means
nothing to a reader. Its items do share something, though, and their texts say what: on
MovieLens-100K mostly genres, on Amazon Beauty title and category words. For digit ``d`` and code
``c`` a word ``w`` is scored by its lift, how much more often it occurs among the code's items than
among all items,

    lift(w) = P(w | x_d = c) / P(w),

counting only words that at least ``min_items`` of the code's items (and a tenth of them) share,
so a word of one odd title does not name a code. The top words are the code's label
("comedy, romance"); a code whose items share nothing distinctive gets none.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from diffgrm.errors import DiffGRMError

STOPWORDS = frozenset("""
a an and the of in on at to for with by from or as is it its this that be are was were amp vol edition set
not no out all up down over under into onto about after before upon once than then there here what who how why
when where you your his her him she he they them their our we my me can will just do does did has have had
title year genres genre category categories brand price description n/a unknown new one two
""".split())
"""Words that name no theme: English glue and the labels of diffgrm's item-text template."""
WORD = re.compile(r"[a-z][a-z'-]*[a-z]")


def item_words(texts: Sequence[str]) -> list[set[str]]:
    """The distinct words of each item's text: lower case, letters (apostrophes and hyphens inside)
    only, at least three characters, no stopwords; "Children's" is "children", "Sci-Fi" "sci-fi"."""
    out = []
    for text in texts:
        words = {w.removesuffix("'s").strip("'") for w in WORD.findall(str(text).lower())}
        out.append({w for w in words if len(w) >= 3 and w not in STOPWORDS})
    return out


def code_words(texts: Sequence[str], codes: np.ndarray, codebook_size: int, *, top: int = 2,
               min_items: int = 3) -> list[list[list[str]]]:
    """``[digit][code]`` -> the code's ``top`` words by lift (fewer, or none, when its items share
    nothing distinctive). ``codes`` is ``[items, digits]``, one text per item."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) != len(texts):
        raise DiffGRMError(f"codes must be [items, digits] with one text per item, got {codes.shape} for "
                           f"{len(texts)} texts")
    if top < 1 or min_items < 1:
        raise DiffGRMError(f"top and min_items must be at least 1, got {top} and {min_items}")
    from scipy import sparse

    words = item_words(texts)
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, ws in enumerate(words):
        for w in ws:
            rows.append(i)
            cols.append(vocab.setdefault(w, len(vocab)))
    names = np.array(list(vocab), dtype=object)
    n_items, n_digits = codes.shape
    x = sparse.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(n_items, len(vocab)))
    share = np.asarray(x.sum(0)).ravel() / max(n_items, 1)  # P(w)
    out = []
    for d in range(n_digits):
        member = sparse.csr_matrix((np.ones(n_items), (codes[:, d], np.arange(n_items))),
                                   shape=(codebook_size, n_items))
        counts = (member @ x).toarray()  # [K, V]: items of code c holding word w
        sizes = np.bincount(codes[:, d], minlength=codebook_size).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            lift = counts / sizes[:, None] / share[None, :]
        enough = (counts >= min_items) & (counts >= 0.1 * sizes[:, None])
        lift = np.where(enough & (lift > 1.0), lift, -np.inf)
        labels = []
        for c in range(codebook_size):
            best = np.argsort(-lift[c], kind="stable")[:top]
            labels.append([str(names[j]) for j in best if np.isfinite(lift[c, j])])
        out.append(labels)
    return out


def code_label(words: Sequence[Sequence[Sequence[str]]] | None, digit: int, code: int) -> str:
    """``"comedy, romance"`` for one (digit, code), ``""`` when it has no words (or none were computed)."""
    if words is None or code < 0:
        return ""
    return ", ".join(words[digit][code])
