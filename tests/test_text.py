import numpy as np
import pytest

from diffgrm import text
from diffgrm.errors import DiffGRMError
from diffgrm.text import clean, embed_texts, item_text


def test_clean_unescapes_strips_tags_and_collapses_space():
    assert clean("Tom &amp; Jerry&#39;s <b>best</b>\n\tof") == "Tom & Jerry's best of"
    assert clean("a&amp;amp;b") == "a&b"  # double-escaped, as in Amazon metadata
    assert clean(None) == ""
    assert clean("   ") == ""


def test_template_order_labels_and_skips_empty_fields():
    rec = {
        "description": "Smells <i>nice</i>.",
        "title": "Rose Water",
        "brand": "",
        "price": "4.50",
        "categories": [["Beauty", "Skin Care"], ["Beauty", "Fragrance"]],
    }
    assert item_text(rec) == (
        "Title: Rose Water. Price: 4.50. Category: Beauty, Skin Care, Fragrance. Description: Smells nice."
    )


def test_template_movielens_fields_and_empty_item():
    assert item_text({"title": "Toy Story", "year": "1995", "genres": ["Animation", "Comedy"]}) == (
        "Title: Toy Story. Year: 1995. Genres: Animation, Comedy."
    )
    assert item_text({"title": None, "categories": [], "brand": " "}) == ""


def test_embeddings_are_normalised_and_cached(tmp_cache, monkeypatch):
    texts = ["Title: Rose water toner.", "Title: Matte red lipstick.", "Title: Rose water toner."]
    first = embed_texts(texts, progress=False)
    assert first.shape == (3, 384) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(first[0], first[2], atol=1e-6)
    assert float(first[0] @ first[1]) < 0.99
    assert len(list((tmp_cache / "embeddings").rglob("*.npy"))) == 1

    def boom(*a, **k):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(text, "_encode", boom)
    np.testing.assert_array_equal(embed_texts(texts, progress=False), first)
    with pytest.raises(AssertionError):  # another text is a cache miss
        embed_texts(texts + ["Title: Something else."], progress=False)


def test_embedding_refuses_empty_text(tmp_cache):
    with pytest.raises(DiffGRMError, match="empty"):
        embed_texts(["ok", "  "], progress=False)


def test_unknown_encoder_is_a_clear_error(tmp_cache, tmp_path):
    with pytest.raises(DiffGRMError, match="cannot load sentence encoder"):
        embed_texts(["hello"], str(tmp_path / "no-such-model"), progress=False)


def test_a_damaged_embedding_cache_entry_is_reported_rebuilt_and_replaced(tmp_cache, capsys):
    texts = ["Title: Rose water toner.", "Title: Matte red lipstick."]
    first = embed_texts(texts, progress=False)
    (entry,) = (tmp_cache / "embeddings").rglob("*.npy")
    entry.write_bytes(entry.read_bytes()[:60])  # an interrupted copy, a full disk
    again = embed_texts(texts, progress=False)
    assert "is damaged" in capsys.readouterr().err
    np.testing.assert_allclose(again, first, atol=1e-6)
    np.testing.assert_array_equal(np.load(entry), again)  # replaced, so the next call reads it


def test_an_interrupted_embedding_resumes_after_its_last_complete_chunk(tmp_cache, monkeypatch):
    texts = [f"Title: item number {i}. Category: things." for i in range(10)]
    want = embed_texts(texts, cache=False, progress=False)
    monkeypatch.setattr(text, "CACHE_CHUNK", 4)  # chunks of 4, 4 and 2 texts
    real, calls = text._encode, []

    def interrupted(model, chunk, **kw):
        calls.append(len(chunk))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(model, chunk, **kw)

    monkeypatch.setattr(text, "_encode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        embed_texts(texts, progress=False)
    assert len(list((tmp_cache / "embeddings").rglob("*.npy"))) == 2  # two complete chunks, nothing partial
    calls.clear()
    monkeypatch.setattr(text, "_encode", lambda model, chunk, **kw: (calls.append(len(chunk)), real(model, chunk, **kw))[1])
    got = embed_texts(texts, progress=False)
    assert calls == [2]  # only the missing chunk was embedded
    np.testing.assert_allclose(got, want, atol=1e-5)
