"""The figures of ``diffgrm.viz``: their data against the traces and reports they draw, layout, errors."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from diffgrm import viz
from diffgrm.ar import ar_search
from diffgrm.cpd import cpd_search
from diffgrm.errors import DiffGRMError
from diffgrm.pse import Catalogue, collision_rate
from diffgrm.sid_index import MASK, SIDIndex
from diffgrm.sid_info import sid_information
from tests.test_ar import PrefixTable
from tests.test_cpd import RandomNet, catalogue

N, K, ITEMS = 4, 8, 200
TITLES = [f"Item {i} <b>" for i in range(ITEMS)]


@pytest.fixture(scope="module")
def codes() -> np.ndarray:
    return catalogue(N, K, ITEMS, seed=0)


@pytest.fixture(scope="module")
def traces(codes):
    """One user's trace from CPD (confidence and fixed order) and from AR, on the same catalogue."""
    index = SIDIndex(codes, K)
    net = RandomNet(index, 1, seed=3, table_size=1024)
    cpd = cpd_search(net, index, 1, beam=8, topk=6, order="confidence", trace=True).traces[0]
    fixed = cpd_search(net, index, 1, beam=8, topk=6, order="fixed", trace=True).traces[0]
    ar = ar_search(PrefixTable(1, 4, n=N, k=K), SIDIndex(codes, K, subsets="prefix"), 1, beam=8, topk=6,
                   trace=True).traces[0]
    return {"CPD (confidence)": cpd, "fixed order": fixed, "AR": ar}


# --- 1. denoising strip -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CPD (confidence)", "AR"])
def test_strip_frame_data_follows_the_lineage(traces, name):
    tr = traces[name]
    previous = None
    for step in range(tr.n_steps):
        df = viz.strip_frame_data(tr, step, beams=5)
        assert set(df.columns) >= {"beam_rank", "digit", "state", "code", "prob", "committed_step"}
        assert len(df) == 5 * N and set(df["state"]) <= set(viz.STATES)
        for rank, rows in df.groupby("beam_rank"):
            lineage = tr.lineage(rank)
            r = lineage[step]
            rows = rows.sort_values("digit")
            tokens = tr.tokens[step, r]
            masked = rows["state"].to_numpy() == "masked"
            np.testing.assert_array_equal(masked, tokens == MASK)
            assert masked.sum() == N - step - 1  # one digit fewer masked per step
            np.testing.assert_array_equal(rows["code"].to_numpy()[~masked], tokens[~masked])
            new = rows[rows["state"] == "new"]
            assert len(new) == 1 and int(new["digit"].iloc[0]) == tr.digit[step, r]
            assert new["prob"].iloc[0] == pytest.approx(tr.prob[step, r])
            if name == "AR":
                assert int(new["digit"].iloc[0]) == step
            for row in rows[~masked].itertuples():  # the probability of the step that committed it
                s = row.committed_step
                assert tr.digit[s, lineage[s]] == row.digit and row.prob == pytest.approx(tr.prob[s, lineage[s]])
            assert rows["prob"][masked].isna().all() and (rows["committed_step"][masked] == -1).all()
        if previous is not None:  # committed digits never change once committed
            kept = previous["state"].to_numpy() != "masked"
            np.testing.assert_array_equal(df["code"].to_numpy()[kept], previous["code"].to_numpy()[kept])
            assert (df["state"].to_numpy()[kept] == "earlier").all()
        previous = df


def test_denoising_strip_frames_slider_and_cells(traces):
    tr = traces["CPD (confidence)"]
    fig = viz.denoising_strip(tr, beams=3, titles=TITLES)
    assert len(fig.frames) == tr.n_steps == len(fig.layout.sliders[0].steps)
    assert [list(st.args[0]) for st in fig.layout.sliders[0].steps] == [[f.name] for f in fig.frames]
    assert fig.layout.sliders[0].active == tr.n_steps - 1
    assert [t.name for t in fig.data] == ["committed", "masked", "committed by this pass"]
    initial, last = np.array(fig.data[0].z, float), np.array(fig.frames[-1].data[0].z, float)
    np.testing.assert_array_equal(initial, last)  # the figure opens on the last step

    for step, frame in enumerate(fig.frames):
        committed, masked, new = frame.data
        assert (committed.zmin, committed.zmax, committed.colorscale) == (0.0, 1.0, fig.data[0].colorscale)
        assert committed.colorbar.title.text == "probability"
        for field in ("digit", "code", "probability", "committed at step", "runners-up"):
            assert field in committed.hovertemplate
        df = viz.strip_frame_data(tr, step, beams=3)
        z, grey = np.array(committed.z, dtype=float), np.array(masked.z, dtype=float)
        for row in df.itertuples():
            if row.state == "masked":
                assert math.isnan(z[row.beam_rank, row.digit]) and grey[row.beam_rank, row.digit] == 0
                assert masked.text[row.beam_rank][row.digit] == "?" and committed.text[row.beam_rank][row.digit] == ""
            else:
                assert z[row.beam_rank, row.digit] == pytest.approx(row.prob)
                assert math.isnan(grey[row.beam_rank, row.digit])
                assert committed.text[row.beam_rank][row.digit] == str(row.code)
                assert masked.text[row.beam_rank][row.digit] == ""
                assert committed.customdata[row.beam_rank][row.digit][2] == f"{row.committed_step + 1} (pass {row.committed_step + 1})"
        news = df[df["state"] == "new"]
        assert list(new.x) == news["digit"].tolist() and list(new.y) == news["beam_rank"].tolist()

    labels = list(fig.layout.yaxis.ticktext)
    assert labels == [f"#{k + 1} · Item {tr.items[k]} &lt;b&gt;" for k in range(3)]
    assert fig.layout.yaxis.autorange == "reversed"


def test_denoising_strip_without_player_draws_one_step_and_no_controls(traces):
    tr = traces["CPD (confidence)"]
    for step in range(tr.n_steps):
        fig = viz.denoising_strip(tr, beams=3, titles=TITLES, initial_step=step, player=False)
        assert not fig.frames and not fig.layout.sliders and not fig.layout.updatemenus  # the page's slider only
        with_player = viz.denoising_strip(tr, beams=3, titles=TITLES, initial_step=step)
        z, framed = np.array(fig.data[0].z, float), np.array(with_player.frames[step].data[0].z, float)
        np.testing.assert_array_equal(z, framed)
        assert f"after step {step + 1} of {tr.n_steps}" in fig.layout.title.text


def test_the_strip_can_start_where_decoding_starts_every_digit_masked(traces):
    tr = traces["CPD (confidence)"]
    start = viz.strip_frame_data(tr, viz.START, beams=3)
    assert (start["state"] == "masked").all() and (start["code"] == -1).all() and len(start) == 3 * tr.tokens.shape[2]
    fig = viz.denoising_strip(tr, beams=3, titles=TITLES, initial_step=viz.START, player=False)
    assert np.isnan(np.array(fig.data[0].z, float)).all()  # nothing committed
    assert all(cell == "?" for row in fig.data[1].text for cell in row)
    assert f"step 0 of {tr.n_steps}, every digit masked" in fig.layout.title.text
    with pytest.raises(DiffGRMError, match="step must be in 0"):
        viz.denoising_strip(tr, initial_step=viz.START)  # the player's frames are the steps that fill


def test_every_figure_title_makes_room_for_itself(traces, codes, subspaces):
    """Long titles were cut off: each figure's title is left-aligned in the container, a second line
    goes to the subtitle, and plotly's automargin grows the top margin to fit them."""
    tr = traces["CPD (confidence)"]
    coords = viz.project_codebook(*subspaces, method="pca", max_items=None)[0]
    raw = codes.copy()
    raw[1] = raw[0]
    report = Catalogue(codes=codes, codes_raw=raw, codebook_size=K).report()
    figs = [viz.denoising_strip(tr, beams=3), viz.denoising_strip(tr, beams=3, player=False),
            viz.confidence_heatmap(tr), viz.alternatives_figure(tr, step=0), viz.compare_orders({"a": tr}),
            viz.codebook_figure(coords, digit=0, titles=TITLES, sids=codes), viz.codebook_health(report, codes, K),
            viz.sid_information_figure(sid_information(codes))]
    for fig in figs:
        title = fig.layout.title
        assert title.automargin is True and title.xanchor == "left" and title.xref == "container"
        assert "<br>" not in title.text  # a second line goes to the subtitle, which automargin makes room for
    assert figs[2].layout.title.subtitle.text and figs[3].layout.title.subtitle.text


def test_denoising_strip_shows_which_digits_each_pass_filled(codes):
    """Two passes (1 digit, then 3): a step marks as new every digit its pass has filled so far."""
    index = SIDIndex(codes, K)
    tr = cpd_search(RandomNet(index, 1, seed=3, table_size=1024), index, 1, beam=8, topk=6, passes=2,
                    trace=True).traces[0]
    assert tr.passes.tolist() == [0, 1, 1, 1]
    for step in range(N):
        df = viz.strip_frame_data(tr, step, beams=4)
        for _, rows in df.groupby("beam_rank"):
            new = rows[rows["state"] == "new"]
            assert len(new) == (1 if step == 0 else step)  # the digits this step's pass filled up to this step
            assert set(new["committed_pass"]) == {0 if step == 0 else 1}
            assert set(rows[rows["state"] == "earlier"]["committed_pass"]) == (set() if step == 0 else {0})
    fig = viz.denoising_strip(tr, beams=4)
    assert [st.label for st in fig.layout.sliders[0].steps] == ["1 (pass 1)", "2 (pass 2)", "3 (pass 2)", "4 (pass 2)"]
    assert "4 digits in 2 network passes" in fig.layout.title.text
    committed = fig.frames[-1].data[0]
    cells = {c[2] for row in committed.customdata for c in row}
    assert {"1 (pass 1)", "3 (pass 2)", "4 (pass 2)"} <= cells


def test_denoising_strip_labels_without_titles_and_with_a_lookup(traces):
    tr = traces["AR"]
    plain = viz.denoising_strip(tr, beams=2)
    assert list(plain.layout.yaxis.ticktext) == [f"#{k + 1} · {viz.sid_text(tr.tokens[-1, k])}" for k in range(2)]
    looked_up = viz.denoising_strip(tr, beams=2, sids_to_title=lambda sid: "x" + viz.sid_text(sid), initial_step=0)
    assert looked_up.layout.yaxis.ticktext[0] == "#1 · x" + viz.sid_text(tr.tokens[-1, 0])
    assert looked_up.layout.sliders[0].active == 0
    np.testing.assert_array_equal(np.array(looked_up.data[0].z, float), np.array(looked_up.frames[0].data[0].z, float))


# --- 2. confidence heatmap ----------------------------------------------------------------------


def test_confidence_heatmap_matches_trace_confidence(traces):
    tr = traces["CPD (confidence)"]
    fig = viz.confidence_heatmap(tr, beam=1)
    heat, grey, filled = fig.data
    assert [t.name for t in fig.data] == ["max_prob", "not open", "filled at this step"]
    assert (heat.zmin, heat.zmax) == (0.0, 1.0) and heat.colorbar.title.text == "max probability"
    conf = tr.confidence(1)
    lineage = tr.lineage(1)
    z = np.array(heat.z, dtype=float)
    committed_at = {int(tr.digit[s, r]): s for s, r in enumerate(lineage)}
    for row in conf.itertuples():
        if committed_at[row.digit] < row.step:
            assert math.isnan(z[row.step, row.digit]) and grey.z[row.step][row.digit] == 0
            assert heat.text[row.step][row.digit] == "" and "committed at step" in grey.text[row.step][row.digit]
        else:
            assert z[row.step, row.digit] == pytest.approx(row.max_prob)
            assert heat.text[row.step][row.digit] == f"{row.max_prob:.3f}"
    assert list(filled.x) == [int(tr.digit[s, r]) for s, r in enumerate(lineage)]
    assert list(filled.y) == list(range(tr.n_steps))
    assert "code" in filled.hovertemplate and "probability" in filled.hovertemplate
    assert fig.layout.title.text == "Max probability per step and digit"
    assert "outlined: the digit filled" in fig.layout.title.subtitle.text


def test_confidence_metrics_have_readable_labels():
    assert set(viz.METRIC_LABELS) == set(viz.METRICS)
    assert all("_" not in label for label in viz.METRIC_LABELS.values())


def test_confidence_heatmap_entropy_range_and_ar_diagonal(traces):
    fig = viz.confidence_heatmap(traces["AR"], metric="entropy_bits")
    heat = fig.data[0]
    assert heat.zmin == 0.0 and heat.zmax == pytest.approx(math.log2(K))
    z = np.array(heat.z, dtype=float)
    assert np.isfinite(np.diag(z)).all()  # AR predicts digit s at step s ...
    assert np.isnan(z[~np.eye(N, dtype=bool)]).all()  # ... and nothing else
    with pytest.raises(DiffGRMError, match="metric"):
        viz.confidence_heatmap(traces["AR"], metric="accuracy")


# --- 3. alternatives ----------------------------------------------------------------------------


def test_alternatives_show_the_open_digits_and_highlight_the_choice(traces):
    tr = traces["CPD (confidence)"]
    step = 1
    lineage = tr.lineage(0)
    fig = viz.alternatives_figure(tr, beam=0, step=step, top=3)
    parent = tr.tokens[step - 1, lineage[step - 1]]
    open_digits = [d for d in range(N) if parent[d] == MASK]
    assert [t.name for t in fig.data] == [f"digit {d}" for d in open_digits]
    dist = tr.distributions[step, lineage[step]]
    chosen_digit, chosen_code = int(tr.digit[step, lineage[step]]), int(tr.code[step, lineage[step]])
    for bar, d in zip(fig.data, open_digits):
        codes = [int(c.split()[1]) for c in bar.y]
        assert codes[:3] == list(np.argsort(-dist[d], kind="stable")[:3])
        np.testing.assert_allclose(bar.x, dist[d, codes])
        colours = list(bar.marker.color)
        expected = [viz.HIGHLIGHT if (d == chosen_digit and c == chosen_code) else colours[0] for c in codes]
        if d == chosen_digit:
            assert chosen_code in codes and colours.count(viz.HIGHLIGHT) == 1
        else:
            assert viz.HIGHLIGHT not in colours
        assert len(colours) == len(expected)
        assert "probability" in bar.hovertemplate and "code" in bar.hovertemplate
    last_axis = fig.layout[f"xaxis{len(open_digits)}" if len(open_digits) > 1 else "xaxis"]
    assert last_axis.title.text.startswith("probability")


def test_alternatives_fit_the_axis_to_the_bars_and_print_their_values(traces):
    tr = traces["CPD (confidence)"]
    for step in range(tr.n_steps):
        fig = viz.alternatives_figure(tr, beam=0, step=step, top=4)
        biggest = max(max(bar.x) for bar in fig.data)
        for i, bar in enumerate(fig.data, start=1):
            axis = fig.layout[f"xaxis{i}" if i > 1 else "xaxis"]
            # small probabilities get a readable axis instead of a sliver on 0..1, with room for the labels
            assert axis.range == pytest.approx((0.0, min(1.0, max(biggest * 1.3, 0.02))))
            assert list(bar.text) == [f"{v:.3f}" for v in bar.x] and bar.textposition == "outside"


def test_alternatives_add_a_chosen_code_outside_the_top(traces):
    tr = traces["CPD (confidence)"]  # constrained search sometimes picks a code the model did not rank first
    for beam in range(6):
        for step, r in enumerate(tr.lineage(beam)):
            d, c = int(tr.digit[step, r]), int(tr.code[step, r])
            if tr.distributions[step, r, d].argmax() != c:
                fig = viz.alternatives_figure(tr, beam=beam, step=step, top=1)
                bar = next(t for t in fig.data if t.name == f"digit {d}")
                assert list(bar.y) == [f"code {tr.distributions[step, r, d].argmax()}", f"code {c}"]
                assert list(bar.marker.color)[1] == viz.HIGHLIGHT
                return
    pytest.skip("every choice was the model's favourite")


def test_alternatives_for_ar_show_only_the_predicted_digit(traces):
    fig = viz.alternatives_figure(traces["AR"], step=2, top=4)
    assert [t.name for t in fig.data] == ["digit 2"] and len(fig.data[0].y) == 4


# --- 4. codebook projection and map -------------------------------------------------------------


@pytest.fixture(scope="module")
def subspaces(codes):
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(N, K, 5))
    sub = centroids[np.arange(N), codes] + 0.1 * rng.normal(size=(ITEMS, N, 5))  # items near their code
    return sub, centroids


def test_project_codebook_pca(subspaces, codes):
    sub, centroids = subspaces
    coords = viz.project_codebook(sub, centroids, method="pca", max_items=None)
    assert sorted(coords) == list(range(N))
    for d, df in coords.items():
        assert list(df.columns) == ["x", "y", "kind", "code", "item"] and df.attrs["method"] == "pca"
        cents, items = df[df["kind"] == "centroid"], df[df["kind"] == "item"]
        assert cents["code"].tolist() == list(range(K)) and (cents["item"] == -1).all()
        assert items["item"].tolist() == list(range(ITEMS))
        np.testing.assert_array_equal(items["code"], codes[:, d])  # nearest centroid = the generated code
        assert np.isfinite(df[["x", "y"]].to_numpy()).all()
        # PCA of centroids + items together: the 2-D points are the top-2 principal scores
        x = np.concatenate([centroids[d], sub[:, d]])
        _, sv, _ = np.linalg.svd(x - x.mean(0), full_matrices=False)
        assert np.linalg.norm(df[["x", "y"]].to_numpy(), axis=0) == pytest.approx(sv[:2])


def test_project_codebook_subsamples_deterministically_and_uses_given_codes(subspaces):
    sub, centroids = subspaces
    given = np.zeros((ITEMS, N), dtype=np.int64)
    a = viz.project_codebook(sub, centroids, method="pca", max_items=50, seed=1, codes=given)
    b = viz.project_codebook(sub, centroids, method="pca", max_items=50, seed=1, codes=given)
    items = a[0][a[0]["kind"] == "item"]
    assert len(items) == 50 and items["item"].is_unique and (items["code"] == 0).all()
    assert a[2].equals(b[2])
    c = viz.project_codebook(sub, centroids, method="pca", max_items=50, seed=2)
    assert not c[0]["item"].equals(a[0]["item"])


def test_project_codebook_falls_back_to_pca_without_umap(subspaces, monkeypatch):
    sub, centroids = subspaces
    monkeypatch.setitem(sys.modules, "umap", None)  # "import umap" now raises ImportError
    with pytest.warns(UserWarning, match="PCA"):
        coords = viz.project_codebook(sub, centroids, method="umap", max_items=None)
    forced = viz.project_codebook(sub, centroids, method="pca", max_items=None)
    assert all(df.attrs["method"] == "pca" for df in coords.values())
    assert coords[1].equals(forced[1])


def test_project_codebook_umap_on_tiny_data():
    pytest.importorskip("umap")
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(1, 4, 3))
    sub = centroids[0][rng.integers(0, 4, size=30)][:, None] + 0.05 * rng.normal(size=(30, 1, 3))
    coords = viz.project_codebook(sub, centroids, method="umap", seed=0)
    df = coords[0]
    assert df.attrs["method"] == "umap" and len(df) == 34 and np.isfinite(df[["x", "y"]].to_numpy()).all()


def test_project_codebook_errors(subspaces):
    sub, centroids = subspaces
    with pytest.raises(DiffGRMError, match="method"):
        viz.project_codebook(sub, centroids, method="tsne")
    with pytest.raises(DiffGRMError, match="subvectors"):
        viz.project_codebook(sub[:, :2], centroids, method="pca")
    with pytest.raises(DiffGRMError, match="codes"):
        viz.project_codebook(sub, centroids, method="pca", codes=np.zeros((3, N)))


def test_project_codebook_by_code_groups_each_codes_items_around_its_centroid():
    """Sub-vectors with no clusters (one Gaussian cut into K cells): a plain projection mixes the
    codes; the by-code layout puts every item nearer its own centroid than any other."""
    rng = np.random.default_rng(0)
    k, items = 12, 600
    centroids = rng.normal(size=(1, k, 8))
    sub = rng.normal(size=(items, 1, 8))
    own = ((sub[:, 0, None] - centroids[0][None]) ** 2).sum(-1).argmin(1)

    def own_nearest(df):
        cents = df[df["kind"] == "centroid"][["x", "y"]].to_numpy()
        pts = df[df["kind"] == "item"][["x", "y"]].to_numpy()
        return (((pts[:, None] - cents[None]) ** 2).sum(-1).argmin(1) == own).mean()

    plain = viz.project_codebook(sub, centroids, method="pca", max_items=None)[0]
    grouped = viz.project_codebook(sub, centroids, method="pca", max_items=None, by_code=True)[0]
    assert plain.attrs["layout"] == "sub-vectors" and grouped.attrs["layout"] == "by code"
    assert own_nearest(plain) < 0.6 and own_nearest(grouped) > 0.95
    cents = grouped[grouped["kind"] == "centroid"]
    np.testing.assert_allclose(cents[["x", "y"]], viz.codebook._pca_2d(centroids[0]))  # centroids: PCA of centroids
    assert "Laid out by code" in viz.codebook_note(grouped) and "PCA" in viz.codebook_note(plain)


def test_project_codebook_by_code_with_umap():
    pytest.importorskip("umap")
    rng = np.random.default_rng(1)
    centroids = rng.normal(size=(1, 16, 4))
    sub = rng.normal(size=(80, 1, 4))
    df = viz.project_codebook(sub, centroids, method="umap", by_code=True)[0]
    assert df.attrs == {"method": "umap", "layout": "by code"} and np.isfinite(df[["x", "y"]].to_numpy()).all()
    assert "UMAP of the centroids" in viz.codebook_note(df)


def test_codebook_figure_highlights_exactly_the_given_items(subspaces, codes):
    sub, centroids = subspaces
    coords = viz.project_codebook(sub, centroids, method="pca", max_items=100, seed=0)[2]
    in_sample = set(coords.loc[coords["kind"] == "item", "item"])
    inside = sorted(in_sample)
    outside = next(i for i in range(ITEMS) if i not in in_sample)
    history, recommended = [inside[0], outside, inside[1]], [inside[5], outside]
    fig = viz.codebook_figure(coords, digit=2, titles=TITLES, sids=codes, history=history, recommended=recommended)
    assert [t.name for t in fig.data] == ["items", "centroids (labelled with their code)", "history", "recommended"]
    items, cents, hist, rec = fig.data[:4]
    assert len(items.x) == 100 and len(cents.x) == K and list(cents.text) == [str(c) for c in range(K)]
    assert items.marker.color == "#b4b4b4"  # grey: one code is highlighted at a time, not 64 look-alike colours
    assert [c[0] for c in hist.customdata] == history and [c[0] for c in rec.customdata] == recommended
    for trace in (items, hist, rec):
        assert "SID" in trace.hovertemplate and "customdata[1]" in trace.hovertemplate
    first = inside[0]
    assert hist.customdata[0][1] == f"Item {first} &lt;b&gt;" and hist.customdata[0][2] == viz.sid_text(codes[first])
    assert "-" in hist.customdata[0][2] and len(hist.customdata[0][2].split("-")) == N
    # the item outside the projected sample sits on its code's centroid and says so
    code = codes[outside, 2]
    assert (hist.x[1], hist.y[1]) == (cents.x[code], cents.y[code]) and "centroid" in hist.customdata[1][4]
    row = coords[(coords["kind"] == "item") & (coords["item"] == first)]
    assert (hist.x[0], hist.y[0]) == (row["x"].iloc[0], row["y"].iloc[0]) and hist.customdata[0][4] == ""
    assert "PCA" in fig.layout.title.subtitle.text and not fig.layout.annotations  # the note, once
    assert fig.layout.height >= 700 and fig.layout.legend.orientation == "h"

    coords.attrs["method"] = "umap"
    umap_fig = viz.codebook_figure(coords, digit=2, titles=TITLES, sids=codes)
    assert "distances between clusters mean little" in umap_fig.layout.title.subtitle.text
    assert len(umap_fig.data[2].x) == 0 and len(umap_fig.data[3].x) == 0


def test_codebook_figure_highlights_one_code_and_marks_the_beams_codes(subspaces, codes):
    sub, centroids = subspaces
    coords = viz.project_codebook(sub, centroids, method="pca", max_items=None, seed=0, by_code=True)[1]
    history, target, beam_codes = [0, 1, 2], 7, [3, 3, 5]
    chosen = int(codes[target, 1])
    fig = viz.codebook_figure(coords, digit=1, titles=TITLES, sids=codes, history=history, target=target,
                              beam_codes=beam_codes, highlight=chosen)
    named = {t.name: t for t in fig.data}
    members = np.flatnonzero(codes[:, 1] == chosen)
    group = named[f"code {chosen}: its {len(members)} items"]
    assert [c[0] for c in group.customdata] == members.tolist()
    assert group.marker.color == viz.codebook.CHOSEN
    cents = coords[coords["kind"] == "centroid"].set_index("code")
    centre = named[f"code {chosen}: centroid"]
    assert (centre.x[0], centre.y[0]) == (cents.loc[chosen, "x"], cents.loc[chosen, "y"])
    assert centre.showlegend is False and centre.text[0] == f"code {chosen}"
    ring = named["codes of the final beams"]
    assert [c[0] for c in ring.customdata] == [3, 5]  # unique, in order
    assert (ring.x[0], ring.y[0]) == (cents.loc[3, "x"], cents.loc[3, "y"])
    held = named["held-out next item"]
    assert held.customdata[0][0] == target and held.customdata[0][2] == viz.sid_text(codes[target])
    names = [t.name for t in fig.data if t.showlegend is not False]
    assert len(names) <= 7 and len(set(names)) == len(names)
    # the highlighted code is drawn above the history, so its items stay visible
    order = [t.name for t in fig.data]
    assert order.index(group.name) > order.index("history")
    colourful = viz.codebook_figure(coords, digit=1, titles=TITLES, sids=codes, colour_by_code=True)
    by_code: dict = {}
    item_ids = coords.loc[coords["kind"] == "item", "item"].to_numpy()
    for colour, code in zip(colourful.data[0].marker.color, codes[item_ids, 1]):
        by_code.setdefault(int(code), set()).add(colour)
    assert all(len(c) == 1 for c in by_code.values()), "one colour per code"
    with pytest.raises(DiffGRMError, match="target"):
        viz.codebook_figure(coords, digit=1, titles=TITLES, sids=codes, target=ITEMS)
    with pytest.raises(DiffGRMError, match="beam_codes and highlight"):
        viz.codebook_figure(coords, digit=1, titles=TITLES, sids=codes, beam_codes=[K])
    with pytest.raises(DiffGRMError, match="highlight"):
        viz.codebook_figure(coords, digit=1, titles=TITLES, sids=codes, highlight=K)


def test_codebook_figure_errors(subspaces, codes):
    coords = viz.project_codebook(*subspaces, method="pca", max_items=None)[0]
    with pytest.raises(DiffGRMError, match="digit"):
        viz.codebook_figure(coords, digit=N, titles=TITLES, sids=codes)
    with pytest.raises(DiffGRMError, match="history"):
        viz.codebook_figure(coords, digit=0, titles=TITLES, sids=codes, history=[ITEMS])
    with pytest.raises(DiffGRMError, match="titles"):
        viz.codebook_figure(coords, digit=0, titles=TITLES[:5], sids=codes)


# --- 5. codebook health -------------------------------------------------------------------------


def test_codebook_health(codes):
    raw = codes.copy()
    raw[1] = raw[0]  # one collision before repair
    cat = Catalogue(codes=codes, codes_raw=raw, codebook_size=K)
    report = cat.report()
    fig = viz.codebook_health(report, codes, K)
    assert len(fig.data) == N + 1
    for d, line in enumerate(fig.data[:N]):
        np.testing.assert_array_equal(line.y, np.sort(np.bincount(codes[:, d], minlength=K))[::-1])
        stats = report["per_digit"][d]
        assert f"{stats['entropy_bits']:.2f}" in line.name and f"{stats['dead_codes']} dead" in line.name
    bar = fig.data[-1]
    assert list(bar.x) == ["before repair", "after repair"]
    assert list(bar.y) == pytest.approx([collision_rate(raw), 0.0]) and bar.y[0] > 0
    assert bar.xaxis == "x2"
    with pytest.raises(DiffGRMError, match="codes"):
        viz.codebook_health(report, codes[:, :2], K)
    with pytest.raises(DiffGRMError, match="0..3"):
        viz.codebook_health(report, codes, 4)
    with pytest.raises(DiffGRMError, match="report"):
        viz.codebook_health({"per_digit": []}, codes, K)


def test_sid_information_figure():
    codes = np.array([[0, 0, 0], [0, 0, 1], [1, 1, 0], [1, 1, 1], [1, 1, 1]])  # digit 1 copies digit 0
    info = sid_information(codes)
    fig = viz.sid_information_figure(info, label="before repair")
    earlier, added, own, shared = fig.data
    assert list(added.x) == ["k = 1", "k = 2", "k = 3"] and earlier.xaxis == added.xaxis == "x"
    np.testing.assert_allclose(np.add(earlier.y, added.y), info["prefix_bits"])  # stacked to H(first k)
    assert added.y[1] == pytest.approx(0.0) and added.text[1] == "+0.00"  # the copy adds nothing
    np.testing.assert_allclose(own.y, info["conditional_bits"])
    np.testing.assert_allclose(np.add(own.y, shared.y), info["digit_bits"])
    assert own.y[0] == own.y[1] == pytest.approx(0.0) and own.xaxis == shared.xaxis == "x2"
    assert fig.layout.barmode == "stack" and "before repair" in fig.layout.title.text
    ceiling = [s for s in fig.layout.shapes if s.type == "line"][0]
    assert ceiling.y0 == ceiling.y1 == pytest.approx(math.log2(5))
    label = next(a for a in fig.layout.annotations if a.text.startswith("log2"))
    assert label.yanchor == "bottom" and label.xanchor == "left"  # above the line, at the left: no bar hides it
    colours = [t.marker.color for t in fig.data]
    assert len(set(colours)) == len(colours)  # four legend entries, four colours (no two greys)
    pairs = zip(info["conditional_bits"], info["digit_bits"])
    assert list(shared.text) == [f"own {o:.2f} of {t:.2f}" for o, t in pairs]
    assert shared.textposition == "outside"  # the own bits, printed above the stack where a thin bar cannot hide them
    with pytest.raises(DiffGRMError, match="sid_information"):
        viz.sid_information_figure({"prefix_bits": [1.0]})
    with pytest.raises(DiffGRMError, match="must match"):
        viz.sid_information_figure({**info, "conditional_bits": [0.0]})


# --- 6. orders compared -------------------------------------------------------------------------


def test_compare_orders(traces):
    fig = viz.compare_orders(traces, beam=0)
    assert [t.name for t in fig.data] == [name for name in traces for _ in range(2)]
    for i, (name, tr) in enumerate(traces.items()):
        probs, cum = fig.data[2 * i], fig.data[2 * i + 1]
        lineage = tr.lineage(0)
        assert list(probs.x) == list(range(1, tr.n_steps + 1))
        np.testing.assert_allclose(probs.y, [tr.prob[s, r] for s, r in enumerate(lineage)])
        np.testing.assert_allclose(cum.y, np.cumsum(np.log(probs.y)), rtol=1e-4, atol=1e-4)
        assert cum.y[-1] == pytest.approx(tr.item_scores[0], rel=1e-4)
        assert [c[0] for c in probs.customdata] == [int(tr.digit[s, r]) for s, r in enumerate(lineage)]
        assert [c[1] for c in probs.customdata] == [int(tr.code[s, r]) for s, r in enumerate(lineage)]
        assert "digit" in probs.hovertemplate and "code" in probs.hovertemplate
        assert probs.yaxis == "y" and cum.yaxis == "y2" and cum.showlegend is False
    assert [c[0] for c in fig.data[4].customdata] == list(range(N))  # AR fills left to right
    with pytest.raises(DiffGRMError, match="at least one"):
        viz.compare_orders({})


# --- errors shared by the trace figures ---------------------------------------------------------


def test_trace_figure_errors(traces, codes):
    tr = traces["CPD (confidence)"]
    with pytest.raises(DiffGRMError, match="step"):
        viz.strip_frame_data(tr, tr.n_steps, beams=2)
    with pytest.raises(DiffGRMError, match="step"):
        viz.alternatives_figure(tr, step=-1)
    with pytest.raises(DiffGRMError, match="step"):
        viz.denoising_strip(tr, initial_step=9)
    with pytest.raises(DiffGRMError, match="beams"):
        viz.denoising_strip(tr, beams=0)
    with pytest.raises(DiffGRMError, match="beam"):
        viz.confidence_heatmap(tr, beam=tr.beam)
    with pytest.raises(DiffGRMError, match="top"):
        viz.alternatives_figure(tr, step=0, top=0)
    small = SIDIndex(codes[:3], K)  # 3 items, beam 8: five final beams are dead
    dead = cpd_search(RandomNet(small, 1, 0, table_size=64), small, 1, beam=8, topk=3, trace=True).traces[0]
    assert not dead.alive[-1, 5]
    with pytest.raises(DiffGRMError, match="dead"):
        viz.compare_orders({"cpd": dead}, beam=5)
    assert len(viz.strip_frame_data(dead, 0, beams=8)["beam_rank"].unique()) == 3


# --- 7. why not ---------------------------------------------------------------------------------


def test_why_not_figure_names_the_item_and_shows_every_step(codes):
    from diffgrm.why import why_not

    index = SIDIndex(codes, K)
    net = RandomNet(index, 1, seed=3, table_size=1024)
    tr = cpd_search(net, index, 1, beam=4, topk=2, trace=True).traces[0]

    def logprobs(tokens):
        import torch

        return net(torch.as_tensor(tokens)[None]).numpy()[0]

    item = next(i for i in range(ITEMS) if i not in set(tr.items.tolist()))
    why = why_not(tr, codes[item], logprobs, item=item, topk=2)
    fig = viz.why_not_figure(why, item_title="Casablanca <1942>")
    assert fig.layout.title.text.startswith("Casablanca &lt;1942&gt;: ")  # the title, not "Item 17"
    assert why.message[:40] in fig.layout.title.subtitle.text
    assert list(fig.layout.xaxis.tickvals) == list(range(1, N + 1))
    assert fig.layout.xaxis.range[0] < 1 and fig.layout.xaxis.range[1] > N  # the last step's tick is inside
    assert viz.why_not_figure(why).layout.title.text.startswith(f"Item {item}: ")
    assert viz.why_not_figure(why, message=False).layout.title.subtitle.text is None
