"""Loose ends of reliability: a forced retrain keeps the old run until the new one is complete,
weights carry a checksum verified on load, and one command at a time writes an ``--out``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from diffgrm import demo
from diffgrm.cli import main
from diffgrm.config import preset
from diffgrm.errors import DiffGRMError
from diffgrm.prepare import load_prepared
from diffgrm.resume import forced_stage
from diffgrm.safeio import file_sha256, lock_path, output_lock, read_json
from diffgrm.train import load_run, train
from tests.conftest import FAST_TRAIN, ROOT, write_folder_dataset


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def flip_last_byte(path: Path) -> None:
    """Change one byte of the tensor data (the end of the file, not the header): still a valid file."""
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))


def small(**over):
    model_cfg, cfg = preset("tiny", n_digits=4, codebook_size=8)
    return model_cfg, replace(cfg, **{**FAST_TRAIN, "epochs": 3, "eval_start": 3, "max_steps": 3, "batch_size": 16,
                                      **over})


def interrupt_at(stop: int, seen: list[int]):
    def on_epoch(epoch, model, row):
        seen.append(epoch)
        if epoch == stop:
            raise KeyboardInterrupt
    return on_epoch


# --------------------------------------------------------------------------- train --force


def test_an_interrupted_forced_retrain_keeps_the_old_run_and_the_same_command_continues(chain_prepared, tmp_path):
    prepared = load_prepared(chain_prepared)
    model_cfg, cfg = small()
    run = tmp_path / "run"
    train(prepared, model_cfg, cfg, run, device="cpu", progress=False)
    (run / "metrics.json").write_text("{}")
    before = files(run)

    new, seen = replace(cfg, seed=4), []
    with pytest.raises(KeyboardInterrupt):
        train(prepared, model_cfg, new, run, device="cpu", progress=False, force=True, on_epoch=interrupt_at(2, seen))
    assert files(run) == before, "the old run changed before the new one was complete"
    assert load_run(run, device="cpu")[2]["train"]["seed"] == cfg.seed
    assert (forced_stage(run) / "resume.json").is_file()

    # other settings with --force: the staged state is not theirs, so they start from epoch 1
    with pytest.raises(KeyboardInterrupt):
        train(prepared, model_cfg, replace(cfg, seed=5), run, device="cpu", progress=False, force=True,
              on_epoch=interrupt_at(1, seen := []))
    assert seen == [1] and files(run) == before

    # the interrupted command again: continues after its last epoch, then replaces the old run whole
    with pytest.raises(KeyboardInterrupt):
        train(prepared, model_cfg, new, run, device="cpu", progress=False, force=True, on_epoch=interrupt_at(2, seen := []))
    train(prepared, model_cfg, new, run, device="cpu", progress=False, force=True, on_epoch=interrupt_at(0, seen := []))
    assert seen == [2, 3], "the forced run started over instead of continuing"  # epoch 2 was cut before its save
    train(prepared, model_cfg, new, tmp_path / "straight", device="cpu", progress=False)
    assert sorted(p.name for p in run.iterdir()) == ["catalogue", "config.json", "history.jsonl", "model.safetensors"]
    assert (run / "model.safetensors").read_bytes() == (tmp_path / "straight" / "model.safetensors").read_bytes()
    assert read_json(run / "config.json")["train"]["seed"] == 4
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "a staging folder or lock was left"


# --------------------------------------------------------------------------- checksums


@pytest.fixture
def run_copy(chain_run, tmp_path) -> Path:
    return Path(shutil.copytree(chain_run, tmp_path / "run"))


def test_a_flipped_byte_in_the_weights_is_an_error_naming_the_file(run_copy, capsys):
    recorded = read_json(run_copy / "config.json")["sha256"]
    assert recorded == {"model.safetensors": file_sha256(run_copy / "model.safetensors")}
    flip_last_byte(run_copy / "model.safetensors")
    with pytest.raises(DiffGRMError, match=r"model\.safetensors is damaged: its sha256 differs from the one recorded in"):
        load_run(run_copy, device="cpu")
    capsys.readouterr()
    assert main(["evaluate", str(run_copy), "--users", "5", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(run_copy / "model.safetensors") in err[0]


def test_a_run_without_a_recorded_checksum_still_loads(run_copy):
    meta = read_json(run_copy / "config.json")
    del meta["sha256"]
    (run_copy / "config.json").write_text(json.dumps(meta))
    model, _, loaded = load_run(run_copy, device="cpu")
    assert "sha256" not in loaded and model.config.kind == "diffgrm"


def test_the_shipped_demo_runs_record_their_weights_checksum():
    for kind, folder in demo.shipped_runs().items():
        recorded = read_json(folder / "config.json").get("sha256")
        assert recorded == {"model.safetensors": file_sha256(folder / "model.safetensors")}, kind


@pytest.mark.parametrize("name", ["catalogue.safetensors", "tokenizer.safetensors"])
def test_a_flipped_byte_in_a_prepared_folder_is_an_error_naming_the_file(chain_prepared, tmp_path, capsys, name):
    folder = Path(shutil.copytree(chain_prepared, tmp_path / "prepared"))
    recorded = read_json(folder / "dataset.json")["sha256"]
    assert recorded == {n: file_sha256(folder / n) for n in ("catalogue.safetensors", "tokenizer.safetensors")}
    flip_last_byte(folder / name)
    with pytest.raises(DiffGRMError, match=rf"{name.replace('.', '[.]')} is damaged: its sha256 differs .*dataset[.]json"):
        load_prepared(folder)
    assert main(["train", str(folder), "--preset", "tiny", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "diffgrm prepare" in err[0]
    # a folder written before the hashes existed loads as before
    meta = read_json(folder / "dataset.json")
    del meta["sha256"]
    (folder / "dataset.json").write_text(json.dumps(meta))
    shutil.copy(chain_prepared / name, folder / name)
    assert load_prepared(folder).n_items == load_prepared(chain_prepared).n_items


def test_a_flipped_byte_in_the_resume_state_is_refused(chain_prepared, tmp_path):
    prepared = load_prepared(chain_prepared)
    model_cfg, cfg = small()
    with pytest.raises(KeyboardInterrupt):
        train(prepared, model_cfg, cfg, tmp_path / "run", device="cpu", progress=False, on_epoch=interrupt_at(2, []))
    flip_last_byte(tmp_path / "run" / "resume.safetensors")
    with pytest.raises(DiffGRMError, match=r"resume state of .* is damaged .*resume\.safetensors is damaged"):
        train(prepared, model_cfg, cfg, tmp_path / "run", device="cpu", progress=False)


def test_a_flipped_byte_in_a_sasrec_run_is_refused(chain_prepared, tmp_path):
    from diffgrm.sasrec import SASRecConfig, load_sasrec, train_sasrec

    cfg = replace(SASRecConfig(), epochs=1, batch_size=64)
    train_sasrec(load_prepared(chain_prepared), cfg, tmp_path / "sas", device="cpu", progress=False)
    load_sasrec(tmp_path / "sas")
    flip_last_byte(tmp_path / "sas" / "model.safetensors")
    with pytest.raises(DiffGRMError, match=r"model\.safetensors is damaged: its sha256 differs"):
        load_sasrec(tmp_path / "sas")


# --------------------------------------------------------------------------- one writer per --out


def hold_lock(out: Path) -> subprocess.Popen:
    """Another process holding ``out``'s lock until its stdin closes (as a running command does)."""
    code = ("import sys; from diffgrm.safeio import output_lock\n"
            f"with output_lock({str(out)!r}):\n    print('locked', flush=True); sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_a_second_train_into_the_same_out_is_refused_and_the_first_is_untouched(chain_prepared, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", str(chain_prepared), "--out", str(run), "--preset", "tiny", "--epochs", "1", "--max-steps", "2",
            "--quiet"]
    assert main(args) == 0
    before = files(run)
    holder = hold_lock(run)
    try:
        capsys.readouterr()
        assert main([*args, "--seed", "3", "--force"]) == 2
        line = one_error_line(capsys)
        assert "is being written by another diffgrm command" in line and f"pid {holder.pid}" in line
        assert files(run) == before and not forced_stage(run).exists()
    finally:
        holder.communicate("")  # the holder finishes: its lock goes with it
    assert main([*args, "--seed", "3", "--force"]) == 0
    assert read_json(run / "config.json")["train"]["seed"] == 3 and not lock_path(run).exists()


def test_a_second_prepare_into_the_same_out_is_refused(tmp_path, capsys):
    data = write_folder_dataset(tmp_path / "data", n_items=40, n_users=30)
    out = tmp_path / "prepared"
    holder = hold_lock(out)
    try:
        assert main(["prepare", "--dataset", str(data), "--out", str(out), "--codebook", "16", "--quiet"]) == 2
        assert "is being written by another diffgrm command" in one_error_line(capsys)
        assert not out.exists()
    finally:
        holder.communicate("")


def test_the_lock_of_a_killed_command_blocks_nothing(tmp_path):
    out = tmp_path / "out"
    holder = hold_lock(out)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert lock_path(out).is_file(), "the killed holder had no chance to remove its lock file"
    with output_lock(out):
        with output_lock(out):  # nested in one process (a script locking around train()): not a conflict
            assert lock_path(out).read_text().strip() == str(os.getpid())
    assert not lock_path(out).exists()
