"""Figures that show what the tokenizer and the decoders did: pure functions that return plotly figures.

Nothing here trains, decodes or reads files: the app (or a notebook) hands in a
:class:`~diffgrm.trace.DenoisingTrace`, a tokenizer report or precomputed coordinates and gets a
``plotly.graph_objects.Figure`` back, so every figure can be tested on synthetic data.

Conventions, the same in every figure:

* **arguments and data frames are 0-based** like the trace (``step`` 0 is the first fill, ``beam``
  0 the best final beam); **what the reader sees is 1-based for steps and ranks** ("step 1 of 4",
  "#1"). Digits keep their SID position (digit 0 .. n-1) everywhere.
* probabilities use the colour-blind-safe ``Cividis`` scale on a fixed 0..1 range, so two figures
  (or two frames) can be compared by colour; a still-masked digit is a neutral grey cell.
* a cell or bar that the decoder chose *at this step* is outlined in vermillion (Okabe-Ito).
* ``final beam k`` is the k-th best complete SID; with catalogue-constrained search it is item
  ``trace.items[k]``, and :meth:`DenoisingTrace.lineage` walks it back to step 0.

Bad arguments raise :class:`~diffgrm.errors.DiffGRMError` with a one-line explanation.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from diffgrm.errors import DiffGRMError
from diffgrm.trace import DenoisingTrace

PROB_SCALE = "Cividis"
"""Colour-blind-safe sequential scale for probabilities (dark = unlikely, yellow = likely)."""
MASKED_GREY = "#c8c8c8"
"""Neutral colour of a digit that is still masked (or was not predicted)."""
HIGHLIGHT = "#D55E00"
"""Okabe-Ito vermillion: what was chosen at this step, the recommended items."""
HISTORY = "#0072B2"
"""Okabe-Ito blue: the user's history."""
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
"""Okabe-Ito qualitative colours, for one line per digit or per decoder."""
METRICS = ("max_prob", "entropy_bits")
METHODS = ("umap", "pca")
STATES = ("masked", "new", "earlier")

_GREY_SCALE = [[0.0, MASKED_GREY], [1.0, MASKED_GREY]]
_CELL_PX = 44  # height of one heatmap row, in pixels


# --- small helpers ------------------------------------------------------------------------------


def sid_text(sid: Sequence[int]) -> str:
    """A SID as the app prints it, ``12-200-3-45``; a masked digit is ``?``."""
    return "-".join("?" if int(c) < 0 else str(int(c)) for c in sid)


def _clean(title: str, limit: int = 60) -> str:
    """A title that is safe in plotly's HTML-ish labels and not too long for an axis."""
    title = str(title).replace("<", "&lt;").replace(">", "&gt;")
    return title if len(title) <= limit else title[: limit - 1] + "…"


def _check_beam(trace: DenoisingTrace, beam: int) -> None:
    if not 0 <= beam < trace.beam:
        raise DiffGRMError(f"beam must be in 0..{trace.beam - 1}, got {beam}")
    if not trace.alive[-1, beam]:
        raise DiffGRMError(f"final beam {beam} is dead (the search found fewer complete SIDs than the beam size)")


def _check_step(trace: DenoisingTrace, step: int) -> None:
    if not 0 <= step < trace.n_steps:
        raise DiffGRMError(f"step must be in 0..{trace.n_steps - 1} (0-based), got {step}")


def _final_beams(trace: DenoisingTrace, beams: int) -> list[int]:
    """The best ``beams`` final beams that are alive (last-step beams are sorted by score)."""
    if beams < 1:
        raise DiffGRMError(f"beams must be at least 1, got {beams}")
    alive = [int(r) for r in np.flatnonzero(trace.alive[-1])]
    if not alive:
        raise DiffGRMError("the trace has no complete SID: every final beam is dead")
    return alive[:beams]


@dataclass(frozen=True)
class _Fill:
    """What happened at one step on the way to one final beam."""

    step: int
    beam: int  # beam index at this step
    digit: int
    code: int
    prob: float
    runners_up: str  # "17 (0.120), 3 (0.050)" or "none"


def _runners_up(trace: DenoisingTrace, step: int, beam: int) -> str:
    pairs = [
        f"{int(c)} ({float(p):.3f})"
        for c, p in zip(trace.runner_up_codes[step, beam], trace.runner_up_probs[step, beam])
        if int(c) >= 0
    ]
    return ", ".join(pairs) if pairs else "none"


def _fills(trace: DenoisingTrace, final_beam: int) -> list[_Fill]:
    """One :class:`_Fill` per step along the lineage of ``final_beam``."""
    return [
        _Fill(
            step=s,
            beam=r,
            digit=int(trace.digit[s, r]),
            code=int(trace.code[s, r]),
            prob=float(trace.prob[s, r]),
            runners_up=_runners_up(trace, s, r),
        )
        for s, r in enumerate(trace.lineage(final_beam))
    ]


def _beam_label(
    trace: DenoisingTrace,
    rank: int,
    final_beam: int,
    titles: Sequence[str] | None,
    sids_to_title: Callable[[tuple[int, ...]], str | None] | None,
) -> str:
    """``#1 · title`` when a title is known, else ``#1 · 12-200-3-45``."""
    sid = tuple(int(c) for c in trace.tokens[-1, final_beam])
    title = None
    if sids_to_title is not None:
        title = sids_to_title(sid)
    elif titles is not None and final_beam < len(trace.items) and 0 <= int(trace.items[final_beam]) < len(titles):
        title = titles[int(trace.items[final_beam])]
    return f"#{rank + 1} · {_clean(title, 40) if title else sid_text(sid)}"


def _step_sliders(names: Sequence[str], labels: Sequence[str], active: int) -> tuple[list[dict], list[dict]]:
    """A step scrubber and play/pause buttons that jump between the animation frames ``names``."""
    jump = {"mode": "immediate", "frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}}
    slider = {
        "active": active,
        "currentvalue": {"prefix": "step ", "suffix": f" of {len(names)}"},
        "pad": {"t": 30},
        "steps": [{"label": lab, "method": "animate", "args": [[name], jump]} for name, lab in zip(names, labels)],
    }
    play = {"frame": {"duration": 800, "redraw": True}, "fromcurrent": True, "transition": {"duration": 0}}
    pause = {**jump, "frame": {"duration": 0, "redraw": False}}
    buttons = {
        "type": "buttons",
        "direction": "left",
        "x": 0.0,
        "y": 0.0,
        "xanchor": "right",
        "yanchor": "top",
        "pad": {"t": 30, "r": 10},
        "buttons": [
            {"label": "▶", "method": "animate", "args": [None, play]},
            {"label": "❚❚", "method": "animate", "args": [[None], pause]},
        ],
    }
    return [slider], [buttons]


# --- 1. denoising strip -------------------------------------------------------------------------


def strip_frame_data(trace: DenoisingTrace, step: int, beams: int = 8) -> pd.DataFrame:
    """The state of every digit of the top ``beams`` final beams after step ``step`` (0-based).

    One row per (beam_rank, digit); ``state`` is "masked" (not filled yet), "new" (filled at this
    very step) or "earlier"; ``prob`` and ``committed_step`` are those of the step that filled the
    digit (NaN / -1 while masked). Following the lineage means a row shows the ancestor of the
    final beam at that step, so committed digits never change from one step to the next.
    """
    _check_step(trace, step)
    rows = []
    for rank, final in enumerate(_final_beams(trace, beams)):
        fills = _fills(trace, final)
        done = {f.digit: f for f in fills[: step + 1]}
        for d in range(trace.tokens.shape[2]):
            f = done.get(d)
            rows.append(
                {
                    "beam_rank": rank,
                    "final_beam": final,
                    "beam": fills[step].beam,
                    "digit": d,
                    "state": "masked" if f is None else ("new" if f.step == step else "earlier"),
                    "code": -1 if f is None else f.code,
                    "prob": math.nan if f is None else f.prob,
                    "committed_step": -1 if f is None else f.step,
                    "runners_up": "" if f is None else f.runners_up,
                }
            )
    return pd.DataFrame(rows)


def _strip_traces(frame: pd.DataFrame, labels: Sequence[str], n_digits: int) -> list[go.BaseTraceType]:
    """Committed cells (coloured by probability), masked cells (grey, "?"), and outlines of the new ones."""
    n_rows = len(labels)
    z = np.full((n_rows, n_digits), np.nan)
    grey = np.full((n_rows, n_digits), np.nan)
    text = [[""] * n_digits for _ in range(n_rows)]  # each heatmap labels only its own cells
    question = [[""] * n_digits for _ in range(n_rows)]
    custom = [[[labels[r], "", "", ""] for _ in range(n_digits)] for r in range(n_rows)]
    for row in frame.itertuples(index=False):
        r, d = row.beam_rank, row.digit
        if row.state == "masked":
            grey[r, d], question[r][d] = 0.0, "?"
            continue
        z[r, d] = row.prob
        text[r][d] = str(row.code)
        custom[r][d] = [labels[r], row.code, row.committed_step + 1, row.runners_up]
    new = frame[frame["state"] == "new"]
    rows_y = list(range(n_rows))
    return [
        go.Heatmap(
            name="committed",
            z=z, x=list(range(n_digits)), y=rows_y, text=text, texttemplate="%{text}", customdata=custom,
            colorscale=PROB_SCALE, zmin=0.0, zmax=1.0, xgap=2, ygap=2, hoverongaps=False,
            colorbar={"title": {"text": "probability"}},
            hovertemplate=(
                "%{customdata[0]}<br>digit %{x}: code %{customdata[1]}<br>probability %{z:.3f}"
                "<br>committed at step %{customdata[2]}<br>runners-up: %{customdata[3]}<extra></extra>"
            ),
        ),
        go.Heatmap(
            name="masked",
            z=grey, x=list(range(n_digits)), y=rows_y, text=question, texttemplate="%{text}", customdata=custom,
            colorscale=_GREY_SCALE, zmin=0.0, zmax=1.0, showscale=False, xgap=2, ygap=2, hoverongaps=False,
            hovertemplate="%{customdata[0]}<br>digit %{x}: still masked<extra></extra>",
        ),
        go.Scatter(
            name="committed at this step",
            x=new["digit"].tolist(), y=new["beam_rank"].tolist(), mode="markers", hoverinfo="skip",
            marker={"symbol": "square-open", "size": _CELL_PX - 6, "color": HIGHLIGHT, "line": {"width": 3}},
        ),
    ]


def denoising_strip(
    trace: DenoisingTrace,
    *,
    beams: int = 8,
    titles: Sequence[str] | None = None,
    sids_to_title: Callable[[tuple[int, ...]], str | None] | None = None,
    initial_step: int | None = None,
) -> go.Figure:
    """How the top final beams came about: one row per beam, one column per digit, one frame per step.

    Each row follows its final beam's lineage, so scrubbing the slider shows digits being
    committed (outlined at the step they are filled) and never changing afterwards. Row labels
    use ``titles[trace.items[k]]`` (valid for catalogue-constrained search, where final beam k is
    item k) or, when given, ``sids_to_title(full_sid)`` (e.g. for unconstrained search).
    ``initial_step`` (0-based, default the last) is the frame shown before any interaction.
    """
    finals = _final_beams(trace, beams)
    n_steps, n_digits = trace.n_steps, trace.tokens.shape[2]
    initial = n_steps - 1 if initial_step is None else initial_step
    _check_step(trace, initial)
    labels = [_beam_label(trace, rank, k, titles, sids_to_title) for rank, k in enumerate(finals)]

    names = [f"step {s + 1}" for s in range(n_steps)]
    frames = [
        go.Frame(name=names[s], data=_strip_traces(strip_frame_data(trace, s, beams), labels, n_digits))
        for s in range(n_steps)
    ]
    sliders, menus = _step_sliders(names, [str(s + 1) for s in range(n_steps)], initial)
    fig = go.Figure(data=frames[initial].data, frames=frames)
    fig.update_layout(
        title={"text": f"Denoising, {trace.decoder.upper()} ({trace.order} order): top {len(finals)} final beams"},
        xaxis={"tickvals": list(range(n_digits)), "ticktext": [f"digit {d}" for d in range(n_digits)],
               "side": "top", "showgrid": False, "zeroline": False},
        yaxis={"tickvals": list(range(len(finals))), "ticktext": labels, "autorange": "reversed",
               "showgrid": False, "zeroline": False},
        plot_bgcolor="white",
        height=170 + _CELL_PX * len(finals),
        legend={"orientation": "h", "y": -0.02, "yanchor": "top", "x": 1.0, "xanchor": "right"},
        sliders=sliders,
        updatemenus=menus,
        margin={"t": 90, "b": 100},
    )
    return fig


# --- 2. confidence heatmap ----------------------------------------------------------------------


def confidence_heatmap(trace: DenoisingTrace, *, beam: int = 0, metric: str = "max_prob") -> go.Figure:
    """How sure the decoder was of every still-open digit at every step, for one final beam.

    CPD fills the digit it is most confident about; this shows that choice against the
    alternatives. Digits filled at an earlier step, and digits an AR decoder did not predict at that
    step (its distributions hold zeros there), are grey: they were not candidates.
    """
    if metric not in METRICS:
        raise DiffGRMError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    _check_beam(trace, beam)
    n_steps, n_digits, k = trace.n_steps, trace.tokens.shape[2], trace.distributions.shape[-1]
    conf = trace.confidence(beam)
    fills = _fills(trace, beam)
    committed_at = {f.digit: f.step for f in fills}

    z = np.full((n_steps, n_digits), np.nan)
    grey = np.full((n_steps, n_digits), np.nan)
    why = [["" for _ in range(n_digits)] for _ in range(n_steps)]
    for row in conf.itertuples(index=False):
        s, d = int(row.step), int(row.digit)
        predicted = trace.distributions[s, fills[s].beam, d].sum() > 0
        if committed_at[d] < s:
            grey[s, d], why[s][d] = 0.0, f"committed at step {committed_at[d] + 1}"
        elif not predicted:
            grey[s, d], why[s][d] = 0.0, "not predicted at this step"
        else:
            z[s, d] = getattr(row, metric)

    if metric == "max_prob":
        scale, zmax, bar, fmt = PROB_SCALE, 1.0, "max probability", ".3f"
    else:  # low entropy = confident: reverse the scale so "sure" has the same colour in both metrics
        scale, zmax, bar, fmt = PROB_SCALE + "_r", math.log2(k), "entropy (bits)", ".2f"
    steps_y = list(range(n_steps))
    fig = go.Figure(
        [
            go.Heatmap(
                name=metric, z=z, x=list(range(n_digits)), y=steps_y, colorscale=scale, zmin=0.0, zmax=zmax,
                text=[[format(v, fmt) if np.isfinite(v) else "" for v in row] for row in z],
                texttemplate="%{text}", xgap=2, ygap=2, hoverongaps=False,
                colorbar={"title": {"text": bar}},
                hovertemplate="step %{customdata}<br>digit %{x}<br>" + bar + " %{z:" + fmt + "}<extra></extra>",
                customdata=[[s + 1] * n_digits for s in range(n_steps)],
            ),
            go.Heatmap(
                name="not open", z=grey, x=list(range(n_digits)), y=steps_y, colorscale=_GREY_SCALE,
                zmin=0.0, zmax=1.0, showscale=False, xgap=2, ygap=2, hoverongaps=False, text=why,
                hovertemplate="digit %{x}: %{text}<extra></extra>",
            ),
            go.Scatter(
                name="filled at this step",
                x=[f.digit for f in fills], y=[f.step for f in fills], mode="markers",
                customdata=[[f.step + 1, f.code, f.prob] for f in fills],
                marker={"symbol": "square-open", "size": _CELL_PX - 6, "color": HIGHLIGHT, "line": {"width": 3}},
                hovertemplate="step %{customdata[0]}: filled digit %{x} with code %{customdata[1]}"
                "<br>probability %{customdata[2]:.3f}<extra></extra>",
            ),
        ]
    )
    fig.update_layout(
        title={"text": f"{bar.capitalize()} per step and digit, final beam #{beam + 1} "
                       f"({trace.decoder.upper()}, {trace.order} order)"},
        xaxis={"tickvals": list(range(n_digits)), "ticktext": [f"digit {d}" for d in range(n_digits)],
               "side": "top", "showgrid": False, "zeroline": False},
        yaxis={"tickvals": steps_y, "ticktext": [f"step {s + 1}" for s in steps_y], "autorange": "reversed",
               "showgrid": False, "zeroline": False},
        plot_bgcolor="white",
        height=150 + _CELL_PX * n_steps,
        legend={"orientation": "h", "y": -0.02, "yanchor": "top"},
    )
    return fig


# --- 3. alternatives at one step ----------------------------------------------------------------


def alternatives_figure(trace: DenoisingTrace, *, beam: int = 0, step: int, top: int = 5) -> go.Figure:
    """What else the decoder could have written at step ``step``, for the lineage of final beam ``beam``.

    For every digit still masked in the parent state, the ``top`` most likely codes of the model's
    prediction (before the catalogue constraint), with the code actually chosen highlighted (and
    added below the top ones if it ranked lower). Digits the decoder did not predict at that step
    (AR predicts only digit ``step``) are left out.
    """
    _check_beam(trace, beam)
    _check_step(trace, step)
    if top < 1:
        raise DiffGRMError(f"top must be at least 1, got {top}")
    fill = _fills(trace, beam)[step]
    n_digits = trace.tokens.shape[2]
    parent = trace.tokens[step - 1, trace.lineage(beam)[step - 1]] if step else np.full(n_digits, -1)
    dist = trace.distributions[step, fill.beam]  # [n, K]: the parent's prediction
    digits = [d for d in range(n_digits) if parent[d] < 0 and dist[d].sum() > 0]

    fig = make_subplots(
        rows=len(digits), cols=1, shared_xaxes=True, vertical_spacing=min(0.08, 0.5 / max(len(digits) - 1, 1)),
        subplot_titles=[f"digit {d}" + (f": chose code {fill.code}" if d == fill.digit else "") for d in digits],
    )
    for i, d in enumerate(digits, start=1):
        codes = [int(c) for c in np.argsort(-dist[d], kind="stable")[:top]]
        if d == fill.digit and fill.code not in codes:
            codes.append(fill.code)
        chosen = [d == fill.digit and c == fill.code for c in codes]
        fig.add_trace(
            go.Bar(
                name=f"digit {d}", orientation="h", showlegend=False,
                x=[float(dist[d, c]) for c in codes], y=[f"code {c}" for c in codes],
                marker={"color": [HIGHLIGHT if ch else "#7f8c9b" for ch in chosen]},
                customdata=[[c, "chosen" if ch else ""] for c, ch in zip(codes, chosen)],
                hovertemplate=f"digit {d}<br>code %{{customdata[0]}}<br>probability %{{x:.3f}}"
                "<br>%{customdata[1]}<extra></extra>",
            ),
            row=i, col=1,
        )
        fig.update_yaxes(autorange="reversed", row=i, col=1)
    fig.update_xaxes(range=[0.0, 1.0], title_text="probability", row=len(digits), col=1)
    fig.update_layout(
        title={"text": f"Step {step + 1}: candidates for the open digits, final beam #{beam + 1} "
                       f"(filled digit {fill.digit} with code {fill.code})"},
        height=120 + (40 + 22 * (top + 1)) * len(digits),
        bargap=0.25,
    )
    return fig


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


def project_codebook(
    subvectors: np.ndarray,
    centroids: np.ndarray,
    *,
    codes: np.ndarray | None = None,
    method: str = "umap",
    seed: int = 0,
    max_items: int | None = 5000,
) -> dict[int, pd.DataFrame]:
    """Per digit, 2-D coordinates of the K centroids and the items' sub-vectors, fitted together.

    Slow (UMAP) and user-independent, so the app computes it once and caches it. Columns: ``x``,
    ``y``, ``kind`` ("centroid" | "item"), ``code`` (the centroid's code, or the item's code at that
    digit: ``codes[:, d]`` when given, else its nearest centroid) and ``item`` (-1 for centroids).
    More than ``max_items`` items are subsampled with ``seed`` (same seed, same sample). Without
    umap-learn, "umap" falls back to PCA with a warning; ``df.attrs["method"]`` says which ran.
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
        xy = _umap_2d(x, seed) if method == "umap" else _pca_2d(x)
        if codes is not None:
            item_codes = np.asarray(codes)[items, d]
        else:
            y = sub[items, d]  # squared distances without an [items, K, dsub] temporary
            dist = (y**2).sum(1)[:, None] - 2 * y @ cent[d].T + (cent[d] ** 2).sum(1)[None]
            item_codes = dist.argmin(1)
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
        out[d] = frame
    return out


def codebook_figure(
    coords: pd.DataFrame,
    *,
    digit: int,
    titles: Sequence[str],
    sids: np.ndarray,
    history: Sequence[int] = (),
    recommended: Sequence[int] = (),
) -> go.Figure:
    """One digit's codebook as a map: items, centroids, and where a user's history and recommendations sit.

    ``coords`` is ``project_codebook(...)[digit]``. A history or recommended item that was not in
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
    for name, chosen in (("history", history), ("recommended", recommended)):
        bad = [int(i) for i in chosen if not 0 <= int(i) < len(sids)]
        if bad:
            raise DiffGRMError(f"{name} holds item indices outside 0..{len(sids) - 1}: {bad[:5]}")

    item_rows = coords[coords["kind"] == "item"]
    cent_rows = coords[coords["kind"] == "centroid"]
    per_code = np.bincount(sids[:, digit], minlength=int(cent_rows["code"].max()) + 1 if len(cent_rows) else 0)
    item_xy = {int(i): (float(x), float(y)) for i, x, y in zip(item_rows["item"], item_rows["x"], item_rows["y"])}
    cent_xy = {int(c): (float(x), float(y)) for c, x, y in zip(cent_rows["code"], cent_rows["x"], cent_rows["y"])}

    def info(i: int, note: str = "") -> list:
        return [i, _clean(titles[i], 80), sid_text(sids[i]), int(sids[i, digit]), note]

    item_hover = ("%{customdata[1]}<br>SID %{customdata[2]} (digit " + str(digit) + ": code %{customdata[3]})"
                  "<br>item %{customdata[0]}%{customdata[4]}<extra>%{fullData.name}</extra>")
    fig = go.Figure()
    fig.add_trace(
        go.Scattergl(
            name="items", x=item_rows["x"], y=item_rows["y"], mode="markers",
            marker={"size": 4, "color": "#9aa5b1", "opacity": 0.5},
            customdata=[info(int(i)) for i in item_rows["item"]], hovertemplate=item_hover,
        )
    )
    fig.add_trace(
        go.Scatter(
            name="centroids", x=cent_rows["x"], y=cent_rows["y"], mode="markers",
            marker={"size": 7, "symbol": "diamond", "color": "#333333"},
            customdata=[[int(c), int(per_code[c]) if c < len(per_code) else 0] for c in cent_rows["code"]],
            hovertemplate=f"digit {digit}, code %{{customdata[0]}}<br>%{{customdata[1]}} items<extra>centroid</extra>",
        )
    )
    history_style = {"size": 11, "symbol": "circle", "color": HISTORY, "line": {"width": 1, "color": "white"}}
    recommended_style = {"size": 14, "symbol": "star", "color": HIGHLIGHT, "line": {"width": 1, "color": "black"}}
    for name, chosen, style in (("history", history, history_style), ("recommended", recommended, recommended_style)):
        chosen = list(dict.fromkeys(int(i) for i in chosen))  # unique, in the given order
        xs, ys, data = [], [], []
        for i in chosen:
            if i in item_xy:
                (x, y), note = item_xy[i], ""
            else:
                (x, y) = cent_xy.get(int(sids[i, digit]), (math.nan, math.nan))
                note = "<br>(not in the projected sample: drawn at its code's centroid)"
            xs.append(x), ys.append(y), data.append(info(i, note))
        fig.add_trace(go.Scatter(name=name, x=xs, y=ys, mode="markers", marker=style, customdata=data,
                                 hovertemplate=item_hover))

    method = coords.attrs.get("method", "umap")
    note = (
        "UMAP keeps neighbourhoods: distances between clusters mean little."
        if method == "umap"
        else "PCA: a linear 2-D shadow of the sub-vectors; codes that look close may not be."
    )
    fig.update_layout(
        title={"text": f"Codebook of digit {digit} ({method.upper()} of centroids and item sub-vectors)"},
        annotations=[{"text": note, "xref": "paper", "yref": "paper", "x": 0.0, "y": 1.0, "yanchor": "bottom",
                      "showarrow": False, "font": {"size": 11, "color": "#555555"}}],
        xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"},
        plot_bgcolor="white", height=560,
    )
    return fig


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
    fig.update_yaxes(range=[0, max(before, after, 0.01) * 1.25], tickformat=".0%", row=1, col=2)
    if detail:
        fig.update_xaxes(title_text=detail, row=1, col=2)
    fig.update_layout(
        title={"text": f"Codebook health: {len(codes)} items, {len(per_digit)} digits x {codebook_size} codes"},
        legend={"orientation": "h", "y": -0.2},
        height=460,
    )
    return fig


# --- 6. decoding orders side by side ------------------------------------------------------------


def compare_orders(traces: Mapping[str, DenoisingTrace], *, beam: int = 0) -> go.Figure:
    """Several decoders/orders on one user: the probability of each step's fill, and the running score.

    A confidence order should commit the sure digits first (high early probabilities); the
    cumulative log-probability at the last step is the final beam's score, so the lower panel
    also says which order found the better SID.
    """
    if not traces:
        raise DiffGRMError("compare_orders needs at least one trace")
    steps = {t.n_steps for t in traces.values()}
    if len(steps) != 1:
        raise DiffGRMError(f"the traces have different numbers of steps: {sorted(steps)}")
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
        subplot_titles=["probability of the digit committed at each step", "cumulative log-probability"],
    )
    for i, (name, trace) in enumerate(traces.items()):
        _check_beam(trace, beam)
        fills = _fills(trace, beam)
        lineage = trace.lineage(beam)
        x = [f.step + 1 for f in fills]
        custom = [[f.digit, f.code, sid_text(trace.tokens[f.step, f.beam])] for f in fills]
        style = {"color": PALETTE[i % len(PALETTE)]}
        hover = "step %{x}: digit %{customdata[0]} = code %{customdata[1]}<br>SID so far %{customdata[2]}<br>"
        fig.add_trace(
            go.Scatter(name=name, legendgroup=name, x=x, y=[f.prob for f in fills], mode="lines+markers",
                       line=style, marker=style, customdata=custom,
                       hovertemplate=hover + "probability %{y:.3f}<extra>%{fullData.name}</extra>"),
            row=1, col=1,
        )
        fig.add_trace(
            go.Scatter(name=name, legendgroup=name, showlegend=False, x=x,
                       y=[float(trace.score[s, r]) for s, r in enumerate(lineage)], mode="lines+markers",
                       line=style, marker=style, customdata=custom,
                       hovertemplate=hover + "log-probability %{y:.3f}<extra>%{fullData.name}</extra>"),
            row=2, col=1,
        )
    n = steps.pop()
    fig.update_xaxes(tickvals=list(range(1, n + 1)), range=[0.7, n + 0.3])
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_yaxes(range=[0.0, 1.02], title_text="probability", row=1, col=1)
    fig.update_yaxes(title_text="log-prob", row=2, col=1)
    fig.update_layout(title={"text": f"Decoding orders compared, final beam #{beam + 1}"}, height=560,
                      hovermode="closest")
    return fig
