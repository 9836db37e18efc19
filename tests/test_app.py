"""The Streamlit app with streamlit.testing's AppTest: renders, reacts to widgets, handles bad states."""

from pathlib import Path

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


def test_page_renders_a_user(app):
    assert app.title[0].value == "User U0: what comes next?"
    assert "Held-out next item:" in markdown(app)
    topk = table(app, 1)
    assert list(topk.columns[:3]) == ["rank", "title", "sid"] and len(topk) == 10
    assert topk["title"].str.startswith("Chain item").all()
    assert len(app.tabs) == 6


def test_picking_another_user_changes_the_page(app):
    before = table(app, 0)["title"].tolist()
    app.text_input(key="user_id").set_value("U5").run()
    assert not app.exception
    assert app.title[0].value == "User U5: what comes next?"
    assert table(app, 0)["title"].tolist() != before
    app.button(key="random_user").click().run()
    assert not app.exception and app.title[0].value.startswith("User U")


def test_step_scrubber_changes_what_is_shown(app):
    last = [m.value for m in app.markdown if m.value.startswith("**Step")]
    assert last and "Step 4 of 4" in last[0]
    app.slider(key="step").set_value(1).run()
    first = [m.value for m in app.markdown if m.value.startswith("**Step")]
    assert "Step 1 of 4" in first[0] and "3 digit(s) still masked" in first[0]
    assert first != last


def test_fewer_network_passes_show_which_pass_filled_each_digit(app):
    import json

    assert app.slider(key="steps").value == 4 and app.slider(key="steps").max == 4
    app.slider(key="steps").set_value(2).run()
    assert not app.exception, app.exception
    line = [m.value for m in app.markdown if m.value.startswith("**Step")][0]
    assert "Step 4 of 4" in line and "network pass 2 of 2" in line
    strip = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert "4 digits in 2 network passes" in strip["layout"]["title"]["text"]
    assert [s["label"] for s in strip["layout"]["sliders"][0]["steps"]][-1] == "4 (pass 2)"
    assert len(table(app, 1)) == 10  # still a full Top-10 of distinct items
    assert table(app, 1)["title"].is_unique


def open_view(at, name: str):
    at.session_state["view"] = name
    at.run()
    assert not at.exception, at.exception
    return at


def test_only_the_open_tab_is_drawn(app):
    assert any(m.value.startswith("**Step") for m in app.markdown)
    open_view(app, "Codebook health")
    assert not any(m.value.startswith("**Step") for m in app.markdown)
    assert any("SIDs were shared before repair" in m.value for m in app.markdown)
    open_view(app, "Codebook spaces")
    assert app.selectbox(key="digit").options == ["0", "1", "2", "3"]
    open_view(app, "Compare orders")
    assert any("decoded" in c.value and "ways" in c.value for c in app.caption)


def figure_names(at) -> set[str]:
    import json

    return {t.get("name") for chart in at.get("plotly_chart") for t in json.loads(chart.proto.spec)["data"]}


def test_health_view_shows_the_sid_information(app):
    import json

    open_view(app, "Codebook health")
    names = figure_names(app)
    assert {"added by the k-th digit", "H(digit | others): only this digit"} <= names
    assert any("counted two ways" in m.value and "beyond the first" in m.value for m in app.markdown)

    def title() -> str:
        specs = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in app.get("plotly_chart")]
        return next(t for t in specs if t.startswith("What the digits tell"))

    assert "(before repair)" in title()
    app.radio(key="info_codes").set_value("after repair").run()
    assert not app.exception
    assert "(after repair)" in title()


def test_compare_tab_adds_a_matching_ar_run(app, chain_ar_run):
    open_view(app, "Compare orders")
    assert app.text_input(key="ar_run").value == str(chain_ar_run)  # found as RUN-ar
    assert any("decoded 4 ways" in c.value for c in app.caption)
    assert "AR (left to right)" in figure_names(app)
    app.text_input(key="ar_run").set_value(str(chain_ar_run) + "-missing").run()
    assert not app.exception
    assert any("No AR run in" in c.value for c in app.caption)
    assert "AR (left to right)" not in figure_names(app)
    app.text_input(key="ar_run").set_value(str(chain_ar_run.parent / "run")).run()  # a DiffGRM run
    assert "not an autoregressive one" in app.warning[0].value


def test_what_if_editor_changes_the_top_k(app):
    open_view(app, "What if")
    topk_before = table(app, 1)["title"].tolist()
    remove = app.multiselect(key="whatif_remove")
    remove.set_value(list(app.session_state["edit_U0"]))  # drop the whole recorded history ...
    app.text_input(key="whatif_query").set_value("Chain item 3").run()
    assert app.selectbox(key="whatif_add").value == 3  # ... and start from item 3 instead
    app.button(key="whatif_apply").click().run()
    assert not app.exception
    assert app.session_state["edit_U0"] == [3]
    assert any("(changed)" in m.value for m in app.markdown)
    after = app.dataframe[-1].value
    assert after["title"].tolist() != topk_before
    assert after["new"].any()
    app.button(key="whatif_reset").click().run()
    assert any("(as recorded)" in m.value for m in app.markdown)


def test_bad_states_are_shown_in_the_page(app, tmp_path, monkeypatch):
    app.text_input(key="user_id").set_value("nobody").run()
    assert not app.exception
    assert "unknown user id 'nobody'" in app.error[0].value
    monkeypatch.setenv("DIFFGRM_RUN", str(tmp_path / "empty"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert "No trained run" in at.error[0].value
    assert at.button(key="train_tiny").label.startswith("Train the tiny")


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


def test_why_not_tab_tells_where_an_item_left_the_search(app):
    open_view(app, "Why not?")
    assert not app.exception, app.exception
    text = markdown(app)
    assert "Chain item" in text and ("recommended at rank" in text or "left the beam" in text or "survived" in text)
    assert "this item's best partial SID" in figure_names(app)
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
