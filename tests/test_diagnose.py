"""diffgrm.diagnose on tiny runs: every figure of the JSON within its range, the miss shares sum to
one, the searches it follows agree with the explorer's "why not", and a model made overconfident on
purpose is worse calibrated."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from diffgrm import viz
from diffgrm.decode import Recommender
from diffgrm.diagnose import (
    DiagnoseSettings,
    diagnose,
    follow,
    read_diagnostics,
    summary,
    write_diagnostics,
)
from diffgrm.errors import DiffGRMError
from diffgrm.fit import subsample
from diffgrm.train import load_run
from diffgrm.why import why_not

SMALL = DiagnoseSettings(split="valid", users=60, beam=12, topk=5, beams=(4, 8, 12, 24), curve_users=40, bins=5,
                         batch_users=16)


@pytest.fixture(scope="module")
def runs(chain_run, chain_ar_run):
    return {kind: load_run(path, device="cpu")[:2] for kind, path in (("diffgrm", chain_run), ("ar", chain_ar_run))}


@pytest.fixture(scope="module")
def diags(runs):
    (model, prepared), (ar, _) = runs["diffgrm"], runs["ar"]
    return {"diffgrm": diagnose(model, prepared, SMALL, ar_model=ar, progress=False),
            "ar": diagnose(ar, runs["ar"][1], SMALL, progress=False)}


def check_curve(curve: dict, bins: int) -> None:
    assert len(curve["count"]) == bins and 0 <= curve["ece"] <= 1
    for c, a, k in zip(curve["confidence"], curve["accuracy"], curve["count"]):
        assert (c is None) == (k == 0) and (a is None) == (k == 0)
        if k:
            assert 0 <= c <= 1 and 0 <= a <= 1


@pytest.mark.parametrize("kind", ["diffgrm", "ar"])
def test_every_figure_is_within_its_range(diags, kind):
    d = json.loads(json.dumps(diags[kind]))  # plain JSON
    n = 4
    assert d["users"] == 60 and d["kind"] == kind and d["settings"]["beam"] == 12
    cal = d["calibration"]
    for curve in [cal["overall"], *cal["per_digit"], *cal["per_step"]]:
        check_curve(curve, 5)
    assert sum(cal["overall"]["count"]) == sum(sum(c["count"]) for c in cal["per_digit"])
    # every digit is open once per user at its first step: n * (n + 1) / 2 predictions per user for CPD
    assert sum(cal["overall"]["count"]) == 60 * (n * (n + 1) // 2 if kind == "diffgrm" else n)
    assert all(v is None or 0 <= v <= 1 for v in cal["surest_right"] + cal["others_right"])
    miss = d["misses"]
    left = np.asarray(miss["left_at"])
    assert left.shape == (n, n) and (left >= 0).all()
    if miss["missed"]:
        assert math.isclose(left.sum() + miss["below_k"], 1.0, abs_tol=1e-9)
    if kind == "ar":  # an AR decoder fills digit s at step s
        assert np.allclose(left, np.diag(np.diag(left)))
    for row in d["beam_curve"]["rows"]:
        assert 0 <= row["hit_rate"] <= 1 and len(row["in_beam"]) == n and row["k"] == min(row["beam"], 5)
        assert all(a >= b for a, b in zip(row["in_beam"], row["in_beam"][1:]))  # a lost SID never comes back
    hits = [row["hit_rate"] for row in d["beam_curve"]["rows"] if row["beam"] >= 5]
    assert hits[-1] >= hits[0] - 0.05  # a wider beam does not lose much
    top = d["topk"]
    assert 0 < top["coverage"] <= 1 and 0 <= top["history_share"] <= 1 and 0 <= top["shared_first_digit"] <= 1
    assert sum(top["recommended_hist"]) == 60 * 5 and sum(top["target_hist"]) == 60
    for q in ("recommended_popularity", "target_popularity"):
        vals = list(top[q].values())
        assert all(0 <= v <= 100 for v in vals) and vals == sorted(vals)
    assert summary(d).count("\n") >= 4


def test_orders_compared_user_by_user(diags):
    order = diags["diffgrm"]["order"]
    assert order["orders"] == ["confidence", "fixed", "ar"]
    for res in order["against"].values():
        assert res["wins"] + res["losses"] + res["ties"] == 60
        joint = np.asarray(res["joint"])
        assert joint.shape == (6, 6) and joint.sum() == 60
        assert np.triu(joint, 1).sum() == res["wins"] and np.tril(joint, -1).sum() == res["losses"]
    assert diags["ar"]["order"]["against"] == {}


def test_the_main_search_agrees_with_the_beam_curve_and_why_not(runs):
    model, prepared = runs["diffgrm"]
    rec = Recommender(model)
    samples = subsample(prepared.splits["valid"], 60, seed=0)
    main = follow(rec, samples, 12, SMALL, leave_digits=True)
    again = follow(rec, samples, 12, SMALL)
    assert (main.rank == again.rank).all() and (main.in_beam == again.in_beam).all()
    codes = prepared.catalogue.codes
    checked = 0
    for u in np.flatnonzero(~main.in_beam[:, -1])[:6]:  # lost on the way: the step and digit "why not" finds
        res = rec.search([samples.histories[u]], beam=12, topk=5, trace=True)
        story = why_not(res.traces[0], codes[samples.targets[u]],
                        lambda toks: rec.digit_logprobs(samples.histories[u], toks))
        assert (story.step, story.digit) == tuple(main.left[u])
        checked += 1
    assert checked > 0
    assert (main.left[main.in_beam[:, -1]] == -1).all()


def test_an_overconfident_model_is_worse_calibrated(runs, monkeypatch):
    model, prepared = runs["diffgrm"]
    settings = DiagnoseSettings(split="valid", users=60, beam=12, topk=5, beams=(12,), curve_users=10, bins=10)
    honest = diagnose(model, prepared, settings, progress=False)["calibration"]["overall"]["ece"]
    sharp = model.denoise
    monkeypatch.setattr(model, "denoise", lambda *a, **k: 4.0 * sharp(*a, **k))  # logits x 4: far too sure
    loud = diagnose(model, prepared, settings, progress=False)["calibration"]
    assert loud["overall"]["ece"] > honest + 0.05
    assert loud["overall"]["mean_confidence"] > loud["overall"]["accuracy_overall"]


def test_written_read_back_and_drawn(diags, tmp_path):
    path = write_diagnostics(tmp_path, diags["diffgrm"])
    assert read_diagnostics(tmp_path) == json.loads(path.read_text())
    assert read_diagnostics(tmp_path / "nowhere") is None
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "diagnostics.json").write_text(json.dumps({"format": 0}))
    with pytest.raises(DiffGRMError, match="another diffgrm version"):
        read_diagnostics(tmp_path / "old")
    both = {"DiffGRM": diags["diffgrm"], "AR": diags["ar"]}
    for build in (viz.reliability_figure, viz.surest_figure, viz.miss_map_figure, viz.beam_curve_figure,
                  viz.topk_profile_figure):
        one, two = build(diags["diffgrm"]), build(both)
        assert len(two.data) > len(one.data) >= 1
    rel = viz.reliability_figure(diags["diffgrm"], by="step")
    assert any("ECE" in t.name for t in rel.data if t.name)
    miss = viz.miss_map_figure(diags["diffgrm"]).data[0]
    assert list(miss.x)[-1] == "in the beam, below K" and np.isclose(np.nansum(np.asarray(miss.z, dtype=float)), 1.0)
    order = viz.order_figure(diags["diffgrm"])
    assert len(order.data) == 2 and sum(order.data[0].customdata) == 60
    with pytest.raises(DiffGRMError, match="compare no decodings"):
        viz.order_figure(diags["ar"])
    with pytest.raises(DiffGRMError, match="lack"):
        viz.reliability_figure({"x": {"calibration": {}}})


def test_bad_settings_are_one_clear_error(runs):
    model, prepared = runs["diffgrm"]
    with pytest.raises(DiffGRMError, match="must be at least K"):
        diagnose(model, prepared, DiagnoseSettings(beam=4, topk=10), progress=False)
    with pytest.raises(DiffGRMError, match="no split"):
        diagnose(model, prepared, DiagnoseSettings(split="dev"), progress=False)
    other = runs["ar"][0]
    codes = other.item_codes.clone()
    other.item_codes = torch.roll(codes, 1, 0)
    try:
        with pytest.raises(DiffGRMError, match="other SIDs"):
            diagnose(model, prepared, SMALL, ar_model=other, progress=False)
    finally:
        other.item_codes = codes


def test_the_shipped_demo_runs_ship_diagnostics_that_their_runs_reproduce(tmp_path):
    from diffgrm import demo
    from diffgrm.diagnose import miss_shares

    run = tmp_path / "runs" / "ml"
    demo.ensure_demo_run(run, progress=False)
    shipped = {kind: read_diagnostics(folder) for kind, folder in demo.demo_folders(run).items()}
    for kind, d in shipped.items():
        assert d["kind"] == kind and d["settings"]["split"] == "test" and d["settings"]["exclude_seen"]
        assert d["settings"]["beam"] == demo.DEMO_RECIPE.beam and d["beam_curve"]["users"] == d["users"]
        assert d["topk"]["history_share"] == 0.0  # history items kept out, as the explorer decodes
    assert shipped["diffgrm"]["users_sha256"] == shipped["ar"]["users_sha256"]
    assert shipped["diffgrm"]["order"]["orders"] == ["confidence", "fixed", "ar"]
    # the AR run's search, followed again here, gives the shipped misses and hit rate
    ar, prepared, _ = load_run(demo.demo_folders(run)["ar"], device="cpu")
    settings = DiagnoseSettings(**{**shipped["ar"]["settings"], "beams": tuple(shipped["ar"]["settings"]["beams"])})
    samples = subsample(prepared.splits["test"], settings.users, seed=0)
    again = follow(Recommender(ar), samples, settings.beam, settings, leave_digits=True)
    mine = miss_shares(again, ar.config.n_digits)
    assert mine["missed"] == shipped["ar"]["misses"]["missed"]
    np.testing.assert_allclose(mine["left_at"], shipped["ar"]["misses"]["left_at"], atol=2 / mine["missed"])
    row = next(r for r in shipped["ar"]["beam_curve"]["rows"] if r["beam"] == settings.beam)
    assert abs(float((again.rank > 0).mean()) - row["hit_rate"]) <= 2 / len(samples)  # up to a tie or two


def test_the_diagnose_command_writes_the_json_and_prints_a_summary(chain_run, chain_ar_run, tmp_path, capsys):
    import shutil

    from diffgrm.cli import main

    run = Path(shutil.copytree(chain_run, tmp_path / "run"))
    shutil.copytree(chain_ar_run, tmp_path / "run-ar")
    args = ["diagnose", str(run), "--users", "30", "--beam", "12", "--k", "5", "--beams", "5", "12", "--curve-users",
            "20", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "calibration: ECE" in out.out and "confidence against ar" in out.out and "wrote" in out.err
    d = read_diagnostics(run)
    assert d["users"] == 30 and [r["beam"] for r in d["beam_curve"]["rows"]] == [5, 12]
    assert d["order"]["orders"] == ["confidence", "fixed", "ar"]
    assert main(args + ["--no-ar"]) == 0 and read_diagnostics(run)["order"]["orders"] == ["confidence", "fixed"]
    capsys.readouterr()
    for bad, message in [(["--ar", str(run)], "a diffgrm run, not an autoregressive one"),
                         (["--beam", "3"], "must be at least K"),
                         (["--split", "train"], "invalid choice"),
                         (["--ar", str(tmp_path / "none")], "holds no checkpoint")]:
        assert main(args + bad) == 2, bad
        assert message in capsys.readouterr().err, bad
