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

from diffgrm.viz.codebook import codebook_figure, codebook_note, project_codebook
from diffgrm.viz.diagnostics import (
    beam_curve_figure,
    miss_map_figure,
    order_figure,
    reliability_figure,
    surest_figure,
    topk_profile_figure,
)
from diffgrm.viz.health import codebook_health, sid_information_figure
from diffgrm.viz.onpolicy import lattice_figure, order_agreement_figure, views_beside_fills
from diffgrm.viz.denoising import (
    START,
    alternatives_figure,
    compare_orders,
    confidence_heatmap,
    denoising_strip,
    strip_frame_data,
)
from diffgrm.viz.style import (
    HIGHLIGHT,
    HISTORY,
    MASKED_GREY,
    METHODS,
    METRIC_LABELS,
    METRICS,
    PALETTE,
    PROB_SCALE,
    STATES,
    sid_text,
)
from diffgrm.viz.why import why_not_figure

__all__ = [
    "HIGHLIGHT", "HISTORY", "MASKED_GREY", "METHODS", "METRIC_LABELS", "METRICS", "PALETTE", "PROB_SCALE", "START", "STATES",
    "alternatives_figure", "beam_curve_figure", "codebook_figure", "codebook_health", "codebook_note", "compare_orders",
    "confidence_heatmap",
    "denoising_strip", "lattice_figure", "miss_map_figure", "order_agreement_figure", "order_figure",
    "reliability_figure", "surest_figure", "topk_profile_figure", "project_codebook", "sid_information_figure", "sid_text",
    "strip_frame_data", "views_beside_fills", "why_not_figure",
]
