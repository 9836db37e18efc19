"""Figures of the catalogue's health: code usage, dead codes, entropy and collisions per digit, and
how much each digit tells about the item (bits)."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from diffgrm.errors import DiffGRMError
from diffgrm.viz.style import HISTORY, PALETTE, figure_title

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
