"""The Streamlit app with streamlit.testing's AppTest: renders, reacts to widgets, handles bad states."""

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py")


@pytest.fixture
def app(chain_run, monkeypatch):
    monkeypatch.setenv("DIFFGRM_RUN", str(chain_run))
    monkeypatch.setenv("DIFFGRM_PROJECTION", "pca")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def table(at, i):
    return at.dataframe[i].value


FRAMES = {  # st.dataframe keeps no key without selections: find each table by its columns
    "history": lambda cols, i: i == 0,
    "topk": lambda cols, i: i == 1,
    "candidates": lambda cols, i: "on_path" in cols,
    "orders_table": lambda cols, i: "confidence order" in cols,
    "whatif_history": lambda cols, i: i > 1 and cols == ["title", "sid"],
    "whatif_table": lambda cols, i: "change" in cols,
    "whatif_dropped": lambda cols, i: "rank_before" in cols and "change" not in cols,
    "code_items": lambda cols, i: "for this user" in cols,
}


def frame_element(at, key: str):
    return next(d for i, d in enumerate(at.dataframe) if FRAMES[key](list(d.value.columns), i))


def frame(at, key: str):
    return frame_element(at, key).value


def column_config(at, key: str) -> dict:
    import json

    return json.loads(frame_element(at, key).proto.columns)


def test_page_renders_a_user(app):
    assert app.title[0].value == "User U0: what comes next?"
    assert "Held-out next item:" in markdown(app)
    topk = table(app, 1)
    assert list(topk.columns[:3]) == ["rank", "title", "sid"] and len(topk) == 10
    assert topk["title"].str.startswith("Chain item").all()
    assert len(app.tabs) == 7


def test_history_table_shows_titles_and_full_sids_without_the_internal_index(app):
    history = frame(app, "history")
    assert list(history.columns) == ["title", "sid"]  # no internal item index, no position column
    assert history["sid"].str.fullmatch(r"\d+-\d+-\d+-\d+").all()
    config = column_config(app, "history")
    assert config["sid"]["width"] >= 100  # wide enough for the whole SID


def test_top_k_probability_is_labelled_and_explained(app):
    config = column_config(app, "topk")
    assert config["probability"]["label"] == "SID probability"
    assert "product" in config["probability"]["help"]
    assert any("**SID probability**: the product of the filled digits' probabilities" in c.value for c in app.caption)


def test_history_is_kept_out_of_the_recommendations_by_default(app, chain_run):
    from diffgrm.explorer import Explorer

    ex = Explorer(chain_run)
    case = ex.user("U0")
    seen = {ex.titles[i] for i in case.history}
    toggle = app.sidebar.toggle(key="exclude_seen")
    assert toggle.value is True and toggle.label == "Keep the user's history out of the recommendations"
    assert not set(table(app, 1)["title"]) & seen
    assert "in_history" not in table(app, 1).columns
    toggle.set_value(False).run()  # the chain model recommends the user's own recent items when allowed
    assert not app.exception
    allowed = table(app, 1)
    assert set(allowed["title"]) & seen and allowed["in_history"].any()
    assert any("of these 10 are in the history" in c.value for c in app.caption)


def test_picking_another_user_changes_the_page(app):
    before = table(app, 0)["title"].tolist()
    app.text_input(key="user_id").set_value("U5").run()
    assert not app.exception
    assert app.title[0].value == "User U5: what comes next?"
    assert table(app, 0)["title"].tolist() != before
    app.button(key="random_user").click().run()
    assert not app.exception and app.title[0].value.startswith("User U")


def test_the_page_opens_at_step_0_and_play_fills_every_digit(app, monkeypatch):
    from diffgrm.app import tabs

    start = [m.value for m in app.markdown if m.value.startswith("**Step")]
    assert start and start[0].startswith("**Step 0 of 4:** every digit is masked")
    strip = chart(app, "strip")
    assert strip["layout"]["title"]["text"].endswith("step 0 of 4, every digit masked")
    assert [t["text"] for t in strip["data"] if t["name"] == "masked"][0][0] == ["?"] * 4
    assert not any(h.value.startswith("Why this fill") for h in app.subheader)  # nothing filled yet
    monkeypatch.setattr(tabs, "PLAY_SECONDS", 0.0)
    app.button(key="play").click().run()
    assert not app.exception, app.exception
    assert app.slider(key="step").value == 4 and not app.session_state["playing"]
    end = [m.value for m in app.markdown if m.value.startswith("**Step")]
    assert "Step 4 of 4" in end[0] and "0 digit(s) still masked" in end[0]
    assert "after step 4 of 4" in chart(app, "strip")["layout"]["title"]["text"]


def test_a_newcomer_gets_an_intro_and_is_told_what_the_model_is(app):
    intro = app.expander[0]
    assert intro.label.startswith("New here? What a SID is")
    text = "\n".join(m.value for m in intro.markdown)
    assert "semantic ID (SID)" in text and "4 digits, each one of 8 codes" in text and "Play" in text
    note = "\n".join(m.value for m in app.sidebar.markdown)
    assert "**The model:** DiffGRM" in note and "arxiv.org/abs/2510.21805" in note and "docs/method.md" in note


def test_step_scrubber_changes_what_is_shown(app):
    app.slider(key="step").set_value(4).run()
    last = [m.value for m in app.markdown if m.value.startswith("**Step")]
    assert last and "Step 4 of 4" in last[0]
    app.slider(key="step").set_value(1).run()
    first = [m.value for m in app.markdown if m.value.startswith("**Step")]
    assert "Step 1 of 4" in first[0] and "3 digit(s) still masked" in first[0]
    assert first != last


def test_fewer_network_passes_show_which_pass_filled_each_digit(app):
    assert app.slider(key="passes").value == 4 and app.slider(key="passes").max == 4
    app.slider(key="passes").set_value(2).run()
    app.slider(key="step").set_value(4).run()
    assert not app.exception, app.exception
    line = [m.value for m in app.markdown if m.value.startswith("**Step")][0]
    assert "Step 4 of 4" in line and "network pass 2 of 2" in line
    strip = chart(app, "strip")
    assert "4 digits in 2 network passes" in strip["layout"]["title"]["text"]
    assert "after step 4 of 4 (pass 2)" in strip["layout"]["title"]["text"]
    assert len(table(app, 1)) == 10  # still a full Top-10 of distinct items
    assert table(app, 1)["title"].is_unique


def chart(at, key: str) -> dict:
    """The figure of the chart called ``key``: a plotly chart, or a live chart (app/charts.py, its
    figure passed as the component's ``spec`` argument)."""
    import json

    for c in at.get("plotly_chart"):
        if c.proto.id.endswith(key):
            return json.loads(c.proto.spec)
    live = next(c for c in at.get("component_instance") if c.proto.id.endswith(f"-{key}"))
    return json.loads(json.loads(live.proto.json_args)["spec"])


def live_ids(at) -> dict[str, str]:
    """Each live chart's element id by key: the same id across reruns means the same chart, updated in place."""
    return {c.proto.id.rsplit("-", 1)[-1]: c.proto.id for c in at.get("component_instance")}


def test_the_denoising_tab_has_one_step_control_and_readable_labels(app):
    strip = chart(app, "strip")
    assert "sliders" not in strip["layout"] and "updatemenus" not in strip["layout"] and not strip.get("frames")
    assert [s.key for s in app.slider if s.key == "step"] == ["step"]
    radio = app.radio(key="conf_metric")
    assert radio.options == ["max probability", "entropy (bits)"] and radio.value == "max_prob"
    radio.set_value("entropy_bits").run()
    assert not app.exception
    assert chart(app, "confidence")["layout"]["title"]["text"].startswith("Entropy (bits) per step")
    app.slider(key="step").set_value(1).run()
    alternatives = chart(app, "alternatives")
    biggest = max(max(t["x"]) for t in alternatives["data"])
    upper = alternatives["layout"]["xaxis"]["range"][1]
    assert upper == pytest.approx(min(1.0, max(biggest * 1.3, 0.02)))  # fitted to the bars, not 0..1
    assert all(t["text"] == [f"{v:.3f}" for v in t["x"]] for t in alternatives["data"])  # values printed


def test_the_denoising_tab_explains_the_confidence_order_with_the_competing_fills(app):
    assert "surest of first" not in app.sidebar.selectbox(key="order").help
    assert "summed log-probability" in app.sidebar.selectbox(key="order").help
    for step in (1, 2, 4):
        app.slider(key="step").set_value(step).run()
        assert not app.exception, app.exception
        assert any(h.value == f"Why this fill at step {step}?" for h in app.subheader)
        text = markdown(app)
        assert "best partial SIDs by beam score" in text and "descends from candidate" in text
        cands = frame(app, "candidates")
        assert (cands["status"] == "kept").any()
        assert cands["on_path"].sum() == 1
        assert cands["beam_score"].is_monotonic_decreasing


def test_recorded_fills_agree_with_the_search(chain_run):
    from diffgrm.explorer import Explorer

    ex = Explorer(chain_run)
    case = ex.user("U3")
    for seen in (False, True):
        rec = ex.recommend(case.history, beam=10, k=5, target=case.target, exclude_seen=seen)
        tr = rec.trace
        for s in range(tr.n_steps):
            cands = tr.fills_table(s, limit=None)
            alive = tr.alive[s]
            kept = cands[cands["status"] == "kept"]
            assert len(kept) == alive.sum()  # every kept beam is one candidate, found once
            np.testing.assert_allclose(np.sort(kept["beam_score"]), np.sort(tr.score[s, alive]), rtol=1e-4, atol=1e-4)
            lowest = tr.score[s, alive].min()
            assert (cands.loc[cands["status"] == "below the beam", "beam_score"] < lowest).all()
            path = cands[cands["on_path"]]
            r = tr.lineage(0)[s]
            assert len(path) == 1 and path["status"].iloc[0] == "kept"
            assert (path["digit"].iloc[0], path["code"].iloc[0]) == (tr.digit[s, r], tr.code[s, r])
            assert path["prob"].iloc[0] == pytest.approx(tr.prob[s, r], rel=1e-3)
        if seen:  # the last step's children naming a history item are never kept
            assert not set(rec.table["item"]) & set(case.history.tolist())


def open_view(at, name: str):
    at.session_state["view"] = name
    at.run()
    assert not at.exception, at.exception
    return at


def test_only_the_open_tab_is_drawn(app):
    assert any(m.value.startswith("**Step") for m in app.markdown)
    open_view(app, "Codebook health")
    assert not any(m.value.startswith("**Step") for m in app.markdown)
    assert any("shared before repair" in m.value for m in app.markdown)
    open_view(app, "Codebook spaces")
    assert app.selectbox(key="digit").options == ["0", "1", "2", "3"]
    open_view(app, "Compare orders")
    assert any("decoded" in c.value and "ways" in c.value for c in app.caption)


def test_compare_tab_sets_ocns_training_views_beside_cpds_fills(app, chain_run):
    from diffgrm.explorer import Explorer

    open_view(app, "Compare orders")
    assert not app.exception, app.exception
    assert any(h.value == "What OCN trained on, beside what CPD did" for h in app.subheader)
    views = chart(app, "views")
    left, right = views["data"]
    assert left["z"]["shape"] == "4, 4" and left["text"][0] == ["?"] * 4  # row 0: nothing known yet
    ex = Explorer(chain_run)
    case = ex.user(app.session_state["user_id"])
    ocn, cpd = ex.fill_orders(case.history, ex.recommend(case.history, exclude_seen=True))
    assert sorted(ocn.tolist()) == sorted(cpd.tolist()) == [0, 1, 2, 3]
    first = int(ocn[0])  # OCN's row 1 shows the held-out SID's code of its surest digit, and only that
    assert left["text"][1][first] == str(int(ex.codes[case.target, first])) and left["text"][1].count("?") == 3
    assert right["text"][1][int(cpd[0])] != "?" and right["text"][1].count("?") == 3


def figure_names(at) -> set[str]:
    import json

    return {t.get("name") for chart in at.get("plotly_chart") for t in json.loads(chart.proto.spec)["data"]}


def test_health_view_shows_the_sid_information(app):
    import json

    open_view(app, "Codebook health")
    names = figure_names(app)
    assert {"added by the k-th digit", "H(digit | others): only this digit"} <= names
    assert any("counted two ways" in m.value and "beyond the first" in m.value for m in app.markdown)
    text = markdown(app)
    assert "mostly repeats" not in text  # H(digit | others) near 0 is the catalogue's size, not redundancy
    assert "possible SIDs (8^4)" in text and "near 0 for **any** tokenizer" in text

    def title() -> str:
        specs = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in app.get("plotly_chart")]
        return next(t for t in specs if t.startswith("What the digits tell"))

    assert "(before repair)" in title()
    app.radio(key="info_codes").set_value("after repair").run()
    assert not app.exception
    assert "(after repair)" in title()


def test_compare_tab_adds_a_matching_ar_run(app, chain_ar_run, chain_run):
    from diffgrm.explorer import Explorer

    open_view(app, "Compare orders")
    choice = app.selectbox(key="compare_with")  # the first control: a plain choice, the path is "advanced"
    assert choice.options[-1] == "the three CPD orders and the AR decoder (run-ar)" and choice.index == 1
    assert app.text_input(key="ar_run").value == str(chain_ar_run)  # found as RUN-ar
    assert any(e.label.startswith("Advanced") for e in app.expander)
    assert any("decoded 4 ways" in c.value for c in app.caption)
    assert "AR (left to right)" in figure_names(app)
    tops = frame(app, "orders_table")
    assert list(tops.columns) == ["rank", "confidence order", "fixed order", "random order", "AR (left to right)"]
    assert len(tops) == 10 and tops["confidence order"].str.startswith("Chain item").all()
    ex = Explorer(chain_run)
    seen = {ex.titles[i] for i in ex.user("U0").history}
    assert not seen & set(tops.drop(columns="rank").to_numpy().ravel())  # every order keeps the history out
    assert "**Held-out item (" in markdown(app)
    choice.set_value(choice.options[0]).run()
    assert "AR (left to right)" not in figure_names(app)
    app.text_input(key="ar_run").set_value(str(chain_ar_run) + "-missing").run()
    assert not app.exception
    assert any("No AR run in" in c.value for c in app.caption)
    assert app.selectbox(key="compare_with").options == ["the three CPD fill orders (confidence, fixed, random)"]
    assert "AR (left to right)" not in figure_names(app)
    app.text_input(key="ar_run").set_value(str(chain_ar_run.parent / "run")).run()  # a DiffGRM run
    assert "not an autoregressive one" in app.warning[0].value


def test_compare_tab_says_which_order_found_the_held_out_item(chain_run):
    from diffgrm.explorer import Explorer

    ex = Explorer(chain_run)
    case = ex.user("U0")
    recs = {o: ex.recommend(case.history, order=o, target=case.target) for o in ("confidence", "fixed")}
    tops = ex.orders_table({o: r.table for o, r in recs.items()})
    for o, r in recs.items():
        hit = r.table["hit"].to_numpy()
        assert [c.endswith("(held-out item)") for c in tops[o]] == hit.tolist()


def test_what_if_editor_changes_the_top_k(app):
    open_view(app, "What if")
    recorded = list(app.session_state["edit_U0"])
    topk_before = table(app, 1)["title"].tolist()
    remove = app.multiselect(key="whatif_remove")
    assert remove.proto.select_all == 0  # no "Select all" that empties the history in one click
    assert remove.proto.max_selections == len(recorded) - 1
    assert remove.options[0].endswith(f"(#{recorded[-1]})")  # newest first, like the history table
    remove.set_value(recorded[:-1])  # drop all but the latest item ...
    app.text_input(key="whatif_query").set_value("Chain item 3").run()
    assert app.selectbox(key="whatif_add").value == 3  # ... and add item 3
    app.button(key="whatif_apply").click().run()
    assert not app.exception
    assert app.session_state["edit_U0"] == [recorded[-1], 3]
    assert any("(changed)" in m.value for m in app.markdown)
    edited = frame(app, "whatif_history")
    assert edited["title"].tolist() == ["Chain item 3", f"Chain item {recorded[-1]}"]  # shown, newest first
    after = frame(app, "whatif_table")
    assert after["title"].tolist() != topk_before
    assert {"change", "rank_before"} <= set(after.columns)
    assert (after["change"] == "new").any()
    assert not {"Chain item 3", f"Chain item {recorded[-1]}"} & set(after["title"])  # the history stays out
    dropped = frame(app, "whatif_dropped")
    assert len(dropped) == (after["change"] == "new").sum()  # as many drop out as come in
    assert not set(dropped["title"]) & set(after["title"])
    app.button(key="whatif_reset").click().run()
    assert any("(as recorded)" in m.value for m in app.markdown)


def test_what_if_editor_cannot_empty_the_history(app):
    open_view(app, "What if")
    recorded = list(app.session_state["edit_U0"])
    app.text_input(key="whatif_query").set_value("Chain item").run()
    offered = set(app.selectbox(key="whatif_add").options)
    assert offered and not offered & {f"Chain item {i}" for i in recorded}  # the history is not offered again
    app.text_input(key="whatif_query").set_value("").run()
    remove = app.multiselect(key="whatif_remove")
    assert remove.proto.select_all == 0 and remove.proto.max_selections == len(recorded) - 1  # never all
    remove.set_value(recorded[:-1])
    app.button(key="whatif_apply").click().run()
    assert not app.exception and app.session_state["edit_U0"] == recorded[-1:]
    assert not [m for m in app.multiselect if m.key == "whatif_remove"]  # one item left: nothing to remove
    assert any("The history holds one item" in c.value for c in app.caption)


def test_rank_changes_name_moves_new_items_and_dropped_ones():
    import pandas as pd

    from diffgrm.explorer import Explorer

    before = pd.DataFrame({"rank": [1, 2, 3], "item": [10, 11, 12], "title": ["a", "b", "c"], "sid": ["x"] * 3})
    after = pd.DataFrame({"rank": [1, 2, 3], "item": [11, 10, 13], "title": ["b", "a", "d"], "sid": ["x"] * 3})
    now, dropped = Explorer.rank_changes(before, after)
    assert now["change"].tolist() == ["up 1", "down 1", "new"]
    assert now["rank_before"].iloc[:2].tolist() == [2, 1] and np.isnan(now["rank_before"].iloc[2])
    assert dropped["title"].tolist() == ["c"] and dropped["rank_before"].tolist() == [3]


def test_bad_states_are_shown_in_the_page(app, tmp_path, monkeypatch):
    app.text_input(key="user_id").set_value("nobody").run()
    assert not app.exception
    assert "unknown user id 'nobody'" in app.error[0].value
    monkeypatch.setenv("DIFFGRM_RUN", str(tmp_path / "empty"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert "No trained run" in at.error[0].value
    assert at.button(key="install_demo").label.startswith("Install the MovieLens-100K demo runs")


@pytest.mark.parametrize("damage", ["truncated weights", "another d_model"])
def test_a_damaged_run_is_an_error_in_the_page_not_a_stack_trace(chain_run, tmp_path, monkeypatch, damage):
    import json
    import shutil

    run = Path(shutil.copytree(chain_run, tmp_path / "run"))
    if damage == "truncated weights":
        (run / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes()[:200])
        expect = "model.safetensors is damaged"
    else:
        meta = json.loads((run / "config.json").read_text())
        meta["model"]["d_model"] = 96
        (run / "config.json").write_text(json.dumps(meta))
        expect = "does not match"
    monkeypatch.setenv("DIFFGRM_RUN", str(run))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert f"Cannot open the run `{run}`" in at.error[0].value and expect in at.error[0].value
    assert "Traceback" not in at.error[0].value


def test_a_damaged_projection_cache_is_reported_rebuilt_and_replaced(chain_run, tmp_path, capsys):
    import shutil

    from diffgrm.explorer import Explorer

    run = Path(shutil.copytree(chain_run, tmp_path / "run"))
    first = Explorer(run).codebook_coords("pca")
    cache = run / "codebook_pca.csv"
    cache.write_text("digit,x\n0,")  # cut short
    again = Explorer(run).codebook_coords("pca")
    assert "is damaged" in capsys.readouterr().err
    assert sorted(again) == sorted(first) and all(again[d].shape == first[d].shape for d in first)
    import pandas as pd

    rebuilt = pd.read_csv(cache)  # replaced on disk, not only computed
    assert {"digit", "x", "y"} <= set(rebuilt.columns) and len(rebuilt) == sum(len(g) for g in first.values())


def test_why_not_tab_tells_where_an_item_left_the_search(app, chain_run):
    from diffgrm.explorer import Explorer

    open_view(app, "Why not?")
    assert not app.exception, app.exception
    text = markdown(app)
    assert "Chain item" in text and ("recommended at rank" in text or "left the beam" in text or "survived" in text)
    assert "this item's best partial SID" in figure_names(app)
    why = chart(app, "why")["layout"]
    target = Explorer(chain_run).user("U0").target
    assert why["title"]["text"].startswith(f"Chain item {target}:")  # the title, not "Item <index>"
    assert why["xaxis"]["tickvals"] == [1, 2, 3, 4] and why["xaxis"]["range"][1] > 4  # step 4's tick shows
    seen = Explorer(chain_run).user("U0").history[-1]
    app.text_input(key="why_query").set_value(f"Chain item {seen}").run()
    app.selectbox(key="why_item").set_value(f"Chain item {seen} (item {seen})").run()
    assert "is in this user's history" in app.info[0].value  # skipped on purpose, not "outscored"
    app.text_input(key="why_query").set_value("Chain item 3").run()
    options = app.selectbox(key="why_item").options
    assert len(options) > 1 and options[0].startswith("held-out next item")
    far = next(o for o in options[1:] if o.startswith("Chain item 3"))
    app.selectbox(key="why_item").set_value(far).run()
    assert not app.exception, app.exception
    assert far.split(" (item")[0] in markdown(app)


def test_the_sidebar_shows_the_runs_test_score_beside_popularity(chain_run, tmp_path, monkeypatch):
    import json
    import shutil

    run = Path(shutil.copytree(chain_run, tmp_path / "run"))
    (run / "metrics.json").write_text(json.dumps({"item": {"ndcg@10": 0.2}, "popularity": {"ndcg@10": 0.05},
                                                  "split": "test", "users": 150, "beam": 32}))
    monkeypatch.setenv("DIFFGRM_RUN", str(run))
    monkeypatch.setenv("DIFFGRM_PROJECTION", "pca")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    metric = at.sidebar.get("metric")[0]
    assert metric.value == "0.2000" and "4.0x popularity (0.0500)" in metric.proto.delta
    assert not any("AR companion" in c.value for c in at.sidebar.caption)
    # the AR companion's score shows beside it when RUN-ar has one
    ar = Path(shutil.copytree(chain_run, tmp_path / "run-ar"))
    (ar / "metrics.json").write_text(json.dumps({"item": {"ndcg@10": 0.1234}, "split": "test", "beam": 32,
                                                 "exclude_seen": True}))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert any("AR companion on the same SIDs: NDCG@10 0.1234" in c.value and "history kept out" in c.value
               for c in at.sidebar.caption)


def test_codebook_view_highlights_a_chosen_code(app, chain_run):
    from diffgrm.explorer import Explorer

    ex = Explorer(chain_run)
    case = ex.user("U0")
    open_view(app, "Codebook spaces")
    app.selectbox(key="digit").set_value(1).run()
    pick = app.selectbox(key="highlight_1")
    code = int(ex.codes[case.target, 1])
    assert pick.value == code and "the held-out item" in pick.options[code]  # opens on the held-out item's code
    other = (code + 1) % 8
    pick.set_value(other).run()
    assert not app.exception, app.exception
    fig = chart(app, "codebook")
    members = ex.code_items(1, other)
    chosen = next(t for t in fig["data"] if t["name"].startswith(f"code {other}: its"))
    assert len(chosen["x"]) == len(members) == int((ex.codes[:, 1] == other).sum())
    names = [t["name"] for t in fig["data"] if t.get("showlegend", True)]
    assert len(names) <= 7 and len(set(names)) == len(names)
    assert fig["layout"]["height"] >= 700
    items = frame(app, "code_items")
    assert items["title"].tolist() == [ex.titles[i] for i in members]
    note = "Laid out by code"  # the reading note is said once on the page, in the figure
    title = fig["layout"]["title"]
    page = " ".join(c.value for c in app.caption) + title["text"] + title["subtitle"]["text"]
    assert page.count(note) == 1


def test_the_toolbar_has_no_deploy_button(app):
    from streamlit import config

    assert config.get_option("client.toolbarMode") == "minimal"


def test_the_toy_world_mode_draws_the_whole_search_on_its_lattice(chain_run, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFGRM_RUN", str(chain_run))
    monkeypatch.setenv("DIFFGRM_TOY_DIR", str(tmp_path / "toy"))
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.sidebar.radio(key="mode").set_value("Toy world").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Toy world: the whole search on one screen"
    lattice = chart(at, "lattice")
    assert lattice["layout"]["title"]["text"].endswith("after step 0 of 2")
    assert [t.get("name") for t in lattice["data"]][1:] == ["kept beams reach"]
    at.slider(key="toy_step").set_value(2).run()
    lattice = chart(at, "lattice")
    assert lattice["data"][-1].get("name") == "final Top-K" and len(lattice["data"][-1]["x"]) == 5
    assert any(m.value.startswith("**Step 2:**") for m in at.markdown)
    assert any(len(d.value) == 5 and list(d.value.columns) == ["rank", "title", "probability"] for d in at.dataframe)


def test_run_health_diagnoses_on_demand_then_draws_the_run_beside_its_ar_companion(chain_run, chain_ar_run, tmp_path,
                                                                                   monkeypatch):
    import shutil

    from diffgrm.app import run_health
    from diffgrm.diagnose import DiagnoseSettings

    run = Path(shutil.copytree(chain_run, tmp_path / "run"))  # the button writes into the run: a copy
    shutil.copytree(chain_ar_run, tmp_path / "run-ar")
    monkeypatch.setattr(run_health, "QUICK", DiagnoseSettings(users=40, beam=10, curve_users=20, beams=(10, 16)))
    monkeypatch.setenv("DIFFGRM_RUN", str(run))
    monkeypatch.setenv("DIFFGRM_PROJECTION", "pca")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    open_view(at, "Run health")
    assert any("No diagnostics for this run yet" in i.value for i in at.info)
    at.button(key="diagnose_now").click().run()
    assert not at.exception, at.exception
    assert (run / "diagnostics.json").is_file() and (tmp_path / "run-ar" / "diagnostics.json").is_file()
    assert "DiffGRM and AR side by side" in markdown(at) and "40 valid users" in markdown(at)
    reliability = chart(at, "reliability")
    assert any("AR: digit 0" in (t.get("name") or "") for t in reliability["data"])
    for key in ("surest", "miss_map", "beam_curve", "order_scatter", "topk_profile"):
        assert chart(at, key)["data"], key
    at.radio(key="calibration_by").set_value("per step").run()
    assert any("step 0" in (t.get("name") or "") for t in chart(at, "reliability")["data"])


def test_a_user_switch_updates_the_denoising_charts_in_place(app):
    """The strip, the alternatives and the heatmap keep their elements (one per key) when the user
    or the step changes: only their figures change, which the page draws with Plotly.react."""
    before, strip = live_ids(app), chart(app, "strip")
    assert set(before) >= {"strip", "alternatives", "confidence"}
    app.text_input(key="user_id").set_value("U7").run()
    assert not app.exception, app.exception
    assert live_ids(app) == before and chart(app, "strip") != strip
    app.slider(key="step").set_value(2).run()
    assert live_ids(app) == before and "after step 2" in chart(app, "strip")["layout"]["title"]["text"]
