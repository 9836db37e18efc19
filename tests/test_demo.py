"""The demo runs shipped in the package (diffgrm/demo_runs): they carry their catalogue, so the first
start installs them on any machine, whatever SIDs that machine's own prepare would give, and trains
nothing; they score what their metrics.json says, and show the Top-K they showed where they were
made. Only runs that cannot be used (damaged, another diffgrm version, none shipped) are trained
here with the same recipe, after one line saying why."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from diffgrm import demo
from diffgrm.cli import main
from diffgrm.portable import CATALOGUE, RUN_FORMAT, flip_last_bits
from diffgrm.prepare import load_prepared
from diffgrm.safeio import read_json
from diffgrm.train import evaluate_split, load_run

SHIPPED = demo.shipped_runs()


def shipped_fingerprint() -> str:
    return read_json(SHIPPED["diffgrm"] / "config.json")["fingerprint"]


@pytest.fixture(scope="module")
def other_machine(tmp_path_factory) -> Path:
    """MovieLens-100K prepared as a processor with other floating point would: the item embeddings
    perturbed in their last bit before tokenizing, so its SIDs are not the shipped runs'."""
    from diffgrm.config import DATASET_TOKENIZER_PRESET, tokenizer_preset
    from diffgrm.data import load_dataset
    from diffgrm.prepare import prepare
    from diffgrm.text import embed_texts

    ds = load_dataset("movielens-100k")
    ds.embeddings = flip_last_bits(embed_texts(ds.items["text"].tolist(), progress=False))
    out = tmp_path_factory.mktemp("other-machine") / "movielens-100k"
    prepare(ds, out, tokenizer_preset(DATASET_TOKENIZER_PRESET["movielens-100k"]), progress=False)
    return out


def test_the_package_ships_both_runs_and_one_catalogue_within_5_mb():
    assert SHIPPED is not None, f"no demo runs in {demo.shipped_dir()}; build them with `diffgrm demo --retrain`"
    where = demo.shipped_dir()
    assert sorted(p.name for p in where.iterdir()) == sorted([CATALOGUE, *demo.KINDS])
    assert sorted(p.name for p in (where / CATALOGUE).iterdir()) == [
        "catalogue.safetensors", "collisions.json", "dataset.json", "items.jsonl", "tokenizer.json",
        "tokenizer_report.json"]
    for kind, folder in SHIPPED.items():
        extra = demo.PROJECTION_FILES if kind == "diffgrm" else ()  # the codebook map ships with the DiffGRM run
        assert sorted(p.name for p in folder.iterdir()) == sorted(demo.SHIPPED_FILES + extra)
        recipe, meta = read_json(folder / "recipe.json"), read_json(folder / "config.json")
        assert recipe["recipe"] == json.loads(json.dumps(demo.DEMO_RECIPE.to_dict())), "rebuild: `diffgrm demo --retrain`"
        model_cfg, cfg = demo.DEMO_RECIPE.configs(kind, meta["model"]["n_digits"], meta["model"]["codebook_size"])
        assert (meta["model"], meta["train"]) == (model_cfg.to_dict(), cfg.to_dict())
        assert meta["fingerprint"] == recipe["fingerprint"] and {"torch", "diffgrm"} <= set(recipe["versions"])
        assert meta["format"] == RUN_FORMAT and meta["data"] == demo.DEMO_DATASET == meta["dataset"]
        examples = read_json(folder / "examples.json")
        assert len(examples["users"]) == demo.EXAMPLE_USERS and all(len(u["items"]) == 10 for u in examples["users"])
    total = sum(p.stat().st_size for p in where.rglob("*") if p.is_file())
    assert total <= 5e6, f"{total / 1e6:.2f} MB shipped: keep the package's demo within 5 MB"


def install(tmp_path: Path, data: str | Path | None = None) -> Path:
    run = tmp_path / "runs" / "ml-tiny"
    assert demo.ensure_demo_run(run, data=data, progress=False) == run
    return run


def test_first_start_installs_the_shipped_runs_reading_movielens_by_name(tmp_path, monkeypatch, capsys):
    import diffgrm.train

    monkeypatch.setattr(diffgrm.train, "train", lambda *a, **k: pytest.fail("the demo trained"))
    run = install(tmp_path)
    assert capsys.readouterr().err == ""
    assert not (tmp_path / "runs" / "movielens-100k").exists(), "nothing is prepared for the shipped runs"
    for kind, folder in demo.demo_folders(run).items():
        assert read_json(folder / "config.json")["data"] == "movielens-100k"
        for name in ("model.safetensors", "metrics.json", "examples.json"):
            assert (folder / name).read_bytes() == (SHIPPED[kind] / name).read_bytes()
        model, prepared, _ = load_run(folder)
        assert model.config.kind == kind and prepared.data == "movielens-100k" and len(prepared.users) == 943
        assert prepared.catalogue.fingerprint == shipped_fingerprint()
    stamps = {p: p.stat().st_mtime_ns for p in run.parent.rglob("*") if p.is_file()}
    install(tmp_path)  # complete: nothing is redone
    assert {p: p.stat().st_mtime_ns for p in run.parent.rglob("*") if p.is_file()} == stamps


@pytest.mark.slow
def test_another_machines_sids_install_the_shipped_runs_and_show_the_same_top_k(other_machine, tmp_path, monkeypatch,
                                                                                capsys):
    import diffgrm.train
    from diffgrm import viz
    from diffgrm.explorer import Explorer

    assert load_prepared(other_machine).catalogue.fingerprint != shipped_fingerprint(), "the simulation changed nothing"
    monkeypatch.setattr(diffgrm.train, "train", lambda *a, **k: pytest.fail("the demo trained"))
    run = install(tmp_path, data=other_machine)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(viz, "project_codebook", lambda *a, **k: pytest.fail("the shipped codebook map was computed again"))
    ex = Explorer(run)
    assert ex.prepared.data == str(other_machine.resolve())
    assert set(ex.codebook_coords("umap")) == set(range(4))  # read from the shipped files, not projected
    words = ex.code_words()  # readable codes: most of MovieLens' codes are named, mostly by genres
    named = [w for digit in words for w in digit if w]
    assert len(named) >= 0.8 * 4 * 64 and sum(w[0] in {"comedy", "drama", "thriller", "action"} for w in named) >= 40
    examples = read_json(run / "examples.json")
    ids = ex.prepared.items["item_id"]
    for made in examples["users"]:
        case = ex.user(made["user"])
        table = ex.recommend(case.history, beam=examples["beam"], k=examples["k"],
                             exclude_seen=examples["exclude_seen"]).table
        assert same_ranking([str(ids[i]) for i in table["item"]], table["score"].tolist(), made), made["user"]
        assert not table["in_history"].any()
    # the page itself, as a viewer opens it: the first user's Top-10 titles are the ones made elsewhere
    from streamlit.testing.v1 import AppTest

    from tests.test_app import APP, frame_element

    monkeypatch.setenv("DIFFGRM_RUN", str(run))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    first = examples["users"][0]
    titles = dict(zip(ids, ex.prepared.items["title"]))
    assert at.session_state["user_id"] == first["user"]
    shown = frame_element(at, "topk").value
    item_of = {title: i for i, title in titles.items()}
    assert same_ranking([item_of[t] for t in shown["title"]], [math.log(p) for p in shown["probability"]], first)


TIE = 1e-3
"""Log-probabilities closer than this are a tie that another processor's last bits may order either way."""


def same_ranking(items: list[str], scores: list[float], made: dict) -> bool:
    """The Top-K ``items`` (with their log-probability ``scores``) is the one ``made`` records, up to
    ties: an item may change place (or, at the K-th place, be replaced) only by one scored within
    :data:`TIE` of it, so a test does not depend on bit-identical floats across processors."""
    made_score = dict(zip(made["items"], made["scores"]))
    if len(items) != len(made["items"]) or any(abs(a - b) > 10 * TIE for a, b in zip(scores, made["scores"])):
        return False
    for got, got_score, want_score in zip(items, scores, made["scores"]):
        # the item here scored (where the run was made, or here if it was not in that list) as the one it displaced
        if abs(made_score.get(got, got_score) - want_score) > TIE:
            return False
    return True


@pytest.mark.slow
def test_the_shipped_runs_score_their_metrics_on_movielens(tmp_path):
    run = install(tmp_path)
    for kind, folder in demo.demo_folders(run).items():
        shipped = read_json(folder / "metrics.json")
        assert (shipped["split"], shipped["beam"], shipped["users"], shipped["exclude_seen"]) == ("test", 32, 943, True)
        assert shipped["seen_included"]["exclude_seen"] is False
        model, prepared, _ = load_run(folder, device="cpu")
        got = evaluate_split(model, prepared, "test", beam=32, exclude_seen=True, progress=False)
        # another processor's last bits may reorder a near tie: two users' worth of slack, no more
        assert got["item"] == pytest.approx(shipped["item"], abs=2 / 943), kind
        assert got["popularity"] == shipped["popularity"]
    # clearly above popularity: the recipe gave 3.1x on the catalogue it was chosen on and 2.1x on the one
    # the runs ship with now (943 users: one NDCG@10 has a standard error of about .005)
    diffgrm_metrics = read_json(SHIPPED["diffgrm"] / "metrics.json")
    assert diffgrm_metrics["item"]["ndcg@10"] >= 2.0 * diffgrm_metrics["popularity"]["ndcg@10"]


# --------------------------------------------------------------------------- the fallback, on the chain data


def tiny_recipe(monkeypatch) -> None:
    """A test hook: the demo recipe cut to a few steps, so a fallback trains in seconds."""
    monkeypatch.setattr(demo, "DEMO_RECIPE", replace(demo.DEMO_RECIPE, train={
        **demo.DEMO_RECIPE.train, "epochs": 2, "max_steps": 3, "eval_users": 20, "patience": 2}))


@pytest.fixture(scope="module")
def chain_shipped(chain_prepared, tmp_path_factory) -> Path:
    """Demo runs shipped from the chain data with the tiny recipe (``demo.ship`` into a folder)."""
    root = tmp_path_factory.mktemp("chain-shipped")
    with pytest.MonkeyPatch.context() as mp:
        tiny_recipe(mp)
        demo.ship(root / "work", data=chain_prepared, out=root / "demo_runs", progress=False, command="test")
    return root / "demo_runs"


def test_ship_writes_both_runs_and_their_one_catalogue(chain_shipped, chain_prepared, monkeypatch, capsys):
    runs = demo.shipped_runs(chain_shipped)
    assert runs == {kind: chain_shipped / kind for kind in demo.KINDS}
    assert (chain_shipped / CATALOGUE / "catalogue.safetensors").is_file()
    assert not any((folder / CATALOGUE).exists() for folder in runs.values())
    for kind, folder in runs.items():
        assert read_json(folder / "config.json")["data"] == demo.DEMO_DATASET
        assert read_json(folder / "recipe.json")["recipe"]["train"]["max_steps"] == 3
    work = chain_shipped.parent / "work"
    model, prepared, _ = load_run(work, device="cpu")
    got = evaluate_split(model, prepared, "test", beam=32, exclude_seen=True, progress=False)
    assert got["item"] == read_json(runs["diffgrm"] / "metrics.json")["item"]
    examples = read_json(runs["diffgrm"] / "examples.json")
    assert [u["user"] for u in examples["users"]] == prepared.users[: demo.EXAMPLE_USERS]
    capsys.readouterr()
    monkeypatch.setattr(demo, "shipped_dir", lambda: chain_shipped)
    assert main(["demo"]) == 0
    text = capsys.readouterr().out
    assert f"shipped demo runs in {chain_shipped}" in text and "diffgrm  test NDCG@10" in text and "ar       test NDCG@10" in text
    stamp = (work / "model.safetensors").stat().st_mtime_ns
    tiny_recipe(monkeypatch)
    demo.ship(work, data=chain_prepared, out=chain_shipped.parent / "again", progress=False, command="test")
    assert (work / "model.safetensors").stat().st_mtime_ns == stamp  # finished with the recipe: kept


def test_shipped_runs_install_on_the_chain_data_without_training(chain_shipped, chain_prepared, tmp_path, monkeypatch,
                                                                 capsys):
    import diffgrm.train

    monkeypatch.setattr(diffgrm.train, "train", lambda *a, **k: pytest.fail("the demo trained"))
    run = tmp_path / "demo"
    demo.ensure_demo_run(run, data=chain_prepared, progress=False, shipped=chain_shipped)
    assert capsys.readouterr().err == ""
    for kind, folder in demo.demo_folders(run).items():
        assert load_run(folder)[0].config.kind == kind


def damaged(shipped: Path, tmp_path: Path) -> Path:
    copy = Path(shutil.copytree(shipped, tmp_path / "damaged"))
    raw = bytearray((copy / "ar" / "model.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (copy / "ar" / "model.safetensors").write_bytes(bytes(raw))
    return copy


def older(shipped: Path, tmp_path: Path) -> Path:
    """Shipped runs as a diffgrm that did not carry catalogues wrote them."""
    copy = Path(shutil.copytree(shipped, tmp_path / "older"))
    shutil.rmtree(copy / CATALOGUE)
    for kind in demo.KINDS:
        meta = read_json(copy / kind / "config.json")
        del meta["format"]
        (copy / kind / "config.json").write_text(json.dumps(meta))
    return copy


@pytest.mark.parametrize("make, why", [
    (damaged, "the shipped demo runs cannot be used: {}/ar/model.safetensors is damaged"),
    (older, "the shipped demo runs cannot be used: {}/diffgrm was written by another diffgrm version (run format 1; "
            "this one reads 2)"),
    (lambda shipped, tmp: tmp / "nothing", "this installation ships no demo runs"),
], ids=["damaged", "older-version", "none"])
def test_unusable_shipped_runs_print_one_line_and_train_with_the_recipe(make, why, chain_shipped, chain_prepared,
                                                                        tmp_path, monkeypatch, capsys):
    tiny_recipe(monkeypatch)
    shipped = make(chain_shipped, tmp_path)
    run = tmp_path / "demo"
    assert demo.ensure_demo_run(run, data=chain_prepared, progress=False, shipped=shipped) == run
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("training the demo runs here with the shipped recipe"), err
    assert why.format(shipped) in err[0], err[0]
    fp = load_prepared(chain_prepared).catalogue.fingerprint
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


def test_same_ranking_allows_ties_and_nothing_else():
    made = {"items": ["a", "b", "c"], "scores": [-1.0, -1.0004, -2.0]}
    assert same_ranking(["a", "b", "c"], [-1.0, -1.0004, -2.0], made)
    assert same_ranking(["b", "a", "c"], [-1.0004, -1.0, -2.0], made)  # a tie, ordered the other way
    assert not same_ranking(["a", "c", "b"], [-1.0, -2.0, -1.0004], made)  # a real change of order
    assert same_ranking(["a", "b", "x"], [-1.0, -1.0004, -2.0005], made)  # tied with the K-th: may replace it
    assert not same_ranking(["a", "b", "x"], [-1.0, -1.0004, -2.009], made)  # another item, no tie with it
    assert not same_ranking(["a", "b"], [-1.0, -1.0004], made)
