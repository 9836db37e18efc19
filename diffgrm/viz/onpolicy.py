"""OCN's views beside CPD's fills: one user's two trajectories, and the agreement over many users."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from diffgrm.errors import DiffGRMError
from diffgrm.viz.style import MASKED_GREY, figure_title

KNOWN = "#56B4E9"  # a digit shown to the network (OCN) or filled by the beam (CPD)
SAME = "#009E73"  # ... and the two trajectories know the same digits at that row


def views_beside_fills(ocn_order: Sequence[int], cpd_order: Sequence[int], sid: Sequence[int],
                       cpd_codes: Sequence[int] | None = None) -> go.Figure:
    """Two grids, one row per number of known digits (0 .. n-1): left, the OCN view of the target
    ``sid`` that masks all but the first k digits of ``ocn_order``; right, CPD's best beam after k
    fills (``cpd_order``, the codes it chose in ``cpd_codes``). A row is green where both know the
    same digits: there OCN trained on the very state CPD passes through."""
    ocn, cpd, sid = list(map(int, ocn_order)), list(map(int, cpd_order)), list(map(int, sid))
    n = len(sid)
    if sorted(ocn) != list(range(n)) or sorted(cpd) != list(range(n)):
        raise DiffGRMError(f"both orders must be permutations of the {n} digits, got {ocn} and {cpd}")
    codes = list(map(int, cpd_codes)) if cpd_codes is not None else sid
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("OCN's views of the held-out SID", "CPD's best beam, fill by fill"))
    for col, order, shown in ((1, ocn, sid), (2, cpd, codes)):
        z, text = np.zeros((n, n)), [[""] * n for _ in range(n)]
        for k in range(n):
            known, same = set(order[:k]), set(ocn[:k]) == set(cpd[:k])
            for d in range(n):
                z[k, d] = (2 if same else 1) if d in known else 0
                text[k][d] = str(shown[d]) if d in known else "?"
        fig.add_trace(go.Heatmap(z=z, text=text, texttemplate="%{text}", zmin=0, zmax=2, showscale=False, xgap=2,
                                 ygap=2, colorscale=[[0, MASKED_GREY], [0.5, KNOWN], [1, SAME]],
                                 x=[f"digit {d}" for d in range(n)], y=[f"{k} known" for k in range(n)],
                                 hovertemplate="%{y}, %{x}: %{text}<extra></extra>"), row=1, col=col)
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    agree = sum(set(ocn[:k]) == set(cpd[:k]) for k in range(1, n))
    fig.update_layout(title=figure_title(f"OCN trained on {agree} of the {n - 1} partial states CPD passed through "
                                         "(green rows)"),
                      height=140 + 45 * n, margin={"t": 110, "b": 30}, plot_bgcolor="white")
    return fig


def order_agreement_figure(result: Mapping[str, object]) -> go.Figure:
    """``onpolicy.agreement(...)`` drawn: at each CPD step, which of OCN's ranks the filled digit had
    (share of users); the diagonal is where CPD follows the order OCN's views assumed."""
    matrix = np.asarray(result["rank_matrix"], dtype=float)
    n = len(matrix)
    text = [[f"{v:.0%}" for v in row] for row in matrix]
    fig = go.Figure(go.Heatmap(
        z=matrix, text=text, texttemplate="%{text}", zmin=0, zmax=1, colorscale="Cividis",
        x=[f"OCN's #{j + 1}" for j in range(n)], y=[f"CPD step {s + 1}" for s in range(n)],
        colorbar={"title": {"text": "share of users"}},
        hovertemplate="%{y} filled OCN's %{x} most confident digit for %{text} of users<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=figure_title(
        f"Does CPD fill digits in OCN's order? Same first digit for {result['first']:.0%} of {result['users']:,} users "
        f"(chance {result['first_chance']:.0%}), same whole order for {result['exact']:.0%} "
        f"(chance {result['exact_chance']:.0%})"), height=380, margin={"t": 90})
    return fig


def lattice_figure(trace, step: int, *, codebook_size: int, supervised=None, titles=None,
                   row_names: Sequence[str] | None = None, col_names: Sequence[str] | None = None) -> go.Figure:
    """A 2-digit search on its K x K lattice of SIDs (digit 0 down, digit 1 across) after ``step``
    fills (0 = every digit masked): each kept beam lit where it may still land, a whole row when only
    digit 0 is filled, a column when only digit 1 is, one cell when both are; the final Top-K
    starred. ``supervised`` (``[K, K]``) shades every cell by how often OCN supervised it."""
    k = codebook_size
    if trace.tokens.shape[2] != 2:
        raise DiffGRMError(f"the lattice draws 2-digit SIDs, this trace has {trace.tokens.shape[2]} digits")
    if not 0 <= step <= trace.n_steps:
        raise DiffGRMError(f"step must be in 0..{trace.n_steps}, got {step}")
    rows = list(row_names) if row_names is not None else [f"d0 = {c}" for c in range(k)]
    cols = list(col_names) if col_names is not None else [f"d1 = {c}" for c in range(k)]
    shade = np.zeros((k, k)) if supervised is None else np.asarray(supervised, dtype=float)
    fig = go.Figure(go.Heatmap(z=shade, x=cols, y=rows, colorscale=[[0, "#ffffff"], [1, "#8c8c8c"]],
                               showscale=supervised is not None,
                               zmin=0, xgap=1, ygap=1, colorbar={"title": {"text": "OCN supervision"}},
                               hovertemplate="%{y}, %{x}<extra></extra>"))
    lit = np.zeros((k, k))
    if step > 0:
        tokens = trace.tokens[step - 1][trace.alive[step - 1]]  # the kept partial SIDs after this step
        for a, b in tokens.tolist():
            lit[(slice(None) if a < 0 else a), (slice(None) if b < 0 else b)] += 1
    ys, xs = np.nonzero(lit)
    fig.add_trace(go.Scatter(x=[cols[j] for j in xs], y=[rows[i] for i in ys], mode="markers", name="kept beams reach",
                             marker={"symbol": "square", "size": 22, "color": KNOWN, "opacity": 0.55},
                             hovertemplate="%{y}, %{x}: reachable from a kept beam<extra></extra>"))
    if step == trace.n_steps:
        final = [(int(a), int(b)) for a, b in trace.tokens[-1][trace.alive[-1]].tolist()][: len(trace.items)]
        names = [titles[i] if titles is not None and i >= 0 else "" for i in trace.items[: len(final)]]
        fig.add_trace(go.Scatter(x=[cols[b] for _, b in final], y=[rows[a] for a, _ in final], mode="markers",
                                 name="final Top-K", text=names, marker={"symbol": "star", "size": 16, "color": SAME},
                                 hovertemplate="%{text}<extra>final Top-K</extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=figure_title(f"The whole search on one lattice: after step {step} of {trace.n_steps}"),
                      height=520, plot_bgcolor="white", margin={"t": 80},
                      legend={"orientation": "h", "y": -0.08, "x": 0})
    return fig
