"""The "why not this item?" figure: the kept beams' scores per step, and where an item's SID fell out.

Takes a :class:`~diffgrm.why.WhyNot` (from ``Explorer.why_not`` or :func:`diffgrm.why.why_not`)
and returns a plotly figure; nothing here runs a model.
"""

from __future__ import annotations

import textwrap

import numpy as np
import plotly.graph_objects as go

from diffgrm.errors import DiffGRMError
from diffgrm.viz.style import HIGHLIGHT, HISTORY, MASKED_GREY, clean_label, figure_title
from diffgrm.why import WhyNot

VERDICT_TITLES = {
    "recommended": "recommended",
    "below_top_k": "kept to the end, below the Top-K",
    "outscored": "outscored: fell out of the beam",
    "redundant": "dropped as redundant",
    "unreachable": "ruled out by the network",
}


def why_not_figure(why: WhyNot, *, title: str = "", item_title: str | None = None,
                   message: bool = True) -> go.Figure:
    """Per step (1-based): the band of kept beams' scores, the item's best partial SID while it was
    kept, and, where it fell out, the score its best candidate would have had.

    The heading names the item by ``item_title`` (else "Item <index>"); ``title`` replaces it.
    ``message=False`` leaves ``why.message`` out of the subtitle (for a page that prints it already)."""
    path = why.path
    if path.empty or not {"step", "lowest_kept", "highest_kept", "score", "rank"} <= set(path.columns):
        raise DiffGRMError("why.path is empty: pass the result of why_not(...)")
    steps = path["step"].to_numpy() + 1
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=steps, y=path["highest_kept"], mode="lines", line={"width": 0, "color": MASKED_GREY},
                             showlegend=False, hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=steps, y=path["lowest_kept"], mode="lines", fill="tonexty", name="kept beams (lowest to highest score)",
        line={"width": 1, "color": "#888888"}, fillcolor="rgba(200,200,200,0.5)",
        customdata=np.stack([path["kept"], path["highest_kept"]], axis=1),
        hovertemplate="step %{x}: %{customdata[0]} beams kept, scores %{y:.2f} .. %{customdata[1]:.2f}<extra></extra>",
    ))
    kept = path["score"].notna()
    fig.add_trace(go.Scatter(
        x=steps[kept], y=path.loc[kept, "score"], mode="lines+markers", name="this item's best partial SID",
        marker={"size": 9, "color": HISTORY}, line={"color": HISTORY},
        customdata=path.loc[kept, ["rank", "kept"]].to_numpy(),
        hovertemplate="step %{x}: rank %{customdata[0]} of %{customdata[1]}, score %{y:.2f}<extra></extra>",
    ))
    if why.step is not None and why.score is not None and np.isfinite(why.score):
        fig.add_trace(go.Scatter(
            x=[why.step + 1], y=[why.score], mode="markers", name="its best candidate, not kept",
            marker={"size": 14, "symbol": "x", "color": HIGHLIGHT},
            hovertemplate=(f"step {why.step + 1}: digit {why.digit} = code {why.code}, p = {why.prob:.3g}<br>"
                           f"score %{{y:.2f}} vs lowest kept {why.lowest_kept:.2f}<extra></extra>"),
        ))
    name = clean_label(item_title, 70) if item_title else f"Item {why.item}"
    heading = clean_label(title, 90) if title else f"{name}: {VERDICT_TITLES.get(why.verdict, why.verdict)}"
    n = int(path["step"].max()) + 1
    lines = textwrap.wrap(why.message, 110) if message else []
    fig.update_layout(
        title=figure_title(heading, "<br>".join(lines) or None),
        # every step gets its tick: the axis runs half a step past the first and last one
        xaxis={"title": "step", "tickmode": "array", "tickvals": list(range(1, n + 1)), "range": [0.6, n + 0.4]},
        yaxis={"title": "score (summed log-probability)"},
        plot_bgcolor="white", height=400 + 18 * len(lines), margin={"t": 60},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig
