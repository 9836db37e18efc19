"""The explorer's "Toy world" mode: 2-digit SIDs of 8 codes, the whole search on one 8 x 8 lattice.

Wiring only: the world and its small model come from ``diffgrm.toy`` (trained once per machine, in
about fifteen seconds) and the figure from ``diffgrm.viz.lattice_figure``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import streamlit as st

from diffgrm import viz
from diffgrm.explorer import Explorer
from diffgrm.toy import CODES, GENRES, make_toy_world, supervision

LEVELS = [f"level {i + 1}" for i in range(CODES)]


@st.cache_resource(show_spinner="Building the toy world and training its small model (about fifteen seconds, once)...")
def toy_explorer() -> tuple[Explorer, object]:
    folder = Path(os.environ.get("DIFFGRM_TOY_DIR") or Path(tempfile.gettempdir()) / "diffgrm-toy-world")
    ex = Explorer(make_toy_world(folder))
    return ex, supervision(ex.prepared).to_numpy()


def toy_world_page() -> None:
    st.title("Toy world: the whole search on one screen")
    st.caption("Every item is one cell: digit 0 is its genre, digit 1 its level, so all 64 SIDs fit on an 8 x 8 "
               "lattice. Users keep a favourite genre and hover around a favourite level, so the genre is the easy "
               "digit and the level the harder one. Grey: how often OCN supervised a cell in training. Blue: the "
               "cells CPD's kept beams can still reach after this step (a whole row when only the genre is filled, "
               "a column when only the level is). Stars: the final Top-5.")
    ex, sup = toy_explorer()
    users = ex.users()["user"].astype(str).tolist()[:60]
    user = st.sidebar.selectbox("Toy user", users, key="toy_user")
    case = ex.user(user)
    rec = ex.recommend(case.history, beam=8, k=5, target=case.target)
    left, right = st.columns([1, 2])
    with left:
        st.markdown("**History (newest last):** " + ", ".join(ex.titles[i] for i in case.history[-6:]))
        st.markdown(f"**Held out:** {ex.titles[case.target]}")
        step = st.slider("Step", 0, rec.trace.n_steps, 0, key="toy_step", help="0: both digits masked")
        path = rec.trace.lineage(0)
        if step:
            d = int(rec.trace.digit[step - 1, path[step - 1]])
            st.markdown(f"**Step {step}:** the best beam filled the {'genre' if d == 0 else 'level'} "
                        f"(p = {float(rec.trace.prob[step - 1, path[step - 1]]):.2f}).")
        st.dataframe(rec.table[["rank", "title", "probability"]], hide_index=True, key="toy_topk")
    with right:
        st.plotly_chart(viz.lattice_figure(rec.trace, step, codebook_size=CODES, supervised=sup, titles=ex.titles,
                                           row_names=list(GENRES), col_names=LEVELS),
                        width="stretch", key="lattice")
