"""SASRec, the discriminative baseline: a model kind like the others. It learns the chain dataset,
trains and evaluates from the command line, checkpoints, resumes and is checked like every run,
reads runs of the older layout, and refuses bad input."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from diffgrm.cli import main
from diffgrm.config import ModelConfig, TrainConfig, preset
from diffgrm.data import Samples
from diffgrm.errors import DiffGRMError
from diffgrm.prepare import load_prepared
from diffgrm.sasrec import SASRecConfig, evaluate_sasrec, load_sasrec, rank_items, train_sasrec
from diffgrm.train import evaluate_split, load_run, train
from tests.conftest import train_interrupted

FAST = SASRecConfig(d_model=32, n_heads=2, n_layers=1, dropout=0.0, epochs=30, batch_size=32, lr=5e-3, patience=30)


@pytest.fixture(scope="module")
def sasrec_run(chain_prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("sasrec") / "run"
    model, history = train_sasrec(load_prepared(chain_prepared), FAST, out, device="cpu", progress=False)
    return model, history, out


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_learns_the_chains_far_above_popularity(chain_prepared, sasrec_run):
    model, history, _ = sasrec_run
    assert history[-1]["loss"] < history[0]["loss"] * 0.5
    prepared = load_prepared(chain_prepared)
    test = prepared.splits["test"]
    metrics = evaluate_split(model, prepared, "test")
    # 60 items with flat popularity: popularity's Recall@10 is about 10/60; the chain rule is learnable
    assert metrics["item"]["recall@10"] > 0.6 > metrics["popularity"]["recall@10"] + 0.3
    assert "sid" not in metrics and "beam" not in metrics  # item level only: SASRec generates no SIDs
    assert metrics["model"] == "sasrec" and metrics["users"] == len(test) and metrics["split"] == "test"
    # the benchmarks' call keeps its SID-level table: one-to-one catalogue, SID level = item level
    bench = evaluate_sasrec(model, test, prepared.catalogue.codes)
    assert bench["item"] == metrics["item"] and bench["sid"] == bench["item"] and bench["beam"] == 0


def test_next_item_of_a_chain_ranks_first(sasrec_run):
    model = sasrec_run[0]
    top = rank_items(model, [np.array([10, 11, 12]), np.array([40, 41])], k=3)
    assert top.shape == (2, 3)
    assert top[0, 0] == 13 and top[1, 0] == 42


def test_checkpoint_round_trip_without_pickle(chain_prepared, sasrec_run):
    model, history, out = sasrec_run
    meta = json.loads((out / "config.json").read_text())
    # the shared configs and run layout: model sizes in "model", training in "train", its own catalogue
    assert meta["model"]["kind"] == "sasrec" and meta["model"]["d_model"] == 32 and meta["model"]["enc_layers"] == 1
    assert meta["train"]["warmup_steps"] == 0 and meta["format"] == 2 and (out / "catalogue").is_dir()
    assert meta["fingerprint"] == load_prepared(chain_prepared).catalogue.fingerprint
    again = load_sasrec(out)
    hist = [np.array([3, 4, 5]), np.array([7])]
    assert (rank_items(again, hist) == rank_items(model, hist)).all()
    assert len((out / "history.jsonl").read_text().splitlines()) == len(history)
    assert not (out / "resume.json").exists()  # a finished run keeps no resume state
    loaded, prepared, _ = load_run(out, sasrec=True)
    assert (rank_items(loaded, hist) == rank_items(model, hist)).all() and len(prepared.users) == 150


def test_train_and_evaluate_from_the_command_line(chain_prepared, tmp_path, capsys):
    run = tmp_path / "sas"
    code, out, err = cli(capsys, "train", chain_prepared, "--model", "sasrec", "--preset", "tiny", "--out", run,
                         "--epochs", "3", "--d-model", "32", "--n-heads", "2", "--enc-layers", "2", "--quiet")
    assert code == 0, err
    assert out.startswith("sasrec: ") and "best epoch" in out
    meta = json.loads((run / "config.json").read_text())
    assert meta["model"]["kind"] == "sasrec" and meta["model"]["enc_layers"] == 2 and meta["train"]["epochs"] == 3
    code, out, err = cli(capsys, "evaluate", run, "--exclude-seen", "--quiet")
    assert code == 0, err
    assert "every item scored" in out and "sid     not defined: sasrec ranks item ids" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["item"]) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"} and "sid" not in metrics
    assert metrics["model"] == "sasrec" and metrics["exclude_seen"] is True and metrics["users"] == 150
    assert set(metrics["popularity"]) == set(metrics["item"])  # popularity beside it, as for the other runs
    for argv, expect in [(["evaluate", run, "--passes", "2"], "--passes applies to DiffGRM runs"),
                         (["evaluate", run, "--protocol", "paper"], "is a SASRec run: it ranks item ids"),
                         (["recommend", run, "--user", "U0"], "is a SASRec run"),
                         (["train", chain_prepared, "--model", "sasrec", "--select", "sid", "--out", tmp_path / "x"],
                          "chosen at item level")]:
        code, _, err = cli(capsys, *argv)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and expect in lines[0], err


def test_an_interrupted_sasrec_run_resumes_to_the_same_weights(chain_prepared, tmp_path):
    from safetensors.torch import load_file

    prepared = load_prepared(chain_prepared)
    model_cfg, cfg = preset("tiny", kind="sasrec", n_digits=4, codebook_size=8)
    cfg = replace(cfg, epochs=4, eval_start=2, max_steps=3, batch_size=16)
    train(prepared, model_cfg, cfg, tmp_path / "straight", device="cpu", progress=False)
    train_interrupted(prepared, model_cfg, cfg, tmp_path / "cut")
    assert (tmp_path / "cut" / "resume.json").is_file() and not (tmp_path / "cut" / "model.safetensors").exists()
    result = train(prepared, model_cfg, cfg, tmp_path / "cut", device="cpu", progress=False)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    a, b = (load_file(str(tmp_path / run / "model.safetensors")) for run in ("straight", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def old_layout(run, prepared_folder, dest):
    """``run`` as diffgrm wrote SASRec runs before SASRec shared the configs: sizes among the training
    settings, the item count in "model", no catalogue of its own, the prepared folder it trained on."""
    shutil.copytree(run, dest)
    meta = json.loads((dest / "config.json").read_text())
    model, train_cfg = meta["model"], meta["train"]
    recipe = {"d_model": model["d_model"], "n_heads": model["n_heads"], "n_layers": model["enc_layers"],
              "dropout": model["dropout"], "max_history": model["max_history"],
              **{k: train_cfg[k] for k in ("epochs", "batch_size", "lr", "weight_decay", "patience", "eval_users",
                                           "min_history", "max_minutes", "seed")}}
    old = {"model": {"kind": "sasrec", "n_items": 60}, "train": recipe, "fingerprint": meta["fingerprint"],
           "data": str(prepared_folder), "sha256": meta["sha256"]}
    (dest / "config.json").write_text(json.dumps(old))
    shutil.rmtree(dest / "catalogue")
    return dest


def test_runs_of_the_older_layout_still_load(chain_prepared, sasrec_run, tmp_path):
    model, _, out = sasrec_run
    old = old_layout(out, chain_prepared, tmp_path / "old")
    hist = [np.array([3, 4, 5]), np.array([7])]
    assert (rank_items(load_sasrec(old), hist) == rank_items(model, hist)).all()
    loaded, prepared, _ = load_run(old, sasrec=True)
    assert loaded.config.d_ff == 4 * 32 and loaded.config.enc_layers == 1  # the older layout's blocks and width
    assert prepared.catalogue.fingerprint == json.loads((old / "config.json").read_text())["fingerprint"]
    # the keys that layout wrote are known legacy keys, each with where it came from
    assert {"n_items"} == set(ModelConfig.LEGACY_KEYS)
    assert {"d_model", "n_heads", "n_layers", "dropout", "max_history"} == set(TrainConfig.LEGACY_KEYS)
    assert all(reason for reason in {**ModelConfig.LEGACY_KEYS, **TrainConfig.LEGACY_KEYS}.values())
    # ... but a key no version wrote is refused, naming it and the file
    meta = json.loads((old / "config.json").read_text())
    meta["train"]["warp_speed"] = 9
    (old / "config.json").write_text(json.dumps(meta))
    with pytest.raises(DiffGRMError, match=r"config.json 'train': unknown key 'warp_speed' in TrainConfig"):
        load_sasrec(old)


def test_a_run_is_checked_against_its_catalogue(chain_prepared, sasrec_run, tmp_path):
    from safetensors.numpy import load_file

    from tests.conftest import save_catalogue

    _, _, out = sasrec_run
    moved = shutil.copytree(out, tmp_path / "moved")
    meta = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps({**meta, "fingerprint": "0" * 16}))
    with pytest.raises(DiffGRMError, match="holds another catalogue"):
        load_sasrec(moved)
    # an older-layout run against a prepared folder whose SIDs differ: refused, not decoded
    other = shutil.copytree(chain_prepared, tmp_path / "other")
    arrays = load_file(str(other / "catalogue.safetensors"))
    arrays["codes"][[0, 1]] = arrays["codes"][[1, 0]]
    save_catalogue(other, arrays)
    with pytest.raises(DiffGRMError, match="trained on another catalogue"):
        load_sasrec(old_layout(out, other, tmp_path / "old"))


def test_bad_input_is_refused(tmp_path, sasrec_run):
    with pytest.raises(DiffGRMError, match="holds no checkpoint"):
        load_sasrec(tmp_path)
    with pytest.raises(DiffGRMError, match="history is empty"):
        rank_items(sasrec_run[0], [np.array([], dtype=np.int64)])
    with pytest.raises(DiffGRMError, match="divisible"):
        SASRecConfig(d_model=30, n_heads=4)
    with pytest.raises(DiffGRMError, match="SASRec needs at least one block"):
        ModelConfig(kind="sasrec", enc_layers=0)
    empty = Samples([np.array([1])], np.array([2]), np.array([0]))
    assert evaluate_sasrec(sasrec_run[0], empty, np.zeros((60, 4), dtype=np.int64))["users"] == 1
