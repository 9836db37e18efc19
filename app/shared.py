"""What the explorer's page and its tabs share: the run folders it was started on, the cached calls
into ``diffgrm.explorer`` (one model per process, decodings cached per settings), the sidebar's
decoding settings, and the tables both the page and the tabs draw.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import streamlit as st

from diffgrm.explorer import Explorer, open_explorer

DEFAULT_RUN = "runs/ml-tiny"
PROJECTION = os.environ.get("DIFFGRM_PROJECTION", "umap")
ORDERS = ("confidence", "fixed", "random")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--run", default=None)
    parser.add_argument("--ar", default=None)
    parser.add_argument("--data", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args


def data_source() -> str | None:
    """Where the runs' users come from when not where they recorded: ``--data`` or ``$DIFFGRM_DATA``."""
    return _args().data or os.environ.get("DIFFGRM_DATA") or None


def run_folder() -> Path:
    return Path(_args().run or os.environ.get("DIFFGRM_RUN") or DEFAULT_RUN)


def ar_folder(run: Path) -> str:
    """The AR run to compare with: ``--ar``, ``$DIFFGRM_AR_RUN``, or ``RUN-ar`` next to the run."""
    return _args().ar or os.environ.get("DIFFGRM_AR_RUN") or f"{run}-ar"


def _read_metrics(run: Path) -> dict | None:
    """A run's metrics.json, or None (a missing or unreadable file shows nothing)."""
    try:
        return json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return None


@st.cache_resource(show_spinner="Loading the model and catalogue...")
def load_explorer(run: str) -> Explorer:
    return open_explorer(run, data_source())  # `diffgrm app` has usually loaded it already, while the server started


@st.cache_data(show_spinner=False, max_entries=256)
def recommend(run: str, history: tuple[int, ...], beam: int, k: int, order: str, target: int,
              passes: int | None = None, exclude_seen: bool = True):
    return load_explorer(run).recommend(np.array(history, dtype=np.int64), beam=beam, k=k, order=order, target=target,
                                        passes=passes, exclude_seen=exclude_seen)


@st.cache_data(show_spinner="Projecting the codebooks (once per run)...")
def codebook_coords(run: str, method: str):
    return load_explorer(run).codebook_coords(method)


@st.cache_data(show_spinner=False)
def code_separation(run: str, digit: int) -> float:
    return load_explorer(run).code_separation(digit)


class Setting:
    """The sidebar's decoding settings, shared by every tab that decodes."""

    def __init__(self, run: Path, ex: Explorer, beam: int, k: int, order: str, passes: int | None,
                 exclude_seen: bool) -> None:
        self.run, self.ex, self.beam, self.k = run, ex, beam, k
        self.order, self.passes, self.exclude_seen = order, passes, exclude_seen

    def decode(self, history, target: int):
        """Decode ``history`` with these settings (cached)."""
        return recommend(str(self.run), tuple(int(i) for i in history), self.beam, self.k, self.order, int(target),
                         self.passes, self.exclude_seen)

    def decode_with(self, history, target: int, order: str, run: Path | None = None):
        """Decode ``history`` in another ``order`` (one digit per pass) or with another run (the AR companion)."""
        return recommend(str(run or self.run), tuple(int(i) for i in history), self.beam, self.k, order, int(target),
                         None, self.exclude_seen)


SCORE_HELP = ("The SID's probability: the product of the probabilities the decoder gave its digits as it filled "
              "them, each given the digits filled before (exp of the beam score). It is small because it is "
              "spread over every item; compare the ranks, not the values.")


def topk_table(table, *, show_seen: bool):
    """The Top-K as the page shows it: rank, title, full SID, SID probability, hit (and seen)."""
    cols = ["rank", "title", "sid", "probability", "hit"] + (["in_history"] if show_seen else [])
    config = {
        "rank": st.column_config.NumberColumn("rank", width=50),
        "title": st.column_config.TextColumn("title"),
        "sid": st.column_config.TextColumn("SID", width=110),
        "probability": st.column_config.NumberColumn("SID probability", format="%.5f", help=SCORE_HELP, width=120),
        "hit": st.column_config.CheckboxColumn("held-out item", width=100),
        "in_history": st.column_config.CheckboxColumn("in the history", width=100),
    }
    return table[cols], config


def history_view(ex: Explorer, history, limit: int | None = 15):
    """The history newest first: title and full SID, no internal item index."""
    frame = ex.history_table(history)[["title", "sid"]]
    frame = frame.head(limit) if limit else frame
    config = {"title": st.column_config.TextColumn("title (newest first)"),
              "sid": st.column_config.TextColumn("SID", width=110)}
    return frame, config
