"""The explorer's "Run health" tab: the whole run at once (``diffgrm diagnose``), where the other
tabs follow one user. Wiring only: the numbers come from ``diffgrm.diagnose``, the figures from
``diffgrm.viz``."""

from __future__ import annotations

import streamlit as st

from diffgrm import viz
from diffgrm.app.shared import Setting, ar_folder, load_explorer
from diffgrm.diagnose import DiagnoseSettings

QUICK = DiagnoseSettings(users=300, curve_users=200, beams=(8, 16, 32, 64))
"""What the tab's button computes when a run has no diagnostics yet: a quick look, in about a minute."""
LABELS = {"diffgrm": "DiffGRM", "ar": "AR"}


def companion(setting: Setting):
    """The AR run beside this one (same catalogue), or None."""
    from diffgrm.app.tabs import ar_companion

    if not setting.ex.denoises:
        return None
    path, _ = ar_companion(setting, ar_folder(setting.run))
    return load_explorer(str(path)) if path is not None else None


def run_health_tab(setting: Setting) -> None:
    ex = setting.ex
    st.caption("The whole run at once, where the other tabs follow one user: is the decoder's confidence "
               "calibrated (CPD fills the digit it is surest of first), where does the beam lose the held-out "
               "item, how wide must the beam be, does confidence order help, and what does the Top-K look like.")
    ar = companion(setting)
    mine = ex.diagnostics()
    if mine is None:
        st.info(f"No diagnostics for this run yet. `diffgrm diagnose {setting.run}` writes them for 5,000 "
                "validation users; the button below takes a quicker look (300 users).")
        if st.button(f"Diagnose {QUICK.users} users now", key="diagnose_now"):
            with st.spinner("Decoding every user at several beams..."):
                ex.diagnose(QUICK, ar=ar)
            st.rerun()
        return
    runs = {LABELS.get(mine["kind"], mine["kind"]): mine}
    theirs = ar.diagnostics() if ar is not None else None
    if theirs is not None and theirs["users_sha256"] == mine["users_sha256"] and \
            theirs["settings"]["beam"] == mine["settings"]["beam"]:
        runs["AR"] = theirs
    elif theirs is not None:
        st.caption("The AR companion's diagnostics cover other users or another beam: shown for this run only.")
    s = mine["settings"]
    st.markdown(f"**{mine['users']:,} {s['split']} users**, beam {s['beam']}, Top-{s['topk']}"
                + (", history items kept out" if s.get("exclude_seen") else "")
                + (f"; {' and '.join(runs)} side by side" if len(runs) > 1 else "") + ".")
    by = st.radio("Calibration", ["per digit", "per step"], horizontal=True, key="calibration_by")
    st.plotly_chart(viz.reliability_figure(runs, by=by.split()[-1]), width="stretch", key="reliability")
    st.plotly_chart(viz.surest_figure(runs), width="stretch", key="surest")
    st.plotly_chart(viz.miss_map_figure(runs), width="stretch", key="miss_map")
    st.plotly_chart(viz.beam_curve_figure(runs), width="stretch", key="beam_curve")
    if mine["order"]["against"]:
        st.plotly_chart(viz.order_figure(mine), width="stretch", key="order_scatter")
    st.plotly_chart(viz.topk_profile_figure(runs), width="stretch", key="topk_profile")
