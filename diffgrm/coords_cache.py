"""The codebook map's cache in a run folder (``codebook_<method>.csv`` + ``.json``).

Projecting the codebooks (UMAP) takes a minute, so ``Explorer.codebook_coords`` keeps the result
beside the run; ``diffgrm app`` checks it before serving. Both read it here, without loading the
run or importing torch, so a warm start stays quick.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from diffgrm.errors import DiffGRMError
from diffgrm.safeio import atomic_write, read_json, write_json

COORDS_VERSION = 3
"""The layout of the cached frame; a cache of another version is computed again."""


def cached_coords(run: str | Path, method: str) -> dict[int, pd.DataFrame] | None:
    """A run's cached codebook projection when it is current, else ``None`` (without loading the run)."""
    path = Path(run) / f"codebook_{method}.csv"
    return _read_coords(path, Path(run) / f"codebook_{method}.json") if path.is_file() else None


def _read_coords(path: Path, meta_path: Path) -> dict[int, pd.DataFrame] | None:
    """The cached projection, or ``None`` (with a note) when it is damaged and must be rebuilt."""
    try:
        meta = read_json(meta_path)
        method = meta["method"]
        if meta.get("version") != COORDS_VERSION:
            print(f"note: the codebook projection cache {path} has an older layout; computing it again",
                  file=sys.stderr)
            return None
        frame = pd.read_csv(path)
        if not {"digit", "x", "y"} <= set(frame.columns) or frame.empty:
            raise ValueError("columns digit, x, y missing")
    except (DiffGRMError, OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
        print(f"note: the codebook projection cache {path} is damaged ({str(exc)[:120]}); computing it again",
              file=sys.stderr)
        return None
    out = {int(d): g.drop(columns="digit").reset_index(drop=True) for d, g in frame.groupby("digit")}
    for g in out.values():
        g.attrs["method"] = method
        g.attrs["layout"] = meta.get("layout", "sub-vectors")
    return out


def write_coords(run: str | Path, method: str, coords: dict[int, pd.DataFrame]) -> None:
    """Keep ``coords`` (per digit, as ``project_codebook`` returns them) in ``run``; a read-only run
    folder only loses the cache, with a note."""
    run = Path(run)
    frame = pd.concat([g.assign(digit=d) for d, g in coords.items()], ignore_index=True)
    first = next(iter(coords.values())).attrs
    try:
        atomic_write(run / f"codebook_{method}.csv", lambda p: frame.to_csv(p, index=False))
        write_json(run / f"codebook_{method}.json",
                   {"method": first.get("method", method), "layout": first.get("layout", "sub-vectors"),
                    "version": COORDS_VERSION})
    except OSError as exc:
        print(f"note: cannot keep the codebook projection in {run} ({exc.strerror})", file=sys.stderr)
