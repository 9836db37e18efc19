"""Reading a trace for the figures: checked beam and step arguments, and the fills along one final
beam's lineage with the label a reader sees for it.

Shared by the figures of one decoding (``denoising.py``); nothing here draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from diffgrm.errors import DiffGRMError
from diffgrm.trace import DenoisingTrace
from diffgrm.viz.style import clean_label, sid_text


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
    return f"#{rank + 1} · {clean_label(title, 40) if title else sid_text(sid)}"
