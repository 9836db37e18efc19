"""Two CPU processes with gloo under torchrun: the same weights as one process with the same global
batch, only rank 0 writes, and evaluation gathered across ranks equals one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
from dataclasses import replace
from diffgrm.config import preset
from diffgrm.prepare import load_prepared
from diffgrm.train import train

data, out, kind = sys.argv[1], sys.argv[2], sys.argv[3]
prepared = load_prepared(data)
model_cfg, cfg = preset("tiny", kind=kind, n_digits=4, codebook_size=8)
# no dropout: each rank would draw other masks than one process does
model_cfg = replace(model_cfg, dropout=0.0)
cfg = replace(cfg, epochs=2, max_steps=3, batch_size=64, eval_users=40, eval_beam=16, max_minutes=0, warmup_steps=2)
train(prepared, model_cfg, cfg, out, device="cpu", progress=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.mark.parametrize("kind", ["diffgrm", "ar"])
def test_two_processes_train_the_weights_of_one_and_only_rank_0_writes(chain_prepared, tmp_path, kind):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    work = tmp_path / "work"
    work.mkdir()
    torchrun(str(script), str(chain_prepared), str(tmp_path / "two"), kind, cwd=work)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, str(script), str(chain_prepared), str(tmp_path / "one"), kind], check=True,
                   env=env, cwd=work, timeout=300)
    two, one = load_file(tmp_path / "two" / "model.safetensors"), load_file(tmp_path / "one" / "model.safetensors")
    assert two.keys() == one.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=2e-4, rtol=1e-3)
    # ... and they moved away from where training started: the comparison is not of two untrained models
    from dataclasses import replace

    from diffgrm.config import preset
    from diffgrm.model import build_model
    from diffgrm.prepare import load_prepared

    model_cfg, _ = preset("tiny", kind=kind, n_digits=4, codebook_size=8)
    torch.manual_seed(0)
    init = build_model(replace(model_cfg, dropout=0.0), torch.from_numpy(load_prepared(chain_prepared).catalogue.codes))
    moved = max(float((init.state_dict()[name] - one[name]).abs().max()) for name in one)
    assert moved > 1e-2
    meta_two, meta_one = (json.loads((tmp_path / r / "config.json").read_text()) for r in ("two", "one"))
    assert meta_two["best_epoch"] == meta_one["best_epoch"]
    h_two, h_one = ((tmp_path / r / "history.jsonl").read_text().splitlines() for r in ("two", "one"))
    assert len(h_two) == len(h_one) == 2
    for a, b in zip(h_two, h_one):  # the validation gathered from two ranks scores like one process
        a, b = json.loads(a), json.loads(b)
        assert a["samples"] == b["samples"] and a["valid"] == pytest.approx(b["valid"], abs=1e-9)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    # rank 0 alone wrote: the same files as one process, nothing in the working folder, no stray stage
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert list(work.iterdir()) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_evaluate_under_torchrun_equals_one_process(chain_run, tmp_path, capsys):
    from diffgrm.cli import main

    run = tmp_path / "run"
    run.mkdir()
    for f in chain_run.iterdir():
        if f.is_file():
            (run / f.name).write_bytes(f.read_bytes())
    # 150 test users in batches of 32: five batches, so the two ranks get three and two
    proc = torchrun("-m", "diffgrm", "evaluate", str(run), "--beam", "16", "--quiet", cwd=tmp_path)
    two = json.loads((run / "metrics.json").read_text())
    assert proc.stdout.count("diffgrm on test") == 1  # rank 0 alone reports
    assert main(["evaluate", str(run), "--beam", "16", "--quiet"]) == 0
    one = json.loads((run / "metrics.json").read_text())
    assert two["users"] == one["users"] == 150
    assert two["item"] == one["item"] and two["sid"] == one["sid"] and two["distinct_top10"] == one["distinct_top10"]
