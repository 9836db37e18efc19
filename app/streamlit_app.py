"""diffgrm explorer: watch DiffGRM denoise a user's next item, digit by digit.

Wiring only: the model work happens in ``diffgrm.explorer`` and every figure comes from
``diffgrm.viz``. Start it with ``diffgrm app [RUN]`` (or ``make app``); the run folder comes from
``--run`` after ``--`` on the streamlit command line or from ``$DIFFGRM_RUN``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import streamlit as st

from diffgrm import viz
from diffgrm.errors import DiffGRMError
from diffgrm.explorer import Explorer
from diffgrm.safeio import read_json

DEFAULT_RUN = "runs/ml-tiny"
PROJECTION = os.environ.get("DIFFGRM_PROJECTION", "umap")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--run", default=None)
    parser.add_argument("--ar", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args


def run_folder() -> Path:
    return Path(_args().run or os.environ.get("DIFFGRM_RUN") or DEFAULT_RUN)


def ar_folder(run: Path) -> str:
    """The AR run to compare with: ``--ar``, ``$DIFFGRM_AR_RUN``, or ``RUN-ar`` next to the run."""
    return _args().ar or os.environ.get("DIFFGRM_AR_RUN") or f"{run}-ar"


@st.cache_resource(show_spinner="Loading the model and catalogue...")
def load_explorer(run: str) -> Explorer:
    return Explorer(run)


@st.cache_data(show_spinner=False, max_entries=256)
def recommend(run: str, history: tuple[int, ...], beam: int, k: int, order: str, target: int,
              steps: int | None = None):
    return load_explorer(run).recommend(np.array(history, dtype=np.int64), beam=beam, k=k, order=order, target=target,
                                        steps=steps)


@st.cache_data(show_spinner="Projecting the codebooks (once per run)...")
def codebook_coords(run: str, method: str):
    return load_explorer(run).codebook_coords(method)


def no_run_page(run: Path) -> None:
    st.title("diffgrm explorer")
    st.error(f"No trained run in `{run}` (no model.safetensors + config.json).")
    st.markdown(
        "Train the small MovieLens-100K demo run (a few minutes on a laptop CPU), or start the app "
        "with an existing run: `diffgrm app RUN`."
    )
    if st.button("Train the tiny MovieLens-100K run", key="train_tiny"):
        from diffgrm.demo import ensure_demo_run

        with st.spinner("Preparing MovieLens-100K and training the tiny preset..."):
            try:
                ensure_demo_run(run)
            except DiffGRMError as exc:
                st.error(str(exc))
                return
        st.success("Trained. Loading it...")
        st.rerun()


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
    side.caption(f"run `{run}` · {ex.kind} · {ex.prepared.report['dataset']} · "
                 f"{ex.prepared.n_items:,} items · SIDs of {ex.n_digits} digits x {ex.prepared.catalogue.codebook_size} codes")
    metrics = ex.metrics()
    if metrics:
        pop = (metrics.get("popularity") or {}).get("ndcg@10")
        side.metric(f"NDCG@10 on the {metrics.get('split', 'test')} split ({metrics.get('users', 0):,} users)",
                    f"{metrics['item']['ndcg@10']:.4f}",
                    delta=None if pop is None else f"{metrics['item']['ndcg@10'] / pop:.1f}x popularity ({pop:.4f})",
                    delta_color="normal" if pop is None or metrics["item"]["ndcg@10"] >= pop else "inverse",
                    help="item level, beam " + str(metrics.get("beam", "?")) + "; popularity recommends the 10 most "
                         "frequent training items to everyone")
    user_id = pick_user(ex)
    side.subheader("Decoding")
    beam = side.slider("Beam size", 10, 128, 32, step=2, key="beam")
    k = side.slider("K (Top-K)", 1, 20, 10, key="k")
    orders = ["confidence", "fixed", "random"] if ex.kind == "diffgrm" else ["left-to-right"]
    order = side.selectbox("Decoding order", orders, key="order",
                           help="confidence = CPD: fill the digit the model is surest of first")
    steps = None
    if ex.kind == "diffgrm":
        n = ex.n_digits
        steps = side.slider("Network passes", 1, n, n, key="steps",
                            help=f"how many times the network runs: {n} fills one digit per pass; fewer passes fill "
                                 "several digits from one prediction (faster, usually a little less accurate)")
    if beam < k:
        st.error(f"The beam ({beam}) must be at least K ({k}).")
        return

    try:
        case = ex.user(user_id)
    except DiffGRMError as exc:
        st.error(str(exc))
        return
    if len(case.history) < 2:
        st.warning(f"User {user_id} has only {len(case.history)} past item(s): recommendations rest on very little.")

    st.title(f"User {case.user}: what comes next?")
    rec = recommend(str(run), tuple(int(i) for i in case.history), beam, k, order if ex.kind == "diffgrm" else "confidence",
                    case.target, steps)
    hit = bool(rec.table["hit"].any()) if len(rec.table) else False
    left, right = st.columns([2, 3])
    with left:
        st.subheader(f"History ({len(case.history)} items, most recent first)")
        st.dataframe(ex.history_table(case.history).head(15), hide_index=True, width="stretch")
        st.markdown(f"**Held-out next item:** {ex.titles[case.target]} "
                    f"({'hit: it is in the Top-' + str(k) if hit else 'not in the Top-' + str(k)})")
    with right:
        st.subheader(f"Top-{k}")
        st.dataframe(rec.table[["rank", "title", "sid", "probability", "hit"]], hide_index=True, width="stretch")

    # Tabs that track state run only the open tab's code: a user switch then redraws one view, not five.
    views = {
        "Denoising": lambda: denoising_tab(ex, rec),
        "Why not?": lambda: why_tab(ex, case, rec),
        "Compare orders": lambda: compare_tab(ex, run, case, beam, k),
        "Codebook spaces": lambda: codebook_tab(ex, run, case, rec),
        "Codebook health": lambda: health_tab(ex),
        "What if": lambda: whatif_tab(ex, run, case, beam, k, order, rec),
    }
    for tab, draw in zip(st.tabs(list(views), key="view", on_change="rerun"), views.values()):
        if tab.open:
            with tab:
                draw()


def denoising_tab(ex: Explorer, rec) -> None:
    trace = rec.trace
    n = trace.n_steps
    step = st.slider("Step", 1, n, n, key="step", help="scrub through the denoising steps")
    s = step - 1
    r = trace.lineage(0)[s]
    d, c, p = int(trace.digit[s, r]), int(trace.code[s, r]), float(trace.prob[s, r])
    in_pass = (f" from network pass {int(trace.step_passes[s]) + 1} of {trace.n_passes}"
               if trace.n_passes < n else "")
    st.markdown(f"**Step {step} of {n}:** the best beam fills digit {d} with code {c} "
                f"(probability {p:.2f}){in_pass}; {n - step} digit(s) still masked.")
    st.plotly_chart(viz.denoising_strip(trace, beams=min(8, len(rec.table)), titles=ex.titles, initial_step=s),
                    width="stretch", key="strip")
    a, b = st.columns(2)
    with a:
        st.plotly_chart(viz.alternatives_figure(trace, beam=0, step=s), width="stretch", key="alternatives")
    with b:
        metric = st.radio("Confidence as", ["max_prob", "entropy_bits"], horizontal=True, key="conf_metric")
        st.plotly_chart(viz.confidence_heatmap(trace, beam=0, metric=metric), width="stretch", key="confidence")


def why_tab(ex: Explorer, case, rec) -> None:
    st.caption("Where an item's SID left the search: the step and digit at which no kept beam agreed with it "
               "any more, the score its best candidate would have had against the lowest kept beam, and the "
               "beams that displaced it.")
    choices = {f"held-out next item: {ex.titles[case.target]}": case.target}
    query = st.text_input("Or find an item by title", key="why_query", placeholder="a word of the title")
    if query:
        for row in ex.search_titles(query, limit=30).itertuples():
            choices.setdefault(f"{row.title} (item {row.item})", int(row.item))
    label = st.selectbox("Item", list(choices), key="why_item")
    item = choices.get(label, case.target)
    why = ex.why_not(case.history, rec, item)
    st.markdown(f"**{ex.titles[item]}** (SID `{viz.sid_text(ex.codes[item])}`): {why.message}.")
    st.plotly_chart(viz.why_not_figure(why), width="stretch", key="why")
    if not why.displaced_by.empty:
        st.markdown(f"The kept beams just above it at step {why.step + 1} (lowest first; `_` = still masked):")
        st.dataframe(why.displaced_by, hide_index=True, width="stretch")


def compare_tab(ex: Explorer, run: Path, case, beam: int, k: int) -> None:
    if ex.kind != "diffgrm":
        st.info("This run is autoregressive: it has one, left-to-right, order.")
        return
    history = tuple(int(i) for i in case.history)
    traces = {f"{name} order": recommend(str(run), history, beam, k, name, case.target).trace
              for name in ("confidence", "fixed", "random")}
    ar = st.text_input("AR run on the same SIDs (optional)", value=ar_folder(run), key="ar_run",
                       help="a run trained with `diffgrm train DATA --model ar` on the same prepared data")
    ar_run = Path(ar.strip()) if ar.strip() else None
    other = None
    if ar_run is not None and (ar_run / "model.safetensors").is_file():
        try:
            other = load_explorer(str(ar_run))
        except DiffGRMError as exc:
            st.warning(f"Cannot open the AR run `{ar_run}`: {exc}")
    if other is not None:
        if other.kind != "ar":
            st.warning(f"`{ar_run}` is a {other.kind} run, not an autoregressive one.")
        elif other.meta["fingerprint"] != ex.meta["fingerprint"]:
            st.warning(f"`{ar_run}` was trained on another catalogue: its SIDs are not comparable.")
        else:
            traces["AR (left to right)"] = recommend(str(ar_run), history, beam, k, "confidence", case.target).trace
    elif ar_run is not None and not (ar_run / "model.safetensors").is_file():
        st.caption(f"No AR run in `{ar_run}`; train one to add it here: "
                   f"`diffgrm train {ex.prepared.path} --model ar --preset tiny --out {ar_run}`.")
    st.caption(f"The same user decoded {len(traces)} ways; x is the step, y the probability of the digit "
               "committed then, and below the running log-probability of the best beam.")
    st.plotly_chart(viz.compare_orders(traces), width="stretch", key="orders")


def codebook_tab(ex: Explorer, run: Path, case, rec) -> None:
    try:
        coords = codebook_coords(str(run), PROJECTION)
    except DiffGRMError as exc:
        st.info(str(exc))
        return
    digit = st.selectbox("Digit", list(range(ex.n_digits)), key="digit")
    st.caption("Each point is an item's sub-vector for this digit, coloured by its code; diamonds are the "
               "codebook's centroids; rings mark the codes the final beams chose, the history's codes and the "
               "held-out item's code. "
               "Distances between clusters in a UMAP mean little: read neighbourhoods, not gaps.")
    st.plotly_chart(viz.codebook_figure(coords[digit], digit=digit, titles=ex.titles, sids=ex.codes,
                                        history=case.history.tolist(), recommended=rec.table["item"].tolist(),
                                        target=case.target, beam_codes=final_codes(rec.trace, digit)),
                    width="stretch", key="codebook")


def final_codes(trace, digit: int) -> list[int]:
    """The codes the last step's kept beams hold in ``digit``."""
    last = trace.n_steps - 1
    return [int(c) for c in trace.tokens[last, trace.alive[last], digit] if c >= 0]


def health_tab(ex: Explorer) -> None:
    report = ex.prepared.report
    st.plotly_chart(viz.codebook_health(report, ex.codes, ex.prepared.catalogue.codebook_size),
                    width="stretch", key="health")
    info = ex.prepared.information()
    if "information" not in report:
        st.caption("This folder's tokenizer_report.json predates the SID information diagnostics: "
                   "computed here from the catalogue's codes.")
    codes = st.radio("SIDs", ["before repair", "after repair"], horizontal=True, key="info_codes",
                     help="before repair: the tokenizer's nearest codes; after: the one-to-one catalogue")
    shown = info["before" if codes == "before repair" else "after"]
    st.plotly_chart(viz.sid_information_figure(shown, label=codes), width="stretch", key="sid_information")
    before = info["before"]
    st.markdown(
        f"**Collisions before repair, counted two ways:** {before['collision_rate_sharing']:.1%} of items share "
        f"their SID with another item; {before['collision_rate_beyond_first']:.1%} of items are beyond the first "
        f"in their SID (items minus distinct SIDs, the count papers usually print). A digit whose "
        f"H(digit | others) is near 0 mostly repeats what the other digits already say."
    )
    path = ex.prepared.path / "collisions.json"
    try:
        groups = read_json(path, kind=list) if path.is_file() else []
    except DiffGRMError as exc:
        st.warning(str(exc))
        groups = []
    shared = ex.prepared.report.get("collision_groups_before", len(groups))
    st.markdown(f"**{shared} SIDs were shared before repair**; the largest groups, with where their items moved:")
    for g in groups[:5]:
        items = "; ".join(f"{i['title']} -> {viz.sid_text(i['new_sid'])}" for i in g["items"][:6])
        st.markdown(f"- `{viz.sid_text(g['sid'])}` ({len(g['items'])} items): {items}")


def whatif_tab(ex: Explorer, run: Path, case, beam: int, k: int, order: str, rec) -> None:
    st.caption("Edit the history and decode again: which recommendations move?")
    key = f"edit_{case.user}"
    if key not in st.session_state:
        st.session_state[key] = [int(i) for i in case.history]
    edited: list[int] = st.session_state[key]
    labels = {i: f"{ex.titles[i]} (#{i})" for i in set(edited) | set(case.history.tolist())}
    remove = st.multiselect("Remove from the history", edited, format_func=lambda i: labels.get(i, str(i)), key="whatif_remove")
    query = st.text_input("Find an item to add (title contains)", key="whatif_query")
    matches = ex.search_titles(query)
    add = None
    if len(matches):
        add = st.selectbox("Add", matches["item"].tolist(), format_func=lambda i: ex.titles[i], key="whatif_add")
    if st.button("Apply", key="whatif_apply"):
        new = [i for i in edited if i not in set(remove)] + ([int(add)] if add is not None else [])
        if not new:
            st.error("Keep at least one item in the history.")
        else:
            st.session_state[key] = new
            st.rerun()
    if st.button("Reset", key="whatif_reset"):
        st.session_state[key] = [int(i) for i in case.history]
        st.rerun()
    edited = st.session_state[key]
    changed = edited != [int(i) for i in case.history]
    st.markdown(f"Edited history: {len(edited)} items" + (" (changed)" if changed else " (as recorded)"))
    new_rec = recommend(str(run), tuple(edited), beam, k, order if ex.kind == "diffgrm" else "confidence", case.target,
                        rec.trace.n_passes if ex.kind == "diffgrm" else None)
    before = set(rec.table["item"])
    table = new_rec.table.assign(new=[i not in before for i in new_rec.table["item"]])
    st.dataframe(table[["rank", "title", "sid", "probability", "new"]], hide_index=True, width="stretch",
                 key="whatif_table")


main()
