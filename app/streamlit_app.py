"""diffgrm explorer: watch DiffGRM denoise a user's next item, digit by digit.

Wiring only: the model work happens in ``diffgrm.explorer`` and every figure comes from
``diffgrm.viz``; the tabs are in ``tabs.py`` and what they share with this page in ``shared.py``.
Start it with ``diffgrm app [RUN]`` (or ``make app``); the run folder comes from ``--run`` after
``--`` on the streamlit command line or from ``$DIFFGRM_RUN``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from diffgrm.app.shared import ORDERS, Setting, _read_metrics, ar_folder, history_view, load_explorer, run_folder, topk_table
from diffgrm.app.run_health import run_health_tab
from diffgrm.app.tabs import codebook_tab, compare_tab, denoising_tab, health_tab, whatif_tab, why_tab
from diffgrm.errors import DiffGRMError
from diffgrm.explorer import Explorer
from diffgrm.sid_index import sid_text
from diffgrm.trace import check_beam

EXCLUDE_LABEL = "Keep the user's history out of the recommendations"

# A viewer's toolbar: no "Deploy" button or developer menu. The option is process-wide and reaches
# the browser with the next run; the style hides the button on the very first page as well.
st.set_option("client.toolbarMode", "minimal")
HIDE_DEPLOY = "<style>[data-testid='stAppDeployButton'] {display: none;}</style>"


def no_run_page(run: Path) -> None:
    st.title("diffgrm explorer")
    st.error(f"No trained run in `{run}` (no model.safetensors + config.json).")
    st.markdown(
        "Install the MovieLens-100K demo runs that ship with diffgrm (a few seconds), or start the app "
        "with an existing run: `diffgrm app RUN` (a folder, or a file from `diffgrm pack`)."
    )
    if st.button("Install the MovieLens-100K demo runs", key="install_demo"):
        from diffgrm.demo import ensure_demo_run

        with st.spinner("Installing the demo runs (trained here only if the shipped ones cannot be used)..."):
            try:
                ensure_demo_run(run)
            except DiffGRMError as exc:
                st.error(str(exc))
                return
        st.success("Installed. Loading it...")
        st.rerun()


PAPER = "https://arxiv.org/abs/2510.21805"


def model_note(ex: Explorer) -> str:
    """The sidebar's first line: what the model is, in words, and where the method is written down."""
    cfg = ex.model.config
    what = ("DiffGRM (masked diffusion: the surest digits first)" if ex.denoises
            else "an autoregressive (AR) decoder (digits left to right)")
    if ex.label:  # a run imported from Cornac or the reference code
        what = f"{ex.label} ({what})"
    extra = " with a learned per-item embedding (beyond the paper)" if getattr(cfg, "item_id_emb", False) else ""
    return (f"**The model:** {what}{extra}, trained on {ex.prepared.report['dataset']}. "
            f"The method: [the paper]({PAPER}) and the docs page \"The method\" (`docs/method.md`).")


def intro(ex: Explorer) -> str:
    """The collapsible intro for someone who has never heard of semantic IDs."""
    n, k = ex.n_digits, ex.prepared.catalogue.codebook_size
    example = sid_text(ex.codes[0])
    return (f"Every item of the catalogue has a **semantic ID (SID)**: {n} digits, each one of {k} codes, chosen "
            f"so that similar items share codes (\"{ex.titles[0]}\" is `{example}`). To recommend, the model "
            f"reads the user's history and **writes the SID of the next item**: it starts with every digit masked "
            f"and fills them one at a time, surest first, keeping several candidate SIDs (a *beam*) side by side.\n\n"
            "**Where to look first:** the *Denoising* tab below. Press **Play** to watch the digits being filled; "
            "each row is one of the final recommendations. Then *Why not?* tells where the held-out item (what "
            "the user really watched next) dropped out, and *Compare orders* shows what changes when the digits "
            "are filled in a fixed order instead. The sidebar picks the user and the decoding settings.")


def pick_user(ex: Explorer) -> str:
    users = ex.users()
    side = st.sidebar
    side.subheader("User")
    if "user_id" not in st.session_state:
        st.session_state["user_id"] = str(users["user"].iloc[0])
    mode = side.radio("Pick by", ["id", "history length"], horizontal=True, key="pick_mode")
    if mode == "history length":
        lo, hi = int(users["history_length"].min()), int(users["history_length"].max())
        rng = side.slider("History length", lo, hi, (lo, min(hi, lo + 10)), key="length_range")
        pool = users[users["history_length"].between(*rng)]["user"].astype(str).tolist()
        if pool:
            st.session_state["user_id"] = side.selectbox("Users with that history length", pool, key="length_user")
        else:
            side.warning("No user has a history length in that range.")
    else:
        side.text_input("User id", key="user_id")
    side.button("Random user", key="random_user", on_click=random_user, args=(users["user"].astype(str).tolist(),))
    return st.session_state["user_id"]


def random_user(pool: list[str]) -> None:
    """Button callback: runs before the widgets, so it may set the id text box's value."""
    seed = st.session_state.get("random_clicks", 0) + 1
    st.session_state["random_clicks"] = seed
    st.session_state["user_id"] = pool[int(np.random.default_rng(seed).integers(len(pool)))]


def main() -> None:
    st.set_page_config(page_title="diffgrm explorer", layout="wide")
    st.html(HIDE_DEPLOY)
    mode = st.sidebar.radio("Explore", ["this run", "Toy world"], horizontal=True, key="mode",
                            help="Toy world: 2-digit SIDs of 8 codes, the whole search on one 8 x 8 lattice")
    if mode == "Toy world":
        from diffgrm.app.toy_page import toy_world_page

        toy_world_page()
        return
    run = run_folder()
    if not (run / "model.safetensors").is_file():
        no_run_page(run)
        return
    try:
        ex = load_explorer(str(run))
    except DiffGRMError as exc:  # a damaged or mismatched run: the CLI's message, in the page
        st.title("diffgrm explorer")
        st.error(f"Cannot open the run `{run}`: {exc}")
        st.markdown("Fix or replace the files named above, retrain with `diffgrm train ... --force`, "
                    "or start the app on another run: `diffgrm app RUN`.")
        return
    side = st.sidebar
    side.title("diffgrm explorer")
    side.markdown(model_note(ex))
    side.caption(f"run `{run}` · {ex.kind} · {ex.prepared.report['dataset']} · "
                 f"{ex.prepared.n_items:,} items · SIDs of {ex.n_digits} digits x {ex.prepared.catalogue.codebook_size} codes")
    metrics = ex.metrics()
    if metrics:
        pop = (metrics.get("popularity") or {}).get("ndcg@10")
        seen_note = ("history items kept out" if metrics.get("exclude_seen") else
                     "history items not kept out of the lists")
        side.metric(f"{metrics.get('split', 'test').capitalize()} NDCG@10 ({metrics.get('users', 0):,} users)",
                    f"{metrics['item']['ndcg@10']:.4f}",
                    delta=None if pop is None else f"{metrics['item']['ndcg@10'] / pop:.1f}x popularity ({pop:.4f})",
                    delta_color="normal" if pop is None or metrics["item"]["ndcg@10"] >= pop else "inverse",
                    help="item level, beam " + str(metrics.get("beam", "?")) + f", {seen_note}; popularity recommends "
                         "the 10 most frequent training items to everyone"
                         + (" (minus each user's own history)" if metrics.get("exclude_seen") else ""))
        ar_metrics = _read_metrics(Path(ar_folder(run)))
        if ar_metrics and ar_metrics.get("item"):
            side.caption(f"Its AR companion on the same SIDs: NDCG@10 {ar_metrics['item']['ndcg@10']:.4f} "
                         f"({ar_metrics.get('split', 'test')} split, beam {ar_metrics.get('beam', '?')}, "
                         + ("history kept out)" if ar_metrics.get("exclude_seen") else "history not kept out)"))
    user_id = pick_user(ex)
    side.subheader("Decoding")
    exclude_seen = side.toggle(EXCLUDE_LABEL, value=True, key="exclude_seen",
                               help="on: the search itself skips the items the user has already seen, so their "
                                    "slots go to the next best items (every tab that decodes follows this)")
    beam = side.slider("Beam size", 10, 128, 32, step=2, key="beam")
    k = side.slider("K (Top-K)", 1, 20, 10, key="k")
    orders = list(ORDERS) if ex.denoises else ["left-to-right"]
    order = side.selectbox("Decoding order", orders, key="order",
                           help="confidence = CPD: every beam may fill any open digit, and the search keeps the "
                                "beam-size best partial SIDs by summed log-probability, so sure digits tend to "
                                "come first (not always: see the Denoising tab); fixed = digits 0, 1, 2, ...; "
                                "random = one shuffled order")
    passes = None
    if ex.denoises:
        n = ex.n_digits
        passes = side.slider("Network passes", 1, n, n, key="passes",
                            help=f"how many times the network runs: {n} fills one digit per pass; fewer passes fill "
                                 "several digits from one prediction (faster, usually a little less accurate)")
    try:
        check_beam(beam, k)
    except DiffGRMError as exc:
        st.error(f"{exc}.")
        return

    try:
        case = ex.user(user_id)
    except DiffGRMError as exc:
        st.error(str(exc))
        return
    if len(case.history) < 2:
        st.warning(f"User {user_id} has only {len(case.history)} past item(s): recommendations rest on very little.")

    setting = Setting(run, ex, beam, k, order if ex.denoises else "confidence", passes, exclude_seen)
    st.title(f"User {case.user}: what comes next?")
    with st.expander("New here? What a SID is, and where to look first"):
        st.markdown(intro(ex))
    rec = setting.decode(case.history, case.target)
    hit = bool(rec.table["hit"].any()) if len(rec.table) else False
    left, right = st.columns([2, 3])
    with left:
        st.subheader(f"History ({len(case.history)} items, most recent first)")
        frame, config = history_view(ex, case.history)
        st.dataframe(frame, hide_index=True, width="stretch", column_config=config, key="history")
        st.markdown(f"**Held-out next item:** {ex.titles[case.target]} "
                    f"({'hit: it is in the Top-' + str(k) if hit else 'not in the Top-' + str(k)})")
    with right:
        st.subheader(f"Top-{k}")
        frame, config = topk_table(rec.table, show_seen=not exclude_seen)
        st.dataframe(frame, hide_index=True, width="stretch", column_config=config, key="topk")
        seen = int(rec.table["in_history"].sum()) if len(rec.table) else 0
        st.caption("**SID probability**: the product of the filled digits' probabilities, each given the digits "
                   "filled before it (exp of the beam score); tiny because it is spread over all "
                   f"{ex.prepared.n_items:,} items: read the ranks. "
                   + ("The user's history is kept out of this list (sidebar)." if exclude_seen else
                      f"History items are allowed (sidebar): {seen} of these {len(rec.table)} are in the history."))

    # Tabs that track state run only the open tab's code: a user switch then redraws one view, not five.
    views = {
        "Denoising": lambda: denoising_tab(setting, case, rec),
        "Why not?": lambda: why_tab(ex, case, rec, exclude_seen),
        "Compare orders": lambda: compare_tab(setting, case),
        "Codebook spaces": lambda: codebook_tab(ex, run, case, rec),
        "Codebook health": lambda: health_tab(ex),
        "Run health": lambda: run_health_tab(setting),
        "What if": lambda: whatif_tab(setting, case, rec),
    }
    for tab, draw in zip(st.tabs(list(views), key="view", on_change="rerun"), views.values()):
        if tab.open:
            with tab:
                draw()


main()
