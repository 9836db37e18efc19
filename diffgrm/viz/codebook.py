"""Figures of the codebook spaces: 2-D projections of each digit's sub-vectors, one digit's map.

``project_codebook`` does the (slow, cacheable) projection; the figure builders only draw it.
UMAP when umap-learn is installed, PCA otherwise.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly import colors as px_colors

from diffgrm.code_words import code_label
from diffgrm.errors import DiffGRMError
from diffgrm.viz.style import HIGHLIGHT, HISTORY, METHODS, clean_label, figure_title, sid_text

# --- 4. codebook projection ---------------------------------------------------------------------


def _pca_2d(x: np.ndarray) -> np.ndarray:
    """The first two principal components (signs fixed, so the picture is deterministic)."""
    xc = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    out = np.zeros((len(x), 2))
    proj = xc @ vt[:2].T
    out[:, : proj.shape[1]] = proj
    for j in range(2):
        if out[np.argmax(np.abs(out[:, j])), j] < 0:
            out[:, j] = -out[:, j]
    return out


def _umap_2d(x: np.ndarray, seed: int) -> np.ndarray:
    import umap  # imported late: it pulls in numba, which takes seconds the first time

    reducer = umap.UMAP(n_neighbors=max(2, min(15, len(x) - 1)), n_components=2, random_state=seed, n_jobs=1)
    with warnings.catch_warnings():  # a seed makes UMAP single-threaded, and it says so every time
        warnings.filterwarnings("ignore", message=".*random_state.*")
        return np.asarray(reducer.fit_transform(x), dtype=float)


GROUP_RADIUS = 0.4
"""In a by-code layout, how far a code's items spread around its centroid: the 95th percentile of
the items' offsets is drawn at this fraction of the typical distance between neighbouring centroids."""


def _by_code_2d(items: np.ndarray, centroids: np.ndarray, item_codes: np.ndarray, method: str,
                seed: int) -> np.ndarray:
    """Centroids placed by ``method`` (UMAP or PCA of the centroids alone), each item drawn around
    its own centroid: offset by its residual (item minus centroid) along the residuals' two main
    directions, scaled by one factor so that a code's items stay near its centroid
    (:data:`GROUP_RADIUS`). Rows: the centroids, then the items."""
    k = len(centroids)
    anchors = _umap_2d(centroids, seed) if method == "umap" and k >= 16 else _pca_2d(centroids)
    offsets = _pca_2d(items - centroids[item_codes]) if len(items) > 1 else np.zeros((len(items), 2))
    gaps = np.sqrt(((anchors[:, None] - anchors[None]) ** 2).sum(-1))
    np.fill_diagonal(gaps, np.inf)
    typical = float(np.median(gaps.min(1))) if k > 1 else 1.0
    radius = float(np.quantile(np.linalg.norm(offsets, axis=1), 0.95)) if len(items) else 0.0
    scale = GROUP_RADIUS * typical / radius if radius > 0 and np.isfinite(typical) else 0.0
    return np.concatenate([anchors, anchors[item_codes] + scale * offsets])


def project_codebook(
    subvectors: np.ndarray,
    centroids: np.ndarray,
    *,
    codes: np.ndarray | None = None,
    method: str = "umap",
    seed: int = 0,
    max_items: int | None = 5000,
    by_code: bool = False,
) -> dict[int, pd.DataFrame]:
    """Per digit, 2-D coordinates of the K centroids and the items' sub-vectors, fitted together.

    Slow (UMAP) and user-independent, so the app computes it once and caches it. Columns: ``x``,
    ``y``, ``kind`` ("centroid" | "item"), ``code`` (the centroid's code, or the item's code at that
    digit: ``codes[:, d]`` when given, else its nearest centroid) and ``item`` (-1 for centroids).
    More than ``max_items`` items are subsampled with ``seed`` (same seed, same sample). Without
    umap-learn, "umap" falls back to PCA with a warning; ``df.attrs["method"]`` says which ran.

    ``by_code=True`` lays the map out by code: the centroids are placed by ``method`` applied to the
    centroids alone, and every item is drawn around its own centroid, offset along the two main
    directions of the items' residuals (item minus its centroid), all scaled by one factor
    (:data:`GROUP_RADIUS`). Each code is then a visible group, and an item far from its centroid
    is drawn farther out. Use it when the sub-vectors have no cluster structure of their own (a
    64-code k-means of a few thousand items cuts a continuum into cells: a plain map is one ball).
    ``df.attrs["layout"]`` is "by code" or "sub-vectors".
    """
    if method not in METHODS:
        raise DiffGRMError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    sub, cent = np.asarray(subvectors, dtype=float), np.asarray(centroids, dtype=float)
    if sub.ndim != 3 or cent.ndim != 3 or sub.shape[1] != cent.shape[0] or sub.shape[2] != cent.shape[2]:
        raise DiffGRMError(
            f"subvectors must be [items, digits, dsub] and centroids [digits, K, dsub] with the same digits and "
            f"dsub, got {sub.shape} and {cent.shape}"
        )
    n_items, n_digits, _ = sub.shape
    if codes is not None and np.asarray(codes).shape != (n_items, n_digits):
        raise DiffGRMError(f"codes must be [{n_items}, {n_digits}], got {np.asarray(codes).shape}")
    if max_items is not None and max_items < 1:
        raise DiffGRMError(f"max_items must be at least 1 or None, got {max_items}")
    if method == "umap":
        try:
            import umap  # noqa: F401
        except ImportError:
            warnings.warn("umap-learn is not installed: projecting the codebooks with PCA instead", stacklevel=2)
            method = "pca"

    items = np.arange(n_items)
    if max_items is not None and n_items > max_items:
        items = np.sort(np.random.default_rng(seed).choice(n_items, size=max_items, replace=False))
    k = cent.shape[1]
    out = {}
    for d in range(n_digits):
        x = np.concatenate([cent[d], sub[items, d]])
        if codes is not None:
            item_codes = np.asarray(codes)[items, d]
        else:
            y = sub[items, d]  # squared distances without an [items, K, dsub] temporary
            dist = (y**2).sum(1)[:, None] - 2 * y @ cent[d].T + (cent[d] ** 2).sum(1)[None]
            item_codes = dist.argmin(1)
        if by_code:
            xy = _by_code_2d(sub[items, d], cent[d], np.asarray(item_codes, dtype=np.int64), method, seed)
        else:
            xy = _umap_2d(x, seed) if method == "umap" else _pca_2d(x)
        frame = pd.DataFrame(
            {
                "x": xy[:, 0],
                "y": xy[:, 1],
                "kind": ["centroid"] * k + ["item"] * len(items),
                "code": np.concatenate([np.arange(k), item_codes]).astype(np.int64),
                "item": np.concatenate([np.full(k, -1), items]).astype(np.int64),
            }
        )
        frame.attrs["method"] = method
        frame.attrs["layout"] = "by code" if by_code else "sub-vectors"
        out[d] = frame
    return out


CODE_COLOURS = tuple(px_colors.qualitative.Dark24)
"""Item colours by code (cycled), for notebooks that colour every code; the app highlights one code instead."""
TARGET = "#009E73"
"""Okabe-Ito bluish green: the held-out next item and its code."""
CHOSEN = "#CC79A7"
"""Okabe-Ito reddish purple: the code picked for a closer look, its items and its centroid."""
ITEM_GREY = "#b4b4b4"


def _max_code(coords: pd.DataFrame) -> int:
    cents = coords.loc[coords["kind"] == "centroid", "code"]
    return int(cents.max()) if len(cents) else -1


def codebook_note(coords: pd.DataFrame) -> str:
    """How to read a projection of ``project_codebook``: what its distances mean."""
    method, layout = coords.attrs.get("method", "umap"), coords.attrs.get("layout", "sub-vectors")
    if layout == "by code":
        placed = "UMAP of the centroids" if method == "umap" else "PCA of the centroids"
        return (f"Laid out by code: centroids placed by {placed}, each item drawn around its own centroid "
                "(farther out = farther from it); neighbouring codes are similar, the gaps mean little.")
    if method == "umap":
        return "UMAP keeps neighbourhoods: distances between clusters mean little."
    return "PCA: a linear 2-D shadow of the sub-vectors; codes that look close may not be."


def codebook_figure(
    coords: pd.DataFrame,
    *,
    digit: int,
    titles: Sequence[str],
    sids: np.ndarray,
    history: Sequence[int] = (),
    recommended: Sequence[int] = (),
    target: int | None = None,
    beam_codes: Sequence[int] = (),
    highlight: int | None = None,
    colour_by_code: bool = False,
    code_words: Sequence[Sequence[Sequence[str]]] | None = None,
) -> go.Figure:
    """One digit's codebook as a map: every item (grey), every centroid (labelled with its code),
    one highlighted code's items and centroid, and where a user's history, recommendations and
    held-out ``target`` sit.

    ``coords`` is ``project_codebook(...)[digit]``. ``highlight`` picks the code drawn in colour
    (its items and its centroid); ``beam_codes`` (the codes the final beams chose in this digit)
    get an outlined centroid. ``colour_by_code`` colours every item by its code instead of grey
    (cycled through 24 colours: only useful with few codes). A highlighted item that was not in
    the projected sample is drawn at its code's centroid (its hover says so), so the highlighted
    traces always hold exactly the given items. ``code_words`` (``diffgrm.code_words.code_words``)
    names each centroid by its items' most over-represented words, beside its code.
    """
    sids = np.asarray(sids)
    if sids.ndim != 2 or not 0 <= digit < sids.shape[1]:
        raise DiffGRMError(f"digit must be in 0..{sids.shape[1] - 1 if sids.ndim == 2 else '?'}, got {digit}")
    if len(titles) != len(sids):
        raise DiffGRMError(f"titles has {len(titles)} entries but sids has {len(sids)} items")
    missing = {"x", "y", "kind", "code", "item"} - set(coords.columns)
    if missing:
        raise DiffGRMError(f"coords lacks the columns {sorted(missing)}: pass project_codebook(...)[digit]")
    if target is not None and not 0 <= int(target) < len(sids):
        raise DiffGRMError(f"target must be an item index in 0..{len(sids) - 1}, got {target}")
    k = int(_max_code(coords)) + 1
    bad_codes = [int(c) for c in [*beam_codes, *([] if highlight is None else [highlight])]
                 if not 0 <= int(c) < max(k, 1)]
    if bad_codes:
        raise DiffGRMError(f"beam_codes and highlight must be codes in 0..{k - 1}, got {bad_codes[:5]}")
    for name, chosen in (("history", history), ("recommended", recommended)):
        bad = [int(i) for i in chosen if not 0 <= int(i) < len(sids)]
        if bad:
            raise DiffGRMError(f"{name} holds item indices outside 0..{len(sids) - 1}: {bad[:5]}")

    item_rows = coords[coords["kind"] == "item"]
    cent_rows = coords[coords["kind"] == "centroid"]
    per_code = np.bincount(sids[:, digit], minlength=max(k, 0))
    item_xy = {int(i): (float(x), float(y)) for i, x, y in zip(item_rows["item"], item_rows["x"], item_rows["y"])}
    cent_xy = {int(c): (float(x), float(y)) for c, x, y in zip(cent_rows["code"], cent_rows["x"], cent_rows["y"])}

    def info(i: int, note: str = "") -> list:
        return [i, clean_label(titles[i], 80), sid_text(sids[i]), int(sids[i, digit]), note]

    item_hover = ("%{customdata[1]}<br>SID %{customdata[2]} (digit " + str(digit) + ": code %{customdata[3]})"
                  "<br>item %{customdata[0]}%{customdata[4]}<extra>%{fullData.name}</extra>")
    fig = go.Figure()
    item_codes = sids[item_rows["item"].to_numpy(dtype=np.int64), digit] if len(item_rows) else np.zeros(0, np.int64)
    colours = [CODE_COLOURS[c % len(CODE_COLOURS)] for c in item_codes] if colour_by_code else ITEM_GREY
    fig.add_trace(
        go.Scattergl(
            name="items (colour = code)" if colour_by_code else "items", x=item_rows["x"], y=item_rows["y"],
            mode="markers", marker={"size": 5, "color": colours, "opacity": 0.55},
            customdata=[info(int(i)) for i in item_rows["item"]], hovertemplate=item_hover,
        )
    )
    cent_hover = (f"digit {digit}, code %{{customdata[0]}}<br>%{{customdata[1]}} items<br>%{{customdata[2]}}"
                  "<extra>%{fullData.name}</extra>")

    def named(c: int) -> str:
        return code_label(code_words, digit, c) or "no shared words"
    fig.add_trace(
        go.Scatter(
            name="centroids (labelled with their code)", x=cent_rows["x"], y=cent_rows["y"], mode="markers+text",
            marker={"size": 6, "symbol": "diamond", "color": "#555555"},
            text=[str(int(c)) for c in cent_rows["code"]], textposition="top center",
            textfont={"size": 9, "color": "#555555"},
            customdata=[[int(c), int(per_code[c]) if c < len(per_code) else 0, named(int(c))]
                        for c in cent_rows["code"]],
            hovertemplate=cent_hover,
        )
    )
    beams = [c for c in dict.fromkeys(int(c) for c in beam_codes) if c in cent_xy]
    if beams:
        fig.add_trace(go.Scatter(
            name="codes of the final beams", x=[cent_xy[c][0] for c in beams], y=[cent_xy[c][1] for c in beams],
            mode="markers", marker={"size": 15, "symbol": "diamond-open", "color": HIGHLIGHT, "line": {"width": 2}},
            customdata=[[c, int(per_code[c]), named(c)] for c in beams], hovertemplate=cent_hover,
        ))
    history_style = {"size": 9, "symbol": "circle", "color": HISTORY, "opacity": 0.85,
                     "line": {"width": 1, "color": "white"}}
    recommended_style = {"size": 15, "symbol": "star", "color": HIGHLIGHT, "line": {"width": 1, "color": "black"}}
    for name, chosen, style in (("history", history, history_style), ("recommended", recommended, recommended_style)):
        chosen = list(dict.fromkeys(int(i) for i in chosen))  # unique, in the given order
        xs, ys, data = _place(chosen, item_xy, cent_xy, sids, digit, info)
        fig.add_trace(go.Scatter(name=name, x=xs, y=ys, mode="markers", marker=style, customdata=data,
                                 hovertemplate=item_hover))
    if highlight is not None:
        h = int(highlight)
        members = [int(i) for i in np.flatnonzero(sids[:, digit] == h)]
        xs, ys, data = _place(members, item_xy, cent_xy, sids, digit, info)
        fig.add_trace(go.Scatter(
            name=f"code {h}: its {len(members)} items", legendgroup="chosen", x=xs, y=ys, mode="markers",
            marker={"size": 10, "color": CHOSEN, "line": {"width": 1, "color": "black"}}, customdata=data,
            hovertemplate=item_hover,
        ))
        if h in cent_xy:
            fig.add_trace(go.Scatter(
                name=f"code {h}: centroid", legendgroup="chosen", showlegend=False, x=[cent_xy[h][0]],
                y=[cent_xy[h][1]], mode="markers+text", text=[f"code {h}: {code_label(code_words, digit, h)}" if code_label(code_words, digit, h) else f"code {h}"],
                textposition="top center",
                textfont={"size": 13, "color": "black"},
                marker={"size": 18, "symbol": "diamond", "color": CHOSEN, "line": {"width": 2, "color": "black"}},
                customdata=[[h, int(per_code[h]), named(h)]], hovertemplate=cent_hover,
            ))
    if target is not None:
        xs, ys, data = _place([int(target)], item_xy, cent_xy, sids, digit, info)
        fig.add_trace(go.Scatter(name="held-out next item", x=xs, y=ys, mode="markers",
                                 marker={"size": 15, "symbol": "square", "color": TARGET,
                                         "line": {"width": 1, "color": "black"}},
                                 customdata=data, hovertemplate=item_hover))

    method = coords.attrs.get("method", "umap")
    fig.update_layout(
        title=figure_title(f"Codebook of digit {digit}: {method.upper()} of the {len(cent_rows)} centroids and the "
                           f"items' digit-{digit} sub-vectors", codebook_note(coords)),
        xaxis={"visible": False}, yaxis={"visible": False},
        plot_bgcolor="white", height=760, margin={"t": 70, "l": 10, "r": 10, "b": 10},
        legend={"orientation": "h", "y": -0.01, "yanchor": "top", "x": 0.5, "xanchor": "center"},
    )
    return fig


def _place(items: Sequence[int], item_xy: dict, cent_xy: dict, sids: np.ndarray, digit: int, info) -> tuple:
    """x, y and hover data of ``items``: their projected point, or (not in the sample) their code's centroid."""
    xs, ys, data = [], [], []
    for i in items:
        if i in item_xy:
            (x, y), note = item_xy[i], ""
        else:
            (x, y) = cent_xy.get(int(sids[i, digit]), (math.nan, math.nan))
            note = "<br>(not in the projected sample: drawn at its code's centroid)"
        xs.append(x), ys.append(y), data.append(info(i, note))
    return xs, ys, data
