"""The raw-file parsers on fixture files written here in the official formats, and MovieLens."""

import functools
import gzip
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from diffgrm import sources
from diffgrm.errors import DiffGRMError

REVIEWS = [
    # user A's reviews are out of time order in the file
    {"reviewerID": "A", "asin": "P2", "unixReviewTime": 300, "overall": 5.0},
    {"reviewerID": "A", "asin": "P1", "unixReviewTime": 100, "overall": 4.0},
    {"reviewerID": "B", "asin": "P1", "unixReviewTime": 50, "overall": 3.0},
    {"reviewerID": "A", "asin": "P3", "unixReviewTime": 200, "overall": 2.0},
    {"reviewerID": "B", "asin": "P3", "unixReviewTime": 50, "overall": 3.0},  # same time as P1: file order
    {"reviewerID": "B", "asin": "P4", "unixReviewTime": 10, "overall": 1.0},
    {"reviewerID": "C", "asin": "P4", "unixReviewTime": 10, "overall": 1.0},  # C has one review
]
META = [
    # the 2014 metadata is one Python dict literal per line, not JSON
    "{'asin': 'P1', 'title': 'Rose &amp; Oud Perfume', 'price': 12.5, 'brand': 'Acme', "
    "'categories': [['Beauty', 'Fragrance'], ['Beauty', 'Gift Sets']], 'description': '<p>Warm\\nand sweet</p>'}",
    "{'asin': 'P2', 'title': 'Matte Lipstick', 'categories': [['Beauty', 'Makeup', 'Lips']]}",
    "{'asin': 'P3', 'categories': [['Beauty', 'Skin Care']], 'salesRank': {'Beauty': 10}}",
    '{"asin": "P4", "title": "Nail File", "brand": "Acme", "categories": [["Beauty", "Tools"]]}',
    "{'asin': 'P9', 'title': 'Never reviewed'}",
]


def write_raw(folder: Path, category: str = "Beauty", reviews=REVIEWS, meta=META) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rname, mname = sources.amazon_files(category)
    with gzip.open(folder / rname, "wt") as fh:
        for r in reviews:
            fh.write(json.dumps(r) + "\n")
    with gzip.open(folder / mname, "wt") as fh:
        fh.write("\n".join(meta) + "\n")
    return folder


def test_parse_reviews_sorts_by_time_stably(tmp_path):
    seqs = dict(sources.parse_reviews(write_raw(tmp_path) / "reviews_Beauty_5.json.gz"))
    assert seqs == {"A": ["P1", "P3", "P2"], "B": ["P4", "P1", "P3"], "C": ["P4"]}


def test_parse_meta_fields(tmp_path):
    recs = {r["item_id"]: r for r in sources.parse_meta(write_raw(tmp_path) / "meta_Beauty.json.gz")}
    assert set(recs) == {"P1", "P2", "P3", "P4", "P9"}
    assert recs["P1"]["price"] == "12.50" and recs["P1"]["brand"] == "Acme"
    assert recs["P3"]["title"] is None


def test_load_amazon_from_raw_dir(tmp_path):
    ds = sources.load_amazon("amazon-beauty", raw_dir=write_raw(tmp_path))
    assert ds.users == ["A", "B"] and ds.skipped_users == 1
    assert ds.items["item_id"].tolist() == ["P1", "P3", "P2", "P4"]  # order of first appearance
    text = dict(zip(ds.items["item_id"], ds.items["text"]))
    assert text["P1"] == (
        "Title: Rose & Oud Perfume. Price: 12.50. Brand: Acme. Category: Beauty, Fragrance, Gift Sets. "
        "Description: Warm and sweet."
    )
    assert text["P3"] == "Category: Beauty, Skin Care."
    assert ds.items.set_index("item_id").loc["P3", "title"] == "P3"  # untitled items show their id


def test_malformed_lines_name_file_and_line(tmp_path):
    bad = REVIEWS[:2] + [{"reviewerID": "A", "asin": "P5"}]
    write_raw(tmp_path / "a", reviews=bad)
    with pytest.raises(DiffGRMError, match=r"reviews_Beauty_5.json.gz:3: not a review record"):
        sources.load_amazon("amazon-beauty", raw_dir=tmp_path / "a")
    write_raw(tmp_path / "b", meta=META[:1] + ["{'asin': 'P2', 'title': oops}"])
    with pytest.raises(DiffGRMError, match=r"meta_Beauty.json.gz:2: not a metadata record"):
        sources.load_amazon("amazon-beauty", raw_dir=tmp_path / "b")
    write_raw(tmp_path / "c", meta=META[:2])
    with pytest.raises(DiffGRMError, match=r"2 reviewed item\(s\) have no metadata"):
        sources.load_amazon("amazon-beauty", raw_dir=tmp_path / "c")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "reviews_Beauty_5.json.gz").write_text("plain text, not gzip")
    (tmp_path / "d" / "meta_Beauty.json.gz").write_text("")
    with pytest.raises(DiffGRMError, match="cannot read as gzip"):
        sources.load_amazon("amazon-beauty", raw_dir=tmp_path / "d")
    with pytest.raises(DiffGRMError, match="missing file"):
        sources.load_amazon("amazon-toys", raw_dir=tmp_path / "d")


@pytest.fixture
def file_server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving a folder, standing in for the official host."""
    root = write_raw(tmp_path / "www", category="Toys_and_Games")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_then_parse_from_cache(file_server, tmp_cache, capsys):
    ds = sources.load_amazon("amazon-toys", base_url=file_server)
    assert ds.n_users == 2 and ds.n_items == 4
    cached = sorted(p.name for p in (tmp_cache / "amazon").iterdir())
    assert cached == ["meta_Toys_and_Games.json.gz", "reviews_Toys_and_Games_5.json.gz"]
    assert "reviews_Toys_and_Games_5.json.gz" in capsys.readouterr().err  # the progress bar
    # a second load reads the cache: the server is not needed any more
    again = sources.load_amazon("amazon-toys", base_url="http://127.0.0.1:9/unreachable")
    assert again.users == ds.users


def test_download_failure_is_clear_and_leaves_nothing(file_server, tmp_cache):
    with pytest.raises(DiffGRMError, match="download of .*missing.gz failed"):
        sources.download_file(f"{file_server}/missing.gz", tmp_cache / "x" / "missing.gz", progress=False)
    assert not list((tmp_cache / "x").iterdir())


def test_movielens_from_the_wheel():
    ds = sources.load_movielens_100k()
    assert (ds.n_users, ds.n_items, ds.n_interactions, ds.skipped_users) == (943, 1682, 100_000, 0)
    assert ds.items["text"].iloc[0] == "Title: Toy Story. Year: 1995. Genres: Animation, Children's, Comedy."
    assert ds.items["item_id"].tolist() == [str(i) for i in range(1, 1683)]
    # the order within a user is (timestamp, item id), checked against the raw interactions
    import zipfile

    with zipfile.ZipFile(sources._find_wheel()) as zf:
        inter = sources._read_atomic(zf, "inter")
    user = ds.users[0]
    raw = inter[inter["user_id"] == user].assign(ts=lambda d: d["timestamp"].astype(float), item=lambda d: d["item_id"].astype(int))
    expected = raw.sort_values(["ts", "item"])["item"].tolist()
    ids = ds.items["item_id"].to_numpy()
    assert [int(ids[i]) for i in ds.sequences[0]] == expected
    ts = raw.set_index("item")["ts"]
    seq_ts = np.array([ts[int(ids[i])] for i in ds.sequences[0]])
    assert (np.diff(seq_ts) >= 0).all() and (np.diff(seq_ts) == 0).any()  # ties exist and are ordered


def test_movielens_missing_wheel_is_explained(tmp_cache):
    with pytest.raises(DiffGRMError, match="diffgrm fetch movielens-100k"):
        sources.load_movielens_100k()
    tmp_cache.mkdir(parents=True, exist_ok=True)
    (tmp_cache / "broken.whl").write_text("not a zip")
    with pytest.raises(DiffGRMError, match="not the recbole 1.2.1 wheel"):
        sources.load_movielens_100k(tmp_cache / "broken.whl")


def test_a_damaged_cached_wheel_is_reported_fetched_again_and_replaced(tmp_path, monkeypatch, capsys):
    real = sources._find_wheel()  # the set-up's download
    monkeypatch.setenv("DIFFGRM_CACHE", str(tmp_path / "cache"))
    cached = sources.wheel_dir() / sources.RECBOLE_WHEEL
    cached.parent.mkdir(parents=True)
    cached.write_bytes(real.read_bytes()[:5000])  # an interrupted copy
    fetched = []

    def fake_fetch(dest=None, quiet=False):  # the network, replaced by the good file
        fetched.append(True)
        cached.write_bytes(real.read_bytes())
        return cached

    monkeypatch.setattr(sources, "fetch_movielens", fake_fetch)
    ds = sources.load_movielens_100k()
    assert fetched and ds.n_items == 1682
    assert "is damaged; downloading it again" in capsys.readouterr().err
    assert cached.read_bytes() == real.read_bytes()
