"""Readable codes: a code is named by the words its items share more than the catalogue does."""

import numpy as np
import pytest

from diffgrm import viz
from diffgrm.code_words import code_label, code_words, item_words
from diffgrm.errors import DiffGRMError

GENRES = ["comedy", "drama", "horror", "western"]


def catalogue(n: int = 80):
    """Digit 0's code follows the genre; digit 1's code is unrelated to any word."""
    texts = [f"Title: Thing {i}. Year: 1990. Genres: {GENRES[i % 4].title()}, Children's." for i in range(n)]
    codes = np.stack([np.arange(n) % 4, (np.arange(n) // 4) % 5], axis=1)
    return texts, codes


def test_a_code_is_named_by_the_words_over_represented_among_its_items():
    texts, codes = catalogue()
    words = code_words(texts, codes, codebook_size=4 + 1)
    assert [words[0][c][:1] for c in range(4)] == [[g] for g in GENRES]
    assert words[0][4] == []  # a code no item holds
    shared_by_all = {"children", "thing", "title", "year", "genres"}
    assert not any(set(w) & shared_by_all for digit in words for w in digit)  # template words and no-lift words
    assert code_label(words, 0, 2) == "horror" and code_label(words, 0, -1) == "" and code_label(None, 0, 1) == ""


def test_words_are_lower_case_letters_without_stopwords():
    assert item_words(["Title: The Lion King. Genres: Children's, Sci-Fi, Musical."]) == [
        {"lion", "king", "children", "sci-fi", "musical"}]


def test_bad_shapes_are_clear_errors():
    texts, codes = catalogue()
    with pytest.raises(DiffGRMError, match="one text per item"):
        code_words(texts[:-1], codes, 5)
    with pytest.raises(DiffGRMError, match="at least 1"):
        code_words(texts, codes, 5, top=0)


def test_the_denoising_strip_shows_the_names():
    import torch

    from diffgrm.cpd import cpd_search
    from diffgrm.sid_index import SIDIndex

    texts, codes = catalogue(40)
    index = SIDIndex(torch.from_numpy(codes[:, :2].copy()), 5)

    def logprob(tokens):
        b, r, n = tokens.shape
        return torch.log_softmax(torch.randn(b, r, n, 5, generator=torch.Generator().manual_seed(0)), dim=-1)

    tr = cpd_search(logprob, index, 1, beam=8, topk=4, trace=True).traces[0]
    words = code_words(texts, codes[:, :2], 5)
    fig = viz.denoising_strip(tr, beams=2, initial_step=1, player=False, code_words=words)
    cells = [c for row in fig.data[0].text for c in row if c]
    assert any("<sub>" in c and c.split("<sub>")[1].rstrip("</sub>") in GENRES for c in cells), cells
