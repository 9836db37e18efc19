"""Figures of one decoding: the denoising strip, per-digit confidence, alternatives, orders compared.

Each takes a :class:`~diffgrm.trace.DenoisingTrace` (from ``Recommender.search`` or
``Explorer.recommend``) and returns a plotly figure; nothing here runs a model. What they read
from a trace (checked beams and steps, the fills along a lineage) is in ``lineage.py``.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from diffgrm.code_words import code_label
from diffgrm.errors import DiffGRMError
from diffgrm.trace import DenoisingTrace
from diffgrm.viz.lineage import _beam_label, _check_beam, _check_step, _fills, _final_beams
from diffgrm.viz.style import (
    _CELL_PX,
    _GREY_SCALE,
    HIGHLIGHT,
    METRICS,
    PALETTE,
    PROB_SCALE,
    figure_title,
    sid_text,
)

# --- animation controls -------------------------------------------------------------------------


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


START = -1
"""The ``step`` of the state before any fill, every digit masked: what a decoding starts from (the
explorer's "Step 0 of n")."""


def strip_frame_data(trace: DenoisingTrace, step: int, beams: int = 8) -> pd.DataFrame:
    """The state of every digit of the top ``beams`` final beams after step ``step`` (0-based;
    :data:`START` for the start, every digit masked).

    One row per (beam_rank, digit); ``state`` is "masked" (not filled yet), "new" (filled by this
    step's network pass, up to this step: with one digit per pass, at this very step) or
    "earlier"; ``prob``, ``committed_step`` and ``committed_pass`` are those of the step that
    filled the digit (NaN / -1 while masked). Following the lineage means a row shows the ancestor
    of the final beam at that step, so committed digits never change from one step to the next.
    """
    if step != START:
        _check_step(trace, step)
    passes = trace.step_passes
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
                    "beam": fills[step].beam if step != START else -1,
                    "digit": d,
                    "state": "masked" if f is None else ("new" if passes[f.step] == passes[step] else "earlier"),
                    "code": -1 if f is None else f.code,
                    "prob": math.nan if f is None else f.prob,
                    "committed_step": -1 if f is None else f.step,
                    "committed_pass": -1 if f is None else int(passes[f.step]),
                    "runners_up": "" if f is None else f.runners_up,
                }
            )
    return pd.DataFrame(rows)


def _strip_traces(frame: pd.DataFrame, labels: Sequence[str], n_digits: int,
                  code_words: Sequence[Sequence[Sequence[str]]] | None = None) -> list[dict]:
    """Committed cells (coloured by probability; the code, and its first word when ``code_words`` names
    it), masked cells (grey, "?"), and outlines of the new ones."""
    n_rows = len(labels)
    z = np.full((n_rows, n_digits), np.nan)
    grey = np.full((n_rows, n_digits), np.nan)
    text = [[""] * n_digits for _ in range(n_rows)]  # each heatmap labels only its own cells
    question = [[""] * n_digits for _ in range(n_rows)]
    custom = [[[labels[r], "", "", "", ""] for _ in range(n_digits)] for r in range(n_rows)]
    for row in frame.itertuples(index=False):
        r, d = row.beam_rank, row.digit
        if row.state == "masked":
            grey[r, d], question[r][d] = 0.0, "?"
            continue
        z[r, d] = row.prob
        words = code_label(code_words, d, int(row.code))
        text[r][d] = f"{row.code}<br><sub>{words.split(', ')[0]}</sub>" if words else str(row.code)
        custom[r][d] = [labels[r], row.code, f"{row.committed_step + 1} (pass {row.committed_pass + 1})",
                        row.runners_up, f" ({words})" if words else ""]
    new = frame[frame["state"] == "new"]
    rows_y = list(range(n_rows))
    # plain dicts, turned into plotly objects once by the figure: building go.Heatmap objects first and
    # then the figure validated everything twice (4x slower; a user switch in the app draws this figure)
    return [
        dict(
            type="heatmap", name="committed",
            z=z, x=list(range(n_digits)), y=rows_y, text=text, texttemplate="%{text}", customdata=custom,
            colorscale=PROB_SCALE, zmin=0.0, zmax=1.0, xgap=2, ygap=2, hoverongaps=False,
            colorbar={"title": {"text": "probability"}},
            hovertemplate=(
                "%{customdata[0]}<br>digit %{x}: code %{customdata[1]}%{customdata[4]}<br>probability %{z:.3f}"
                "<br>committed at step %{customdata[2]}<br>runners-up: %{customdata[3]}<extra></extra>"
            ),
        ),
        dict(
            type="heatmap", name="masked",
            z=grey, x=list(range(n_digits)), y=rows_y, text=question, texttemplate="%{text}", customdata=custom,
            colorscale=_GREY_SCALE, zmin=0.0, zmax=1.0, showscale=False, xgap=2, ygap=2, hoverongaps=False,
            hovertemplate="%{customdata[0]}<br>digit %{x}: still masked<extra></extra>",
        ),
        dict(
            type="scatter", name="committed by this pass",
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
    player: bool = True,
    code_words: Sequence[Sequence[Sequence[str]]] | None = None,
) -> go.Figure:
    """How the top final beams came about: one row per beam, one column per digit, one frame per step.

    Each row follows its final beam's lineage, so scrubbing the slider shows digits being
    committed (outlined at the step they are filled) and never changing afterwards. Row labels
    use ``titles[trace.items[k]]`` (valid for catalogue-constrained search, where final beam k is
    item k) or, when given, ``sids_to_title(full_sid)`` (e.g. for unconstrained search).
    ``initial_step`` (0-based, default the last) is the frame shown before any interaction.
    ``player=False`` draws that one step with no frames, slider or play button: for a page
    that has its own step control (the app's slider), so the reader meets one control, not two;
    it may be :data:`START`, the fully masked SID the decoding starts from. ``code_words``
    (``diffgrm.code_words.code_words``) names each committed code by its items' words.
    """
    finals = _final_beams(trace, beams)
    n_steps, n_digits = trace.n_steps, trace.tokens.shape[2]
    initial = n_steps - 1 if initial_step is None else initial_step
    if not (initial == START and not player):
        _check_step(trace, initial)
    labels = [_beam_label(trace, rank, k, titles, sids_to_title) for rank, k in enumerate(finals)]

    names = [f"step {s + 1}" for s in range(n_steps)]
    passes = trace.step_passes
    fewer = trace.n_passes < n_steps  # several digits per pass: say which pass each step belongs to
    in_passes = f", {n_steps} digits in {trace.n_passes} network passes" if fewer else ""
    title = (f"Denoising, {trace.decoder.upper()} ({trace.order} order{in_passes}): "
             f"top {len(finals)} final beams")
    layout = dict(
        xaxis={"tickvals": list(range(n_digits)), "ticktext": [f"digit {d}" for d in range(n_digits)],
               "side": "top", "showgrid": False, "zeroline": False},
        yaxis={"tickvals": list(range(len(finals))), "ticktext": labels, "autorange": "reversed",
               "showgrid": False, "zeroline": False, "automargin": True},
        plot_bgcolor="white",
        legend={"orientation": "h", "y": -0.02, "yanchor": "top", "x": 1.0, "xanchor": "right"},
    )
    if not player:
        step_note = f" (pass {passes[initial] + 1})" if fewer and initial != START else ""
        when = f"step 0 of {n_steps}, every digit masked" if initial == START else f"after step {initial + 1} of {n_steps}"
        layout.update(title=figure_title(f"{title}, {when}{step_note}"),
                      height=130 + _CELL_PX * len(finals), margin={"t": 90, "b": 40})
        return go.Figure(data=_strip_traces(strip_frame_data(trace, initial, beams), labels, n_digits, code_words),
                         layout=layout)
    frames = [
        go.Frame(name=names[s], data=_strip_traces(strip_frame_data(trace, s, beams), labels, n_digits, code_words))
        for s in range(n_steps)
    ]
    ticks = [f"{s + 1} (pass {passes[s] + 1})" if fewer else str(s + 1) for s in range(n_steps)]
    sliders, menus = _step_sliders(names, ticks, initial)
    layout.update(title=figure_title(title), height=170 + _CELL_PX * len(finals), sliders=sliders, updatemenus=menus,
                  margin={"t": 100, "b": 100})
    return go.Figure(data=frames[initial].data, frames=frames, layout=layout)


# --- 2. confidence heatmap ----------------------------------------------------------------------


def confidence_heatmap(trace: DenoisingTrace, *, beam: int = 0, metric: str = "max_prob") -> go.Figure:
    """How sure the decoder was of every still-open digit at every step, for one final beam.

    The outlined cell is the fill on the way to this final beam. It need not be the most confident
    cell of its row: every kept beam may fill any open digit, and the search keeps the partial
    SIDs with the best summed log-probability, so the best final SID may descend from a fill that
    was not the single surest one (``DenoisingTrace.fills_table`` lists the competing fills).
    Digits filled at an earlier step, and digits an AR decoder did not predict at that step (its
    distributions hold zeros there), are grey: they were not candidates.
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
    data = [
        dict(
            type="heatmap", name=metric, z=z, x=list(range(n_digits)), y=steps_y, colorscale=scale, zmin=0.0,
            zmax=zmax, text=[[format(v, fmt) if np.isfinite(v) else "" for v in row] for row in z],
            texttemplate="%{text}", xgap=2, ygap=2, hoverongaps=False, colorbar={"title": {"text": bar}},
            hovertemplate="step %{customdata}<br>digit %{x}<br>" + bar + " %{z:" + fmt + "}<extra></extra>",
            customdata=[[s + 1] * n_digits for s in range(n_steps)],
        ),
        dict(
            type="heatmap", name="not open", z=grey, x=list(range(n_digits)), y=steps_y, colorscale=_GREY_SCALE,
            zmin=0.0, zmax=1.0, showscale=False, xgap=2, ygap=2, hoverongaps=False, text=why,
            hovertemplate="digit %{x}: %{text}<extra></extra>",
        ),
        dict(
            type="scatter", name="filled at this step",
            x=[f.digit for f in fills], y=[f.step for f in fills], mode="markers",
            customdata=[[f.step + 1, f.code, f.prob] for f in fills],
            marker={"symbol": "square-open", "size": _CELL_PX - 6, "color": HIGHLIGHT, "line": {"width": 3}},
            hovertemplate="step %{customdata[0]}: filled digit %{x} with code %{customdata[1]}"
            "<br>probability %{customdata[2]:.3f}<extra></extra>",
        ),
    ]
    layout = dict(
        title=figure_title(f"{bar.capitalize()} per step and digit",
                           f"on the way to final beam #{beam + 1} ({trace.decoder.upper()}, {trace.order} order); "
                           "outlined: the digit filled"),
        xaxis={"tickvals": list(range(n_digits)), "ticktext": [f"digit {d}" for d in range(n_digits)],
               "side": "top", "showgrid": False, "zeroline": False},
        yaxis={"tickvals": steps_y, "ticktext": [f"step {s + 1}" for s in steps_y], "autorange": "reversed",
               "showgrid": False, "zeroline": False},
        plot_bgcolor="white",
        height=190 + _CELL_PX * n_steps,
        legend={"orientation": "h", "y": -0.02, "yanchor": "top"},
    )
    return go.Figure(data=data, layout=layout)


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

    data, biggest = [], 0.0
    for i, d in enumerate(digits, start=1):
        codes = [int(c) for c in np.argsort(-dist[d], kind="stable")[:top]]
        if d == fill.digit and fill.code not in codes:
            codes.append(fill.code)
        chosen = [d == fill.digit and c == fill.code for c in codes]
        values = [float(dist[d, c]) for c in codes]
        biggest = max(biggest, *values)
        data.append(dict(
            type="bar", name=f"digit {d}", orientation="h", showlegend=False, xaxis=_axis("x", i), yaxis=_axis("y", i),
            x=values, y=[f"code {c}" for c in codes],
            text=[f"{v:.3f}" for v in values], textposition="outside", cliponaxis=False,
            marker={"color": [HIGHLIGHT if ch else "#7f8c9b" for ch in chosen]},
            customdata=[[c, "chosen" if ch else ""] for c, ch in zip(codes, chosen)],
            hovertemplate=f"digit {d}<br>code %{{customdata[0]}}<br>probability %{{x:.3f}}"
            "<br>%{customdata[1]}<extra></extra>",
        ))
    # the axis fits the largest bar (with room for its printed value), so small probabilities stay readable
    upper = min(1.0, max(biggest * 1.3, 0.02))
    layout = _stacked_rows([f"digit {d}" + (f": chose code {fill.code}" if d == fill.digit else "") for d in digits],
                           x_range=[0.0, upper], x_title="probability (axis fits the largest bar)")
    layout.update(
        title=figure_title(f"Step {step + 1}: candidates for the open digits",
                           f"on the way to final beam #{beam + 1}: filled digit {fill.digit} with code {fill.code}"),
        height=150 + (40 + 22 * (top + 1)) * len(digits),
        bargap=0.25,
    )
    return go.Figure(data=data, layout=layout)


def _stacked_rows(titles: Sequence[str], *, x_range: list[float], x_title: str) -> dict:
    """The layout of one bar chart per row sharing the x range, each titled, codes top down: what
    ``make_subplots(rows, 1, shared_xaxes=True)`` builds, written out (make_subplots alone took
    longer than the whole figure does now)."""
    rows = len(titles)
    gap = min(0.08, 0.5 / max(rows - 1, 1))
    height = (1.0 - gap * (rows - 1)) / rows
    layout: dict = {"annotations": []}
    for i, text in enumerate(titles, start=1):
        top = 1.0 - (i - 1) * (height + gap)
        x, y = _axis("x", i), _axis("y", i)
        layout[x.replace("x", "xaxis")] = {"domain": [0.0, 1.0], "anchor": y, "range": x_range,
                               "showticklabels": i == rows, **({"matches": "x"} if i > 1 else {}),
                               **({"title": {"text": x_title}} if i == rows else {})}
        layout[y.replace("y", "yaxis")] = {"domain": [max(0.0, top - height), min(1.0, top)], "anchor": x, "autorange": "reversed"}
        layout["annotations"].append({"text": text, "x": 0.5, "xref": "paper", "xanchor": "center", "y": top,
                                      "yref": "paper", "yanchor": "bottom", "showarrow": False,
                                      "font": {"size": 16}})
    return layout


def _axis(letter: str, row: int) -> str:
    """Plotly's name for row ``row``'s axis: x, x2, x3, ..."""
    return letter if row == 1 else f"{letter}{row}"


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
    fig.update_layout(title=figure_title(f"Decoding orders compared, final beam #{beam + 1}"), height=560,
                      margin={"t": 70},
                      hovermode="closest")
    return fig
