"""Figures of a whole run's diagnostics (``diffgrm diagnose``, :mod:`diffgrm.diagnose`).

Every builder takes one run's diagnostics dict, or several as ``{label: diagnostics}`` to draw
runs side by side (for example DiffGRM and its AR companion on the same users), and returns a
plotly figure. Nothing here decodes or reads files.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from diffgrm.errors import DiffGRMError
from diffgrm.viz.style import HIGHLIGHT, HISTORY, PALETTE, PROB_SCALE, figure_title

DASHES = ("solid", "dash", "dot", "dashdot")


def _runs(diags) -> dict[str, Mapping]:
    """``{label: diagnostics}`` from one dict or several; each checked for the parts drawn here."""
    runs = {diags.get("kind", "run"): diags} if isinstance(diags, Mapping) and "calibration" in diags else dict(diags)
    if not runs:
        raise DiffGRMError("no diagnostics to draw")
    for label, d in runs.items():
        missing = {"calibration", "misses", "beam_curve", "order", "topk", "settings"} - set(d)
        if missing:
            raise DiffGRMError(f"diagnostics of {label!r} lack {sorted(missing)}: write them with `diffgrm diagnose`")
    return runs


def reliability_figure(diags, by: str = "digit") -> go.Figure:
    """Is the decoder's confidence calibrated? Per digit (or per step): the accuracy of the top code
    against its probability, binned; the diagonal is perfect calibration, a curve below it is
    overconfident. The legend gives each curve's expected calibration error (ECE)."""
    if by not in ("digit", "step"):
        raise DiffGRMError(f"by must be 'digit' or 'step', got {by!r}")
    runs = _runs(diags)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"color": "#999999", "dash": "dot"},
                             name="perfect calibration", hoverinfo="skip"))
    for r, (label, d) in enumerate(runs.items()):
        for j, curve in enumerate(d["calibration"][f"per_{by}"]):
            pts = [(c, a, k) for c, a, k in zip(curve["confidence"], curve["accuracy"], curve["count"]) if k]
            if not pts:
                continue
            c, a, k = map(list, zip(*pts))
            name = f"{label}: {by} {j}" if len(runs) > 1 else f"{by} {j}"
            fig.add_trace(go.Scatter(
                x=c, y=a, mode="lines+markers", name=f"{name} (ECE {curve['ece']:.3f})",
                line={"color": PALETTE[j % len(PALETTE)], "dash": DASHES[r % len(DASHES)]},
                marker={"size": [4 + 10 * np.sqrt(x / max(k)) for x in k]}, customdata=k,
                hovertemplate=f"{name}<br>confidence %{{x:.2f}}<br>accuracy %{{y:.2f}}<br>%{{customdata}} predictions"
                              "<extra></extra>"))
    overall = ", ".join(f"{label} {d['calibration']['overall']['ece']:.3f}" for label, d in runs.items())
    fig.update_layout(title=figure_title(f"Reliability per {by}", f"overall ECE: {overall}"),
                      xaxis={"title": "probability of the top code", "range": [0, 1]},
                      yaxis={"title": "how often it is the target's code", "range": [0, 1]}, height=420)
    return fig


def surest_figure(diags) -> go.Figure:
    """Is the digit CPD would fill first right more often than the other open digits? Per step,
    the accuracy of the surest digit's top code beside the others' (along the target's path)."""
    runs = _runs(diags)
    fig = go.Figure()
    for r, (label, d) in enumerate(runs.items()):
        cal = d["calibration"]
        steps = [f"step {s + 1}" for s in range(len(cal["surest_right"]))]
        fig.add_trace(go.Bar(name=f"{label}: surest digit", x=steps, y=cal["surest_right"],
                             marker={"color": PALETTE[(2 * r) % len(PALETTE)]},
                             hovertemplate="%{x}: the surest digit's top code is right %{y:.1%} of the time<extra></extra>"))
        if any(v is not None for v in cal["others_right"]):
            fig.add_trace(go.Bar(name=f"{label}: other open digits", x=steps, y=cal["others_right"],
                                 marker={"color": PALETTE[(2 * r + 1) % len(PALETTE)]},
                                 hovertemplate="%{x}: the other open digits' top codes are right %{y:.1%}<extra></extra>"))
    fig.update_layout(barmode="group", title=figure_title("Is the surest digit right more often?"),
                      yaxis={"title": "accuracy of the top code", "range": [0, 1], "tickformat": ".0%"}, height=360)
    return fig


def miss_map_figure(diags) -> go.Figure:
    """Where the held-out items were lost: over the users whose item is not in the Top-K, the share
    whose partial SID left the beam at each step (rows) by the digit whose fill would have kept it
    (columns), and in the last column the share still in the beam at the end but ranked below K."""
    runs = _runs(diags)
    fig = make_subplots(rows=1, cols=len(runs), subplot_titles=[
        f"{label}: {d['misses']['missed']} of {d['misses']['users']} missed" for label, d in runs.items()])
    for c, (label, d) in enumerate(runs.items(), 1):
        grid = np.asarray(d["misses"]["left_at"], dtype=float)
        n = grid.shape[0]
        z = np.concatenate([grid, np.full((n, 1), np.nan)], 1)
        z[-1, -1] = d["misses"]["below_k"]
        x = [f"digit {j}" for j in range(n)] + ["in the beam, below K"]
        y = [f"step {s + 1}" for s in range(n)]
        text = [[f"{v:.0%}" if np.isfinite(v) and v > 0 else "" for v in row] for row in z]
        fig.add_trace(go.Heatmap(z=z, x=x, y=y, text=text, texttemplate="%{text}", colorscale=PROB_SCALE, zmin=0,
                                 zmax=max(float(np.nanmax(z)), 1e-9), showscale=c == 1, name=label,
                                 hovertemplate="%{y}, %{x}: %{z:.1%} of the misses<extra></extra>"), row=1, col=c)
        fig.update_yaxes(autorange="reversed", row=1, col=c)
    fig.update_layout(title=figure_title("Where the beam loses the held-out item",
                                         "share of the missed users; the shares of one run sum to 100%"),
                      height=340 + 20 * len(runs))
    return fig


def beam_curve_figure(diags) -> go.Figure:
    """How wide must the beam be? Left: the hit rate against the beam. Right: per step, the share
    of users whose target's partial SID is still in the beam, one line per beam."""
    runs = _runs(diags)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["hit rate by beam", "target still in the beam, per step"],
                        horizontal_spacing=0.12)
    for r, (label, d) in enumerate(runs.items()):
        rows = d["beam_curve"]["rows"]
        fig.add_trace(go.Scatter(x=[row["beam"] for row in rows], y=[row["hit_rate"] for row in rows],
                                 mode="lines+markers", name=f"{label}: hit rate", customdata=[row["k"] for row in rows],
                                 line={"color": PALETTE[r % len(PALETTE)]},
                                 hovertemplate="beam %{x}: hit@%{customdata} %{y:.3f}<extra></extra>"), row=1, col=1)
        for j, row in enumerate(rows):
            steps = list(range(1, len(row["in_beam"]) + 1))
            fig.add_trace(go.Scatter(x=steps, y=row["in_beam"], mode="lines+markers", showlegend=r == 0,
                                     name=f"beam {row['beam']}", legendgroup=f"beam {row['beam']}",
                                     line={"color": PALETTE[j % len(PALETTE)], "dash": DASHES[r % len(DASHES)]},
                                     hovertemplate=f"{label}, beam {row['beam']}<br>step %{{x}}: %{{y:.1%}} still in"
                                                   "<extra></extra>"), row=1, col=2)
    users = ", ".join(f"{label} {d['beam_curve']['users']}" for label, d in runs.items())
    fig.update_xaxes(type="log", title="beam", row=1, col=1)
    fig.update_xaxes(title="step", dtick=1, row=1, col=2)
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=2)
    fig.update_layout(title=figure_title("Beam width", f"users: {users}"), height=400)
    return fig


def order_figure(diag: Mapping) -> go.Figure:
    """Does confidence order help this user? The held-out item's rank under the first decoding
    (x) against each other one (y), one bubble per pair of ranks sized by users; "none" = not in
    the Top-K. Below the diagonal the first decoding ranks the item higher."""
    order = diag["order"]
    others = list(order["against"])
    if not others:
        raise DiffGRMError("these diagnostics compare no decodings (an AR run alone has one order)")
    first = order["orders"][0]
    fig = make_subplots(rows=1, cols=len(others), subplot_titles=[
        f"{first} against {o}: {r['wins']} wins, {r['losses']} losses, {r['ties']} ties"
        for o, r in order["against"].items()])
    for c, name in enumerate(others, 1):
        joint = np.asarray(order["against"][name]["joint"])
        k = joint.shape[0]
        labels = [str(i) for i in range(1, k)] + ["none"]
        a, b = np.nonzero(joint)
        count = joint[a, b]
        fig.add_trace(go.Scatter(x=[labels[i] for i in a], y=[labels[j] for j in b], mode="markers", showlegend=False,
                                 marker={"size": 6 + 40 * np.sqrt(count / count.max()), "color": HISTORY,
                                         "opacity": 0.7}, customdata=count,
                                 hovertemplate=f"{first} rank %{{x}}, {name} rank %{{y}}: %{{customdata}} users"
                                               "<extra></extra>"), row=1, col=c)
        fig.update_xaxes(title=f"rank under {first}", categoryorder="array", categoryarray=labels, row=1, col=c)
        fig.update_yaxes(title=f"rank under {name}", categoryorder="array", categoryarray=labels, row=1, col=c)
    fig.update_layout(title=figure_title("The held-out item's rank, decoded two ways"), height=420)
    return fig


def topk_profile_figure(diags) -> go.Figure:
    """What the Top-K looks like: how popular the recommended items are against the held-out ones
    (percentile of training popularity), with coverage, shared first digits and history items."""
    runs = _runs(diags)
    fig = go.Figure()
    first = next(iter(runs.values()))["topk"]
    edges = first["edges"]
    x = [f"{edges[i]:.0f}-{edges[i + 1]:.0f}" for i in range(len(edges) - 1)]
    target = np.asarray(first["target_hist"], dtype=float)
    fig.add_trace(go.Bar(x=x, y=target / max(target.sum(), 1), name="held-out items", marker={"color": "#999999"},
                         hovertemplate="popularity percentile %{x}: %{y:.1%} of held-out items<extra></extra>"))
    notes = []
    for r, (label, d) in enumerate(runs.items()):
        top = d["topk"]
        rec = np.asarray(top["recommended_hist"], dtype=float)
        fig.add_trace(go.Bar(x=x, y=rec / max(rec.sum(), 1), name=f"{label}: recommended",
                             marker={"color": (HIGHLIGHT, *PALETTE)[r % (len(PALETTE) + 1)]},
                             hovertemplate="popularity percentile %{x}: %{y:.1%} of recommendations<extra></extra>"))
        notes.append(f"{label}: coverage {top['coverage']:.1%}, {top['shared_first_digit']:.0%} share a first digit, "
                     f"{top['history_share']:.1%} history items")
    fig.update_layout(barmode="group", title=figure_title("The Top-K's popularity", "; ".join(notes)),
                      xaxis={"title": "popularity percentile (training interactions)"},
                      yaxis={"title": "share", "tickformat": ".0%"}, height=400)
    return fig
