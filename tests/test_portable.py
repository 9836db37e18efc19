"""Portable runs: a run carries its catalogue, reads its users by item id, and travels as one file.

"Another machine" is simulated the way processors differ: the item embeddings are perturbed in
their last bit before tokenizing, which gives the same data other SIDs (k-means amplifies the
last bits). A run trained before must not notice: same Top-K, same metrics.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from diffgrm.cli import main
from diffgrm.data import load_dataset, write_folder
from diffgrm.decode import Recommender
from diffgrm.errors import DiffGRMError
from diffgrm.pack import MANIFEST, pack, read_manifest, unpack
from diffgrm.portable import CATALOGUE, RUN_FORMAT, flip_last_bits, verify_run
from diffgrm.prepare import load_prepared
from diffgrm.safeio import read_json
from diffgrm.train import evaluate_split, load_run


def scores(metrics: dict) -> dict:
    """An evaluation's measurements, without its timing."""
    return {k: v for k, v in metrics.items() if k != "seconds"}


@pytest.fixture(scope="module")
def elsewhere(chain_prepared, tmp_path_factory) -> Path:
    """The chain data prepared "on another machine": same items and users, last-bit-perturbed vectors."""
    root = tmp_path_factory.mktemp("elsewhere")
    prepared = load_prepared(chain_prepared)
    ds = load_dataset(chain_prepared.parent / "raw")
    folder = write_folder(ds, root / "raw")
    np.save(folder / "item_embeddings.npy", flip_last_bits(prepared.embeddings))
    assert main(["prepare", "--dataset", str(folder), "--out", str(root / "prepared"), "--codebook", "8", "--quiet"]) == 0
    return root / "prepared"


def test_a_run_folder_carries_its_catalogue(chain_run, chain_prepared):
    meta = read_json(chain_run / "config.json")
    assert meta["format"] == RUN_FORMAT and meta["data"] == str(chain_prepared.resolve()) and meta["dataset"] is None
    folder = chain_run / CATALOGUE
    assert sorted(p.name for p in folder.iterdir()) == ["catalogue.safetensors", "collisions.json", "dataset.json",
                                                         "items.jsonl", "tokenizer.json", "tokenizer_report.json"]
    prepared = load_prepared(chain_prepared)
    _, carried, _ = load_run(chain_run)
    np.testing.assert_array_equal(carried.catalogue.codes, prepared.catalogue.codes)
    np.testing.assert_array_equal(carried.catalogue.codes_raw, prepared.catalogue.codes_raw)
    assert carried.items.equals(prepared.items) and carried.report == prepared.report
    sub, cent, rows = carried.codebook_space()  # what the codebook views draw, kept in half precision
    want_sub, want_cent, _ = prepared.codebook_space()
    np.testing.assert_array_equal(rows, np.arange(prepared.n_items))
    np.testing.assert_allclose(sub, want_sub, atol=2e-3)
    np.testing.assert_array_equal(cent, want_cent)
    with pytest.raises(DiffGRMError, match="is a run's catalogue"):
        carried.tokenizer()
    assert verify_run(chain_run)["fingerprint"] == prepared.catalogue.fingerprint


def test_another_machines_sids_change_nothing_for_a_trained_run(chain_run, chain_prepared, elsewhere):
    here, there = load_prepared(chain_prepared), load_prepared(elsewhere)
    moved = (here.catalogue.codes != there.catalogue.codes).any(axis=1).mean()
    assert moved > 0.25, f"the perturbation moved only {moved:.0%} of the SIDs: it would prove nothing"
    model, home, _ = load_run(chain_run)
    model2, away, _ = load_run(chain_run, data=elsewhere)
    assert away.data == str(elsewhere.resolve()) and away.catalogue.fingerprint == home.catalogue.fingerprint
    hist = home.splits["test"].histories[:20]
    a, b = Recommender(model).search(hist, beam=16, topk=10), Recommender(model2).search(hist, beam=16, topk=10)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    assert scores(evaluate_split(model2, away, "test", progress=False)) == scores(evaluate_split(model, home, "test",
                                                                                                progress=False))


def test_users_are_matched_by_item_id_whatever_the_item_order(chain_run, chain_prepared, tmp_path):
    """A dataset folder with its items listed in another order: the run re-indexes them by id."""
    ds = load_dataset(chain_prepared.parent / "raw")
    folder = write_folder(ds, tmp_path / "raw")
    lines = (folder / "items.jsonl").read_text().splitlines()
    (folder / "items.jsonl").write_text("\n".join(lines[::-1]) + "\n")
    model, home, _ = load_run(chain_run)
    _, shuffled, _ = load_run(chain_run, data=folder)
    assert shuffled.users == home.users
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(shuffled.splits[name].targets, home.splits[name].targets)
        assert all(np.array_equal(x, y) for x, y in zip(shuffled.splits[name].histories, home.splits[name].histories))
    assert scores(evaluate_split(model, shuffled, "test", progress=False)) == scores(evaluate_split(model, home, "test",
                                                                                                   progress=False))


def test_a_run_reads_its_named_dataset_when_its_folder_is_gone(chain_run, tmp_path, monkeypatch):
    from diffgrm import portable

    run = Path(shutil.copytree(chain_run, tmp_path / "run"))
    meta = read_json(run / "config.json")
    meta.update(data=str(tmp_path / "gone"), dataset="movielens-100k")
    (run / "config.json").write_text(json.dumps(meta))
    asked = []
    monkeypatch.setattr(portable, "read_interactions", lambda data: asked.append(data) or (_ for _ in ()).throw(
        DiffGRMError("stop here")))
    with pytest.raises(DiffGRMError, match="stop here"):
        load_run(run)
    assert asked == ["movielens-100k"]


def test_a_companion_trains_on_a_runs_own_catalogue(chain_run, tmp_path):
    """`diffgrm train RUN`: the run's SIDs and users, so an AR companion shares them on any machine."""
    out = tmp_path / "ar"
    assert main(["train", str(chain_run), "--model", "ar", "--preset", "tiny", "--epochs", "1", "--max-steps", "2",
                 "--out", str(out), "--quiet"]) == 0
    meta, theirs = read_json(out / "config.json"), read_json(chain_run / "config.json")
    assert meta["fingerprint"] == theirs["fingerprint"] and meta["data"] == theirs["data"]
    assert (out / CATALOGUE / "catalogue.safetensors").read_bytes() == (
        chain_run / CATALOGUE / "catalogue.safetensors").read_bytes()


def test_a_packed_run_unpacked_elsewhere_gives_the_same_metrics(chain_run, chain_ar_run, elsewhere, tmp_path):
    file = pack(chain_run, tmp_path / "share" / "run.zip", ar=chain_ar_run)
    again = pack(chain_run, tmp_path / "share" / "again.zip", ar=chain_ar_run)
    assert file.read_bytes() == again.read_bytes(), "the same run should pack into the same bytes"
    manifest = read_manifest(file)
    assert manifest["runs"] == {"run": chain_run.name, "ar": chain_ar_run.name}
    assert "run/catalogue/catalogue.safetensors" in manifest["files"] and "ar/model.safetensors" in manifest["files"]
    folders = unpack(file, tmp_path / "colleague" / "run", data=elsewhere)
    assert folders == {"run": tmp_path / "colleague" / "run", "ar": tmp_path / "colleague" / "run-ar"}
    for role, original in (("run", chain_run), ("ar", chain_ar_run)):
        assert read_json(folders[role] / "config.json")["data"] == str(elsewhere)
        assert read_json(folders[role] / MANIFEST) == manifest
        model, prepared, _ = load_run(original)
        model2, prepared2, _ = load_run(folders[role])
        for split in ("valid", "test"):
            got, want = (evaluate_split(m, p, split, progress=False) for m, p in ((model2, prepared2), (model, prepared)))
            assert scores(got) == scores(want) and got["users"] == want["users"]


def test_a_pack_with_one_changed_byte_unpacks_nothing(chain_run, tmp_path):
    file = pack(chain_run, tmp_path / "run.zip")
    with zipfile.ZipFile(file) as zf:
        blobs = {name: zf.read(name) for name in zf.namelist()}
    weights = bytearray(blobs["run/model.safetensors"])
    weights[-1] ^= 1
    blobs["run/model.safetensors"] = bytes(weights)
    with zipfile.ZipFile(file, "w") as zf:
        for name, blob in blobs.items():
            zf.writestr(name, blob)
    with pytest.raises(DiffGRMError, match="model.safetensors is damaged"):
        unpack(file, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.zip"]


def test_app_opens_a_packed_run_and_reuses_it(chain_run, chain_ar_run, tmp_path, monkeypatch, capsys):
    file = pack(chain_run, tmp_path / "share" / "demo.zip", ar=chain_ar_run)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIFFGRM_PROJECTION", "pca")
    assert main(["app", str(file), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert f"unpacked {file} into runs/demo, runs/demo-ar" in err and out.strip().endswith("--run runs/demo")
    stamp = (tmp_path / "runs" / "demo" / "model.safetensors").stat().st_mtime_ns
    assert main(["app", str(file), "--dry-run"]) == 0  # the second start serves the folder already there
    assert "unpacked" not in capsys.readouterr().err
    assert (tmp_path / "runs" / "demo" / "model.safetensors").stat().st_mtime_ns == stamp
    other = pack(chain_ar_run, tmp_path / "share" / "x" / "demo.zip")
    assert main(["app", str(other), "--dry-run"]) == 2
    assert "runs/demo already holds something else" in capsys.readouterr().err


def test_the_app_reads_users_from_data_given_at_start(chain_run, chain_prepared, tmp_path, monkeypatch, capsys):
    """A run whose recorded data is gone opens with `diffgrm app RUN --data ...` (the page gets it too)."""
    from streamlit.testing.v1 import AppTest

    from tests.test_app import APP

    run = Path(shutil.copytree(chain_run, tmp_path / "run"))
    meta = read_json(run / "config.json")
    (run / "config.json").write_text(json.dumps({**meta, "data": str(tmp_path / "gone")}))
    raw = chain_prepared.parent / "raw"
    monkeypatch.setenv("DIFFGRM_PROJECTION", "pca")
    assert main(["app", str(run), "--data", str(raw), "--dry-run"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"--run {run} --data {raw}")
    monkeypatch.setenv("DIFFGRM_RUN", str(run))
    monkeypatch.setenv("DIFFGRM_DATA", str(raw))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert not at.error, at.error[0].value
    assert any("U0" in h.value for h in at.title), [h.value for h in at.title]
