"""The look shared by every figure: colours, fixed scales, and how SIDs and titles are printed."""

from __future__ import annotations

from diffgrm.sid_index import sid_text  # noqa: F401  (the figures' SID text, re-exported)

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
METRIC_LABELS = {"max_prob": "max probability", "entropy_bits": "entropy (bits)"}
"""How the confidence metrics are named to a reader."""
METHODS = ("umap", "pca")
STATES = ("masked", "new", "earlier")

_GREY_SCALE = [[0.0, MASKED_GREY], [1.0, MASKED_GREY]]
_CELL_PX = 44  # height of one heatmap row, in pixels


def clean_label(title: str, limit: int = 60) -> str:
    """A title that is safe in plotly's HTML-ish labels and not too long for an axis."""
    title = str(title).replace("<", "&lt;").replace(">", "&gt;")
    return title if len(title) <= limit else title[: limit - 1] + "…"



def figure_title(text: str, subtitle: str | None = None) -> dict:
    """A figure title that is never cut off: left-aligned, its subtitle (if any) on its own line,
    and plotly's ``automargin`` growing the top margin to fit both (half-width columns included)."""
    title = {"text": text, "x": 0.01, "xanchor": "left", "xref": "container", "automargin": True}
    if subtitle:
        title["subtitle"] = {"text": subtitle}
    return title
