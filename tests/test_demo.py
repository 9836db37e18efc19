"""The demo runs shipped in the package (diffgrm/demo_runs): they score what their metrics.json
says on a freshly prepared MovieLens-100K, install into runs/ without training when the catalogue
matches, and are trained here with the same recipe, after one line saying why, when it does not."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from diffgrm import demo
from diffgrm.cli import main
from diffgrm.prepare import load_prepared
from diffgrm.safeio import read_json
from diffgrm.train import evaluate_split, load_run

SHIPPED = demo.shipped_runs()


@pytest.fixture(scope="module")
def movielens(tmp_path_factory) -> Path:
    """MovieLens-100K prepared afresh, as the app's first start does (~20 s with the embedding cache)."""
    return demo.ensure_demo_data(tmp_path_factory.mktemp("demo") / "movielens-100k", progress=False)


def test_the_package_ships_both_runs_made_with_the_current_recipe_within_5_mb():
    assert SHIPPED is not None, f"no complete demo runs in {demo.shipped_dir()}; build them with `diffgrm demo --retrain`"
    total = 0
    for kind, folder in SHIPPED.items():
        extra = demo.PROJECTION_FILES if kind == "diffgrm" else ()  # the codebook map ships with the DiffGRM run
        assert sorted(p.name for p in folder.iterdir() if p.is_file()) == sorted(demo.SHIPPED_FILES + extra)
        total += sum(p.stat().st_size for p in folder.iterdir())
        recipe, meta = read_json(folder / "recipe.json"), read_json(folder / "config.json")
        assert recipe["recipe"] == json.loads(json.dumps(demo.DEMO_RECIPE.to_dict())), "rebuild: `diffgrm demo --retrain`"
        model_cfg, cfg = demo.DEMO_RECIPE.configs(kind, meta["model"]["n_digits"], meta["model"]["codebook_size"])
        assert (meta["model"], meta["train"]) == (model_cfg.to_dict(), cfg.to_dict())
        assert meta["fingerprint"] == recipe["fingerprint"] and {"torch", "diffgrm"} <= set(recipe["versions"])
        assert meta["data"] == demo.DEMO_DATA  # a placeholder: the install points it at the local folder
    assert total <= 5e6, f"{total / 1e6:.2f} MB shipped: the issue allows 5 MB in all"


@pytest.mark.slow
def test_the_shipped_runs_score_their_metrics_on_a_fresh_movielens(movielens):
    prepared = load_prepared(movielens)
    shipped_fp = read_json(SHIPPED["diffgrm"] / "config.json")["fingerprint"]
    assert prepared.catalogue.fingerprint == shipped_fp, (
        "MovieLens-100K prepared here has another catalogue than the shipped runs: the app would train them "
        "at first start; rebuild them with `diffgrm demo --retrain` if the tokenizer or encoder changed")
    for kind, folder in SHIPPED.items():
        shipped = read_json(folder / "metrics.json")
        assert (shipped["split"], shipped["beam"], shipped["users"], shipped["exclude_seen"]) == ("test", 32, 943, True)
        assert shipped["seen_included"]["exclude_seen"] is False
        model = load_run(folder, data=movielens, device="cpu")[0]
        got = evaluate_split(model, prepared, "test", beam=32, exclude_seen=True, progress=False)
        assert got["item"] == shipped["item"], kind
        assert got["popularity"] == shipped["popularity"]
    diffgrm_metrics = read_json(SHIPPED["diffgrm"] / "metrics.json")
    assert diffgrm_metrics["item"]["ndcg@10"] >= 2.5 * diffgrm_metrics["popularity"]["ndcg@10"]


@pytest.mark.slow
def test_first_start_installs_the_shipped_runs_without_training(movielens, tmp_path, monkeypatch, capsys):
    import diffgrm.train

    def no_training(*args, **kwargs):
        raise AssertionError("the demo trained although the shipped runs match the catalogue")

    monkeypatch.setattr(diffgrm.train, "train", no_training)
    run = tmp_path / "runs" / "ml-tiny"
    assert demo.ensure_demo_run(run, data=movielens, progress=False) == run
    assert capsys.readouterr().err == ""
    for kind, folder in demo.demo_folders(run).items():
        meta = read_json(folder / "config.json")
        assert meta["data"] == str(movielens.resolve())
        assert (folder / "model.safetensors").read_bytes() == (SHIPPED[kind] / "model.safetensors").read_bytes()
        assert (folder / "metrics.json").read_bytes() == (SHIPPED[kind] / "metrics.json").read_bytes()
        model, prepared, _ = load_run(folder)  # no --data: the rewritten path finds the prepared folder
        assert model.config.kind == kind and prepared.path.resolve() == movielens.resolve()
    from diffgrm import viz
    from diffgrm.explorer import Explorer

    def no_projection(*args, **kwargs):
        raise AssertionError("the shipped codebook map was computed again")

    monkeypatch.setattr(viz, "project_codebook", no_projection)
    ex = Explorer(run)
    assert set(ex.codebook_coords("umap")) == set(range(4))  # read from the shipped files, not projected
    assert ex.metrics()["item"] == read_json(SHIPPED["diffgrm"] / "metrics.json")["item"]
    case = ex.user(str(ex.users()["user"].iloc[0]))
    table = ex.recommend(case.history, k=10, exclude_seen=True).table
    assert len(table) == 10 and not table["in_history"].any()


def tiny_recipe(monkeypatch) -> None:
    """A test hook: the demo recipe cut to a few steps, so a fallback trains in seconds."""
    monkeypatch.setattr(demo, "DEMO_RECIPE", replace(demo.DEMO_RECIPE, train={
        **demo.DEMO_RECIPE.train, "epochs": 2, "max_steps": 3, "eval_users": 20, "patience": 2}))


def test_another_catalogue_prints_one_line_and_trains_with_the_recipe(chain_prepared, tmp_path, monkeypatch, capsys):
    tiny_recipe(monkeypatch)
    shipped = tmp_path / "shipped"
    for kind in demo.KINDS:  # shipped runs whose catalogue is not this one (as another encoder would give)
        (shipped / kind).mkdir(parents=True)
        for name in demo.SHIPPED_FILES:
            (shipped / kind / name).write_text(json.dumps({"fingerprint": "0123456789abcdef"}))
    run = tmp_path / "demo"
    assert demo.ensure_demo_run(run, data=chain_prepared, progress=False, shipped=shipped) == run
    err = capsys.readouterr().err.strip().splitlines()
    fp = load_prepared(chain_prepared).catalogue.fingerprint
    assert len(err) == 1 and err[0].startswith("training the demo runs here"), err
    assert fp in err[0] and "0123456789abcdef" in err[0] and "another sentence encoder or library version" in err[0]
    for kind, folder in demo.demo_folders(run).items():
        meta = read_json(folder / "config.json")
        model_cfg, cfg = demo.DEMO_RECIPE.configs(kind, meta["model"]["n_digits"], meta["model"]["codebook_size"])
        assert (meta["model"], meta["train"]) == (model_cfg.to_dict(), cfg.to_dict())  # the same recipe, AR too
        assert meta["model"]["kind"] == kind and meta["fingerprint"] == fp
        metrics = read_json(folder / "metrics.json")
        assert metrics["split"] == "test" and metrics["users"] == 150 and metrics["exclude_seen"] is True
        assert metrics["seen_included"]["exclude_seen"] is False
        assert 0 <= metrics["popularity"]["ndcg@10"] <= 1 and 0 <= metrics["item"]["ndcg@10"] <= 1
    stamps = {p: p.stat().st_mtime_ns for p in run.parent.rglob("*") if p.is_file()}
    demo.ensure_demo_run(run, data=chain_prepared, progress=False, shipped=shipped)  # complete: nothing is redone
    assert {p: p.stat().st_mtime_ns for p in run.parent.rglob("*") if p.is_file()} == stamps
    assert capsys.readouterr().err == ""


def test_no_shipped_runs_says_so_and_trains(chain_prepared, tmp_path, monkeypatch, capsys):
    tiny_recipe(monkeypatch)
    run = tmp_path / "demo"
    demo.ensure_demo_run(run, data=chain_prepared, progress=False, shipped=tmp_path / "nothing")
    assert capsys.readouterr().err.strip().splitlines() == [
        "training the demo runs here with the shipped recipe (minutes on a CPU): this installation ships no demo runs"]
    assert all((f / "metrics.json").is_file() for f in demo.demo_folders(run).values())


def test_demo_command_rebuilds_into_a_folder_and_describes_it(chain_prepared, tmp_path, monkeypatch, capsys):
    tiny_recipe(monkeypatch)
    out = tmp_path / "demo_runs"
    shipped = demo.ship(tmp_path / "work", data=chain_prepared, out=out, progress=False, command="test")
    assert set(shipped) == {"diffgrm", "ar"} and demo.shipped_runs(out) == shipped
    for kind, folder in shipped.items():
        assert read_json(folder / "config.json")["data"] == demo.DEMO_DATA
        assert read_json(folder / "recipe.json")["recipe"]["train"]["max_steps"] == 3
        metrics = read_json(folder / "metrics.json")
        got = evaluate_split(load_run(folder, data=chain_prepared, device="cpu")[0], load_prepared(chain_prepared),
                             "test", beam=32, exclude_seen=True, progress=False)
        assert got["item"] == metrics["item"]
    stamp = (tmp_path / "work" / "model.safetensors").stat().st_mtime_ns
    demo.ship(tmp_path / "work", data=chain_prepared, out=out, progress=False, command="test")  # finished: kept
    assert (tmp_path / "work" / "model.safetensors").stat().st_mtime_ns == stamp
    capsys.readouterr()
    monkeypatch.setattr(demo, "shipped_dir", lambda: out)
    assert main(["demo"]) == 0
    text = capsys.readouterr().out
    assert f"shipped demo runs in {out}" in text and "diffgrm  test NDCG@10" in text and "ar       test NDCG@10" in text
