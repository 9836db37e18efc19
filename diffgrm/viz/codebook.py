"""Figures of the codebook spaces: 2-D projections of each digit's sub-vectors, codebook health, SID information.

``project_codebook`` does the (slow, cacheable) projection; the figure builders only draw it.
UMAP when umap-learn is installed, PCA otherwise.
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly import colors as px_colors
from plotly.subplots import make_subplots

from diffgrm.errors import DiffGRMError
from diffgrm.viz.style import HIGHLIGHT, HISTORY, METHODS, PALETTE, clean_label, figure_title, sid_text

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
) -> go.Figure:
    """One digit's codebook as a map: every item (grey), every centroid (labelled with its code),
    one highlighted code's items and centroid, and where a user's history, recommendations and
    held-out ``target`` sit.

    ``coords`` is ``project_codebook(...)[digit]``. ``highlight`` picks the code drawn in colour
    (its items and its centroid); ``beam_codes`` (the codes the final beams chose in this digit)
    get an outlined centroid. ``colour_by_code`` colours every item by its code instead of grey
    (cycled through 24 colours: only useful with few codes). A highlighted item that was not in
    the projected sample is drawn at its code's centroid (its hover says so), so the highlighted
    traces always hold exactly the given items.
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
    cent_hover = f"digit {digit}, code %{{customdata[0]}}<br>%{{customdata[1]}} items<extra>%{{fullData.name}}</extra>"
    fig.add_trace(
        go.Scatter(
            name="centroids (labelled with their code)", x=cent_rows["x"], y=cent_rows["y"], mode="markers+text",
            marker={"size": 6, "symbol": "diamond", "color": "#555555"},
            text=[str(int(c)) for c in cent_rows["code"]], textposition="top center",
            textfont={"size": 9, "color": "#555555"},
            customdata=[[int(c), int(per_code[c]) if c < len(per_code) else 0] for c in cent_rows["code"]],
            hovertemplate=cent_hover,
        )
    )
    beams = [c for c in dict.fromkeys(int(c) for c in beam_codes) if c in cent_xy]
    if beams:
        fig.add_trace(go.Scatter(
            name="codes of the final beams", x=[cent_xy[c][0] for c in beams], y=[cent_xy[c][1] for c in beams],
            mode="markers", marker={"size": 15, "symbol": "diamond-open", "color": HIGHLIGHT, "line": {"width": 2}},
            customdata=[[c, int(per_code[c])] for c in beams], hovertemplate=cent_hover,
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
                y=[cent_xy[h][1]], mode="markers+text", text=[f"code {h}"], textposition="top center",
                textfont={"size": 13, "color": "black"},
                marker={"size": 18, "symbol": "diamond", "color": CHOSEN, "line": {"width": 2, "color": "black"}},
                customdata=[[h, int(per_code[h])]], hovertemplate=cent_hover,
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


# --- 5. codebook health -------------------------------------------------------------------------


def codebook_health(report: Mapping[str, object], codes: np.ndarray, codebook_size: int) -> go.Figure:
    """Are the codes used evenly, and did collision repair work? (the tokenizer report, drawn).

    Left: items per code, sorted from the busiest code down, one line per digit (a flat line at
    N/K is perfect usage; a long tail at 0 is dead codes). Right: the share of items whose SID
    collides with another's, before and after repair.
    """
    need = {"per_digit", "collision_rate_before", "collision_rate_after"}
    if not need <= set(report):
        raise DiffGRMError(f"report lacks {sorted(need - set(report))}: pass Catalogue.report()")
    codes = np.asarray(codes)
    per_digit = list(report["per_digit"])  # type: ignore[arg-type]
    if codes.ndim != 2 or codes.shape[1] != len(per_digit):
        raise DiffGRMError(f"codes must be [items, {len(per_digit)}] to match the report, got {codes.shape}")
    if codebook_size < 1 or codes.size and (codes.min() < 0 or codes.max() >= codebook_size):
        raise DiffGRMError(f"codes must lie in 0..{codebook_size - 1}")

    fig = make_subplots(
        rows=1, cols=2, column_widths=[0.72, 0.28], horizontal_spacing=0.1,
        subplot_titles=["items per code, busiest first", "SID collisions"],
    )
    rank = np.arange(1, codebook_size + 1)
    for d, stats in enumerate(per_digit):
        counts = np.sort(np.bincount(codes[:, d], minlength=codebook_size))[::-1]
        fig.add_trace(
            go.Scatter(
                name=f"digit {d}: {stats['entropy_bits']:.2f} / {math.log2(codebook_size):.2f} bits, "
                     f"{stats['dead_codes']} dead",
                x=rank, y=counts, mode="lines", line={"color": PALETTE[d % len(PALETTE)]},
                hovertemplate=f"digit {d}<br>code rank %{{x}}<br>%{{y}} items<extra></extra>",
            ),
            row=1, col=1,
        )
    fig.add_hline(y=len(codes) / codebook_size, line_dash="dot", line_color="#777777", row=1, col=1,
                  annotation_text="uniform", annotation_position="top right")
    before = float(report["collision_rate_before"])  # type: ignore[arg-type]
    after = float(report["collision_rate_after"])  # type: ignore[arg-type]
    fig.add_trace(
        go.Bar(
            name="collision rate", x=["before repair", "after repair"], y=[before, after], showlegend=False,
            marker={"color": ["#7f8c9b", HISTORY]}, text=[f"{before:.1%}", f"{after:.1%}"], textposition="outside",
            hovertemplate="%{x}: %{y:.2%} of items share their SID<extra></extra>",
        ),
        row=1, col=2,
    )
    detail = ", ".join(
        f"{label} {report[key]}"
        for key, label in (("collision_groups_before", "groups"), ("largest_collision_group", "largest"),
                           ("moved_items", "items moved"))
        if key in report
    )
    fig.update_yaxes(title_text="items", row=1, col=1)
    fig.update_xaxes(title_text="code rank", row=1, col=1)
    top = max(before, after, 0.01) * 1.25
    fig.update_yaxes(range=[0, top], tickformat=".0%" if top > 0.1 else ".1%", row=1, col=2)  # no repeated ticks
    if detail:
        fig.update_xaxes(title_text=detail, row=1, col=2)
    fig.update_layout(
        title=figure_title(f"Codebook health: {len(codes)} items, {len(per_digit)} digits x {codebook_size} codes"),
        legend={"orientation": "h", "y": -0.2},
        height=460, margin={"t": 70},
    )
    return fig


# --- 7. SID information -------------------------------------------------------------------------

TOLD_BEFORE = "#A6CEE3"
"""Light blue: the bits the earlier digits told already (the dark blue on top is what a digit adds)."""
SHARED = "#99D8C9"
"""Light green: a digit's bits that the other digits tell as well (the dark green is its own)."""


def sid_information_figure(info: Mapping[str, object], *, label: str = "before repair") -> go.Figure:
    """How many bits about the item each digit adds, and how many only it holds (``sid_info`` drawn).

    ``info`` is ``diffgrm.sid_info.sid_information(codes)`` (or one half of the report's
    ``information``). Left: the bits of the first k digits, stacked as what the first k-1 digits
    already told plus what digit k-1 adds, under the ceiling log2(items) that a one-to-one catalogue
    reaches. Right: each digit's entropy split into the bits only it holds, H(digit | others), and
    the bits the other digits tell as well (redundant).
    """
    need = {"prefix_bits", "conditional_bits", "digit_bits", "max_bits", "n_items"}
    if not need <= set(info):
        raise DiffGRMError(f"info lacks {sorted(need - set(info))}: pass diffgrm.sid_info.sid_information(codes)")
    prefix = [float(b) for b in info["prefix_bits"]]  # type: ignore[union-attr]
    own = [float(b) for b in info["conditional_bits"]]  # type: ignore[union-attr]
    digit = [float(b) for b in info["digit_bits"]]  # type: ignore[union-attr]
    n = len(prefix)
    if n == 0 or len(own) != n or len(digit) != n:
        raise DiffGRMError(
            f"info has {n} prefix, {len(own)} conditional and {len(digit)} digit entropies: they must match"
        )
    ceiling = float(info["max_bits"])  # type: ignore[arg-type]

    fig = make_subplots(
        rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.1,
        subplot_titles=["bits of the first k digits", "each digit's bits: its own vs shared"],
    )
    ks = [f"k = {k}" for k in range(1, n + 1)]
    earlier = [0.0, *prefix[:-1]]
    gain = [p - e for p, e in zip(prefix, earlier)]
    fig.add_trace(
        go.Bar(name="told by the first k-1 digits", x=ks, y=earlier, marker={"color": TOLD_BEFORE},
               hovertemplate="%{x}: %{y:.2f} bits from the digits before<extra></extra>"),
        row=1, col=1,
    )
    fig.add_trace(
        go.Bar(name="added by the k-th digit", x=ks, y=gain, marker={"color": HISTORY},
               text=[f"+{g:.2f}" for g in gain], textposition="outside",
               customdata=[[k - 1, p] for k, p in enumerate(prefix, 1)],
               hovertemplate="digit %{customdata[0]} adds %{y:.2f} bits<br>first k digits: %{customdata[1]:.2f} bits"
                             "<extra></extra>"),
        row=1, col=1,
    )
    # the ceiling's label sits above the line, at the left, where no bar reaches it
    fig.add_hline(y=ceiling, line_dash="dot", line_color="#777777", row=1, col=1,
                  annotation_text=f"log2 {int(info['n_items']):,} items = {ceiling:.2f}",  # type: ignore[call-overload]
                  annotation_position="top left")
    digits = [f"digit {d}" for d in range(n)]
    fig.add_trace(
        go.Bar(name="H(digit | others): only this digit", x=digits, y=own, marker={"color": PALETTE[2]},
               hovertemplate="%{x}: %{y:.2f} bits that no other digit tells<extra></extra>"),
        row=1, col=2,
    )
    # the (often tiny) own bits are printed above the stack, where a thin bar cannot hide them
    fig.add_trace(
        go.Bar(name="also told by the other digits", x=digits, y=[max(t - o, 0.0) for t, o in zip(digit, own)],
               text=[f"own {o:.2f} of {t:.2f}" for t, o in zip(digit, own)], textposition="outside",
               cliponaxis=False, marker={"color": SHARED}, customdata=digit,
               hovertemplate="%{x}: %{y:.2f} of its %{customdata:.2f} bits are redundant<extra></extra>"),
        row=1, col=2,
    )
    fig.update_yaxes(title_text="bits", range=[0, max(ceiling, *prefix) * 1.15], row=1, col=1)
    fig.update_yaxes(range=[0, max(digit) * 1.15 if max(digit) > 0 else 1], row=1, col=2)
    fig.update_layout(
        barmode="stack",
        title=figure_title(f"What the digits tell about the item ({label}): {prefix[-1]:.2f} of {ceiling:.2f} bits"),
        legend={"orientation": "h", "y": -0.2},
        height=440, margin={"t": 70},
    )
    return fig
