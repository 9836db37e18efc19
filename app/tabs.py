"""The explorer's per-user tabs (Denoising, Why not?, Compare orders, Codebook spaces, Codebook
health, What if): each a function that draws one view of the chosen user's decoding ("Run health",
the whole run at once, is in ``run_health.py``). Wiring only: the work is in ``diffgrm.explorer``
and the figures in ``diffgrm.viz``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import streamlit as st

from diffgrm import viz
from diffgrm.app.charts import live_chart
from diffgrm.app.shared import (
    ORDERS,
    PROJECTION,
    SCORE_HELP,
    Setting,
    ar_folder,
    code_separation,
    codebook_coords,
    history_view,
    load_explorer,
)
from diffgrm.checkpoint import check_companion
from diffgrm.errors import DiffGRMError
from diffgrm.explorer import Explorer
from diffgrm.safeio import read_json


PLAY_SECONDS = 0.8
"""How long Play shows each step before filling the next digit."""


def start_playing() -> None:
    """Play's callback (runs before the widgets): back to step 0, then one step per rerun."""
    st.session_state["step"] = 0
    st.session_state["playing"] = True


def denoising_tab(setting: Setting, case, rec) -> None:
    ex, trace = setting.ex, rec.trace
    n = trace.n_steps
    if "next_step" in st.session_state:  # Play's next step, set before the slider exists
        st.session_state["step"] = st.session_state.pop("next_step")
    st.caption("Every recommendation starts as a fully masked SID (every digit `?`). Each step the decoder fills "
               "one more digit; each row below is one of the final candidates, followed back to the start. "
               "Press Play, or move the slider.")
    left, right = st.columns([1, 6])
    with left:
        st.button("▶ Play", key="play", on_click=start_playing)  # from step 0, one digit at a time
    with right:
        st.session_state.setdefault("step", 0)  # the page opens at the start: every digit masked
        step = min(st.slider("Step", 0, n, key="step", help="0: every digit masked; each step fills one more"), n)
    s = step - 1
    if step == 0:
        st.markdown(f"**Step 0 of {n}:** every digit is masked; the decoder has read the history and is about to "
                    "fill its first digit.")
    else:
        r = trace.lineage(0)[s]
        d, c, p = int(trace.digit[s, r]), int(trace.code[s, r]), float(trace.prob[s, r])
        in_pass = (f" from network pass {int(trace.step_passes[s]) + 1} of {trace.n_passes}"
                   if trace.n_passes < n else "")
        st.markdown(f"**Step {step} of {n}:** the best beam fills digit {d} with code {c} "
                    f"(probability {p:.3f}){in_pass}; {n - step} digit(s) still masked.")
    live_chart(viz.denoising_strip(trace, beams=min(8, len(rec.table)), titles=ex.titles,
                                   initial_step=s if step else viz.START, player=False, code_words=ex.code_words()),
               key="strip")
    a, b = st.columns(2)
    with a:
        live_chart(viz.alternatives_figure(trace, beam=0, step=max(s, 0)), key="alternatives")
    with b:
        metric = st.radio("Confidence as", list(viz.METRICS), horizontal=True, key="conf_metric",
                          format_func=viz.METRIC_LABELS.get)
        live_chart(viz.confidence_heatmap(trace, beam=0, metric=metric), key="confidence")
    if step:
        fill_order_panel(setting, case, rec, s)
    if st.session_state.get("playing"):
        if step < n:
            time.sleep(PLAY_SECONDS)
            st.session_state["next_step"] = step + 1
            st.rerun()
        st.session_state["playing"] = False


def fill_order_panel(setting: Setting, case, rec, s: int) -> None:
    """Why the best beam filled this digit at this step: the beam, not the single surest digit."""
    trace = rec.trace
    st.subheader(f"Why this fill at step {s + 1}?")
    cands = trace.fills_table(s, limit=200)  # what the search recorded weighing at this step
    kept = int(trace.alive[s].sum())
    ours = cands[cands["on_path"]]
    best = cands.iloc[0] if len(cands) else None
    sure = cands.sort_values("prob", ascending=False, kind="stable").iloc[0] if len(cands) else None
    if trace.order == "confidence" and trace.decoder != "ar":
        text = (f"The outlined cell is not always the most confident one. At each step every kept beam may fill "
                f"**any** open digit with any code, and the search keeps the **{kept} best partial SIDs by beam "
                f"score** (the summed log-probability of all their digits), not the single surest digit. ")
    else:
        text = f"In the {trace.order} order every beam fills the same digit; the search keeps the {kept} best. "
    if len(ours):
        row = ours.iloc[0]
        text += (f"The best final SID descends from candidate **#{int(row['rank'])}** of this step (digit "
                 f"{int(row['digit'])} = code {int(row['code'])}, p = {row['prob']:.3f}, beam score "
                 f"{row['beam_score']:.2f}).")
        if sure is not None and int(sure["rank"]) != int(row["rank"]):
            fate = ("was kept too, but ranks lower: its beam's earlier digits score lower" if sure["status"] == "kept"
                    else f"was not kept ({sure['status']})")
            text += (f" The most probable single fill here, digit {int(sure['digit'])} = code {int(sure['code'])} "
                     f"(p = {sure['prob']:.3f}, from beam {int(sure['parent'])}), {fate}.")
    st.markdown(text)
    shown = cands.head(15)
    if len(ours) and int(ours.iloc[0]["rank"]) > 15:
        shown = cands[(cands["rank"] <= 15) | cands["on_path"]]
    st.dataframe(
        shown, hide_index=True, width="stretch", key="candidates", height=35 * (len(shown) + 1) + 3,
        column_order=["rank", "parent", "parent_sid", "digit", "code", "prob", "beam_score", "sid", "status",
                      "on_path"],
        column_config={
            "rank": st.column_config.NumberColumn("rank", help="by beam score, among all candidate fills"),
            "parent": st.column_config.NumberColumn("from beam", help="the kept beam of the step before (by score); "
                                                                      "0 = the fully masked start"),
            "parent_sid": st.column_config.TextColumn("its SID", help="? = still masked"),
            "prob": st.column_config.NumberColumn("p", format="%.3f", help="the decoder's probability of this code"),
            "beam_score": st.column_config.NumberColumn("beam score", format="%.2f",
                                                        help="the beam's score plus log p: what the beam ranks by"),
            "sid": st.column_config.TextColumn("SID after the fill"),
            "status": st.column_config.TextColumn("kept?"),
            "on_path": st.column_config.CheckboxColumn("final #1's path", help="the fill on the way to the best "
                                                                              "final SID"),
        })
    st.caption(f"The {len(shown)} best of the candidate fills at step {s + 1} ({kept} kept). kept? — kept: one of "
               "the step's beams; duplicate: the same partial SID was kept through another fill order; redundant: "
               "high enough, but the beam kept partial SIDs leading to other items first; below the beam: scored "
               "under the lowest kept one; only history items: every item it leads to was seen.")
    if best is not None and best["status"] != "kept":
        st.caption(f"(The top-scored candidate is {best['status']}.)")


def why_tab(ex: Explorer, case, rec, exclude_seen: bool) -> None:
    st.caption("Why was an item **not** recommended? The decoder keeps only a few partial SIDs at each step; this "
               "shows the step and digit at which the item's SID fell out of that shortlist, how close it came, "
               "and which partial SIDs took its place.")
    choices = {f"held-out next item: {ex.titles[case.target]}": case.target}
    query = st.text_input("Or find an item by title", key="why_query", placeholder="a word of the title")
    if query:
        for row in ex.search_titles(query, limit=30).itertuples():
            choices.setdefault(f"{row.title} (item {row.item})", int(row.item))
    label = st.selectbox("Item", list(choices), key="why_item")
    item = choices.get(label, case.target)
    if exclude_seen and item in set(case.history.tolist()):
        st.info(f"**{ex.titles[item]}** is in this user's history, and the history is kept out of the "
                "recommendations (sidebar): the search skipped it on purpose. Turn that off to see where it "
                "would have ranked.")
        return
    why = ex.why_not(case.history, rec, item)
    st.markdown(f"**{ex.titles[item]}** (SID `{viz.sid_text(ex.codes[item])}`): {why.message}.")
    st.plotly_chart(viz.why_not_figure(why, item_title=ex.titles[item], message=False), width="stretch", key="why")
    if not why.displaced_by.empty:
        st.markdown(f"The kept beams just above it at step {why.step + 1} (lowest first; `_` = still masked):")
        # beams are kept best first, so a beam's index + 1 is its rank among the step's kept beams
        st.dataframe(why.displaced_by.assign(beam=why.displaced_by["beam"] + 1), hide_index=True, width="stretch",
                     column_config={"beam": st.column_config.NumberColumn("kept beam (rank)"),
                                    "sid": st.column_config.TextColumn("partial SID"),
                                    "score": st.column_config.NumberColumn("beam score", format="%.2f")})


def ar_companion(setting: Setting, path: str) -> tuple[Path | None, str | None]:
    """The AR run at ``path`` when it can be compared (same catalogue), else why not."""
    ex = setting.ex
    ar_run = Path(path.strip()) if path.strip() else None
    if ar_run is None:
        return None, None
    if not (ar_run / "model.safetensors").is_file():
        return None, (f"No AR run in `{ar_run}`; train one to add it here: "
                      f"`diffgrm train {setting.run} --model ar --preset tiny --out {ar_run}` (on this run's own SIDs "
                      "and users).")
    try:
        other = load_explorer(str(ar_run))
    except DiffGRMError as exc:
        return None, f"Cannot open the AR run `{ar_run}`: {exc}"
    try:
        check_companion(setting.run, ex.meta, ar_run, other.meta, flag="")
    except DiffGRMError as exc:
        return None, f"{exc}."
    return ar_run, None


def compare_tab(setting: Setting, case) -> None:
    ex = setting.ex
    st.caption("Does the order in which digits are filled matter? The same user decoded with the surest digit "
               "first (confidence), in a fixed order, in a random order, and by the left-to-right AR decoder.")
    if not ex.denoises:
        st.info("This run is autoregressive: it has one, left-to-right, order.")
        return
    pick = st.container()  # the choice comes first on the page; the path it depends on sits below, "advanced"
    with st.expander("Advanced: which AR run to compare with"):
        path = st.text_input("AR run folder (trained on the same SIDs)", value=ar_folder(setting.run), key="ar_run",
                             help="a run trained with `diffgrm train DATA --model ar` on the same prepared data")
    ar_run, problem = ar_companion(setting, path)
    options = ["the three CPD fill orders (confidence, fixed, random)"]
    if ar_run is not None:
        options.append(f"the three CPD orders and the AR decoder ({ar_run.name})")
    choice = pick.selectbox("Compare", options, index=len(options) - 1, key="compare_with")
    if problem and problem.startswith("No AR run"):
        st.caption(problem)
    elif problem:
        st.warning(problem)
    recs = {f"{name} order": setting.decode_with(case.history, case.target, name) for name in ORDERS}
    if ar_run is not None and choice == options[-1]:
        recs["AR (left to right)"] = setting.decode_with(case.history, case.target, "confidence", run=ar_run)
    st.caption(f"The same user decoded {len(recs)} ways; x is the step, y the probability of the digit "
               "committed then, and below the running log-probability of the best beam.")
    st.plotly_chart(viz.compare_orders({name: r.trace for name, r in recs.items()}), width="stretch", key="orders")
    found = {name: int(r.table.loc[r.table["hit"], "rank"].iloc[0]) for name, r in recs.items() if r.table["hit"].any()}
    target = ex.titles[case.target]
    if found:
        st.markdown(f"**Held-out item ({target})** found by: "
                    + ", ".join(f"{name} (rank {rank})" for name, rank in found.items())
                    + (f"; not by: {', '.join(n for n in recs if n not in found)}." if len(found) < len(recs) else "."))
    else:
        st.markdown(f"**Held-out item ({target})**: no order put it in its Top-{setting.k}.")
    st.markdown(f"**Each order's Top-{setting.k}:**")
    st.dataframe(ex.orders_table({name: r.table for name, r in recs.items()}), hide_index=True, width="stretch",
                 key="orders_table")
    training_views(setting, case, recs["confidence order"])


def training_views(setting: Setting, case, rec) -> None:
    """OCN's views of the held-out SID beside the order CPD filled: did training see CPD's states?"""
    ex = setting.ex
    st.subheader("What OCN trained on, beside what CPD did")
    ocn, cpd = ex.fill_orders(case.history, rec)
    trace = rec.trace
    best = trace.lineage(0)
    st.caption("OCN trains on one trajectory per target: a single confidence pass over the fully masked SID, then "
               "the digits unmasked surest first. CPD asks the network again after every fill and lets the beam "
               "decide, so its order can drift from OCN's. Green rows: partial SIDs both trajectories hold.")
    st.plotly_chart(viz.views_beside_fills(ocn, cpd, ex.codes[case.target], cpd_codes=trace.tokens[-1, best[-1]]),
                    width="stretch", key="views")


def codebook_tab(ex: Explorer, run: Path, case, rec) -> None:
    st.caption("What do the codes mean? Each digit sorts every item into one of its codes by a slice of the "
               "item's text embedding; items that share a code read alike in that slice. Pick a digit and a code "
               "to see its items, with this user's history and recommendations marked.")
    try:
        coords = codebook_coords(str(run), PROJECTION)
    except DiffGRMError as exc:
        st.info(str(exc))
        return
    recommended = rec.table["item"].tolist()
    a, b = st.columns([1, 3])
    with a:
        digit = st.selectbox("Digit", list(range(ex.n_digits)), key="digit")
    summary = ex.code_summary(digit, history=case.history, recommended=recommended, target=case.target)
    target_code = int(ex.codes[case.target, digit])

    words = ex.code_words()

    def label(c: int) -> str:
        row = summary.iloc[c]
        named = f" \u201c{', '.join(words[digit][c])}\u201d" if words[digit][c] else ""
        notes = [f"{int(row['items'])} items"]
        notes += ["the held-out item"] if row["target"] else []
        notes += [f"{int(row['history'])} in the history"] if row["history"] else []
        notes += [f"{int(row['recommended'])} recommended"] if row["recommended"] else []
        return f"code {c}{named} ({', '.join(notes)})"

    with b:
        chosen = st.selectbox("Highlight a code", list(range(len(summary))), index=target_code,
                              format_func=label, key=f"highlight_{digit}")
    try:
        ratio = code_separation(str(run), digit)
        spread = (f" In this digit an item sits, typically, {ratio:.0%} as far from its own centroid as from the "
                  "next one: items form one continuous cloud that the codes divide into neighbouring regions (a "
                  "plain projection shows one ball), so the map is laid out by code." if ratio > 0.7 else "")
    except DiffGRMError:
        spread = ""
    st.caption(f"Grey points: every item's digit-{digit} sub-vector, drawn around its code's centroid (diamonds, "
               "labelled with their code). Purple: the highlighted code's items and centroid; blue: the history; "
               "stars: the recommendations; green square: the held-out item. Hover a point for its title." + spread)
    st.plotly_chart(viz.codebook_figure(coords[digit], digit=digit, titles=ex.titles, sids=ex.codes,
                                        history=case.history.tolist(), recommended=recommended,
                                        target=case.target, highlight=chosen, code_words=ex.code_words()),
                    width="stretch", key="codebook")
    members = ex.code_items(digit, chosen)
    roles = {**{int(i): "history" for i in case.history}, **{int(i): "recommended" for i in recommended},
             case.target: "held-out item"}
    st.markdown(f"**The {len(members)} items with code {chosen} in digit {digit}:**")
    st.dataframe(
        {"title": [ex.titles[i] for i in members], "SID": [viz.sid_text(ex.codes[i]) for i in members],
         "for this user": [roles.get(int(i), "") for i in members]},
        hide_index=True, width="stretch", key="code_items")


def health_tab(ex: Explorer) -> None:
    st.caption("Are the SIDs good names for the items? Every code should be used, no SID should be shared by two "
               "items (the tokenizer moves such items apart), and each digit should carry some of the information.")
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
    n_items, n_codes, n = ex.prepared.n_items, ex.prepared.catalogue.codebook_size, ex.n_digits
    st.markdown(
        f"**Collisions before repair, counted two ways:** {before['collision_rate_sharing']:.1%} of items share "
        f"their SID with another item; {before['collision_rate_beyond_first']:.1%} of items are beyond the first "
        f"in their SID (items minus distinct SIDs, the count papers usually print)."
    )
    if n > 1 and n_items < n_codes ** (n - 1):
        st.markdown(
            f"**Reading H(digit | others):** {n_items:,} items among {n_codes ** n:,} possible SIDs ({n_codes}^{n}) "
            f"leave the SID space almost empty, so any {n - 1} digits already pick out nearly one item and the "
            "last digit has almost nothing left to tell: H(digit | others) is near 0 for **any** tokenizer on a "
            "catalogue this small, random codes included. A value near 0 here does not mean the digit is "
            "redundant; compare the bits each digit alone holds and what the first k digits tell instead."
        )
    else:
        st.markdown(
            f"**Reading H(digit | others):** the bits of a digit that the other {n - 1} digits do not already "
            f"tell; with {n_items:,} items in {n_codes ** n:,} possible SIDs, a digit near 0 mostly repeats the others."
        )
    path = ex.prepared.path / "collisions.json"
    try:
        groups = read_json(path, kind=list) if path.is_file() else []
    except DiffGRMError as exc:
        st.warning(str(exc))
        groups = []
    shared = ex.prepared.report.get("collision_groups_before", len(groups))
    st.markdown(f"**{shared} SID{' was' if shared == 1 else 's were'} shared before repair**; the largest groups, "
                "with where their items moved:")
    for g in groups[:5]:
        items = "; ".join(f"{i['title']} -> {viz.sid_text(i['new_sid'])}" for i in g["items"][:6])
        st.markdown(f"- `{viz.sid_text(g['sid'])}` ({len(g['items'])} items): {items}")


def whatif_tab(setting: Setting, case, rec) -> None:
    ex = setting.ex
    st.caption("Edit the history and decode again: which recommendations move? Remove an item the user saw, or "
               "add one, and compare the new Top-K with the old.")
    key = f"edit_{case.user}"
    if key not in st.session_state:
        st.session_state[key] = [int(i) for i in case.history]
    edited: list[int] = st.session_state[key]
    labels = {i: f"{ex.titles[i]} (#{i})" for i in set(edited) | set(case.history.tolist())}
    newest_first = list(reversed(edited))  # the same order as the history tables
    if len(edited) > 1:
        # no "select all", and at most all but one: the history cannot be emptied here
        remove = st.multiselect("Remove from the history (newest first)", newest_first,
                                format_func=lambda i: labels.get(i, str(i)), key="whatif_remove",
                                select_all=False, max_selections=len(edited) - 1,
                                help="at most all but one: a recommendation needs at least one past item")
    else:
        remove = []
        st.caption("The history holds one item: add another before removing it.")
    query = st.text_input("Find an item to add (title contains)", key="whatif_query")
    matches = ex.search_titles(query)
    matches = matches[~matches["item"].isin(set(edited))]  # an item already in the history is not offered again
    add = None
    if len(matches):
        add = st.selectbox("Add", matches["item"].tolist(), format_func=lambda i: ex.titles[i], key="whatif_add")
    elif query:
        st.caption(f"No item outside the history has a title containing {query!r}.")
    apply, reset = st.columns([1, 8])
    if apply.button("Apply", key="whatif_apply", type="primary"):
        new = [i for i in edited if i not in set(remove)] + ([int(add)] if add is not None else [])
        if not new:
            st.error("Keep at least one item in the history: a recommendation needs at least one past item.")
        else:
            st.session_state[key] = new
            st.session_state.pop("whatif_remove", None)
            st.rerun()
    if reset.button("Reset", key="whatif_reset"):
        st.session_state[key] = [int(i) for i in case.history]
        st.session_state.pop("whatif_remove", None)
        st.rerun()
    edited = st.session_state[key]
    changed = edited != [int(i) for i in case.history]
    st.markdown(f"Edited history: {len(edited)} items" + (" (changed)" if changed else " (as recorded)"))
    if changed:
        frame, config = history_view(ex, np.asarray(edited, dtype=np.int64), limit=None)
        with st.expander(f"The edited history ({len(edited)} items, newest first)", expanded=True):
            st.dataframe(frame, hide_index=True, width="stretch", column_config=config, key="whatif_history",
                         height=min(35 * len(frame) + 38, 300))
    new_rec = setting.decode(edited, case.target)
    now, dropped = ex.rank_changes(rec.table, new_rec.table)
    moved = int((now["change"] != "same").sum())
    st.markdown(f"**Top-{setting.k} after the edit:** {int((now['change'] == 'new').sum())} new, "
                f"{moved - int((now['change'] == 'new').sum())} moved, {len(dropped)} dropped out.")
    now = now.assign(rank_before=["" if r != r else str(int(r)) for r in now["rank_before"]])  # blank when new
    st.dataframe(now[["rank", "title", "sid", "probability", "change", "rank_before"]], hide_index=True,
                 width="stretch", key="whatif_table",
                 column_config={"sid": st.column_config.TextColumn("SID", width=110),
                                "probability": st.column_config.NumberColumn("SID probability", format="%.5f",
                                                                             help=SCORE_HELP),
                                "change": st.column_config.TextColumn("change", help="against the recorded history's "
                                                                                     "Top-K"),
                                "rank_before": st.column_config.TextColumn("rank before")})
    if len(dropped):
        st.markdown("**Dropped out of the Top-%d:**" % setting.k)
        st.dataframe(dropped[["rank_before", "title", "sid"]], hide_index=True, width="stretch", key="whatif_dropped",
                     column_config={"rank_before": st.column_config.NumberColumn("rank before"),
                                    "sid": st.column_config.TextColumn("SID", width=110)})
