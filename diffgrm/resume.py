"""A training run's full state after an epoch, so an interrupted run continues where it stopped.

Long runs (the ``cpu`` preset for 60+ epochs, the ``paper`` preset) outlast a terminal, a laptop
lid or a job's time limit. After every epoch ``train`` writes, beside the run's other files:

=========================  ==========================================================
``resume.safetensors``     the weights, the optimiser's moments, the best weights so far,
                           and the torch random states (as uint8 tensors)
``resume.json``            the epoch, the configs it belongs to, the scheduler, the numpy
                           generator, early stopping's counters, the history so far and
                           the sha256 of ``resume.safetensors`` (checked on resume)
=========================  ==========================================================

Nothing is pickled. Both files are written to a temporary name and renamed, so an interrupt
leaves the previous epoch's complete state. A finished run deletes them. Resuming gives the same
weights as an uninterrupted run on the same machine and thread count.

``--force`` over a run that cannot be continued trains in ``.RUN.forced`` beside it and swaps it
in when complete (:func:`run_folder`): an interrupted forced retrain leaves the old run intact,
and the same command continues the new one.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from diffgrm import distributed
from diffgrm.errors import DiffGRMError
from diffgrm.safeio import (atomic_write, check_output, file_checksums, load_tensors, output_lock, read_json,
                            require_keys, swap_in, verify_checksums)

STATE_FILE, META_FILE = "resume.safetensors", "resume.json"


@dataclass
class TrainState:
    """Everything the training loop carries from one epoch to the next."""

    epoch: int
    best: float
    best_epoch: int
    stale: int
    stopped: bool  # early stopping or the time cap ended training at this epoch
    history: list[dict]
    best_state: dict[str, torch.Tensor] | None


def save_state(run: str | Path, state: TrainState, configs: dict, model: torch.nn.Module,
               opt: torch.optim.Optimizer, sched, gen: torch.Generator, rng: np.random.Generator) -> None:
    run = Path(run)
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if state.best_state is not None:
        tensors.update({f"best/{k}": v.detach().cpu().contiguous() for k, v in state.best_state.items()})
    opt_state = opt.state_dict()
    for idx, slots in opt_state["state"].items():
        for name, value in slots.items():
            tensors[f"opt/{idx}/{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng/torch"] = torch.get_rng_state()
    tensors["rng/generator"] = gen.get_state().cpu()
    meta = {
        "epoch": state.epoch, "best": state.best, "best_epoch": state.best_epoch, "stale": state.stale,
        "stopped": state.stopped, "history": state.history, "configs": configs, "has_best": state.best_state is not None,
        "opt_groups": opt_state["param_groups"], "sched": sched.state_dict(), "numpy": rng.bit_generator.state,
    }
    atomic_write(run / STATE_FILE, lambda p: save_file(tensors, str(p)))
    meta["sha256"] = file_checksums(run, (STATE_FILE,))
    atomic_write(run / META_FILE, lambda p: p.write_text(json.dumps(meta)))


def load_state(run: str | Path, configs: dict, model: torch.nn.Module, opt: torch.optim.Optimizer, sched,
               gen: torch.Generator, rng: np.random.Generator) -> TrainState | None:
    """Restore what :func:`save_state` wrote into the given objects; ``None`` when there is nothing."""
    run = Path(run)
    try:
        found = _read_state(run)
    except DiffGRMError as exc:  # a damaged file: say which and what to do
        raise DiffGRMError(f"the resume state of {run} is damaged ({exc}); pass --force to train from the start") from None
    if found is None:
        return None
    meta, tensors = found
    if meta["configs"] != configs:
        raise DiffGRMError(f"{run} holds an unfinished run with other settings; train into another folder, "
                           "or pass --force to start this one from the beginning")
    device = next(model.parameters()).device
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
    state: dict = {"state": {}, "param_groups": meta["opt_groups"]}
    for key, value in tensors.items():
        if key.startswith("opt/"):
            _, idx, name = key.split("/")
            state["state"].setdefault(int(idx), {})[name] = value if name == "step" else value.to(device)
    opt.load_state_dict(state)
    sched.load_state_dict(meta["sched"])
    torch.set_rng_state(tensors["rng/torch"])
    gen.set_state(tensors["rng/generator"])  # generators of every device take their state as a CPU tensor
    rng.bit_generator.state = meta["numpy"]
    best_state = {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("best/")} if meta["has_best"] else None
    return TrainState(epoch=meta["epoch"], best=meta["best"], best_epoch=meta["best_epoch"], stale=meta["stale"],
                      stopped=meta["stopped"], history=meta["history"], best_state=best_state)


def _read_state(run: Path) -> tuple[dict, dict] | None:
    """``resume.json`` (checked) and the tensors it describes; ``None`` when ``run`` holds no state.
    Raises :class:`DiffGRMError` when either file is damaged."""
    if not (run / META_FILE).is_file() or not (run / STATE_FILE).is_file():
        return None
    meta = read_json(run / META_FILE)
    verify_checksums(run, meta.get("sha256"), run / META_FILE, "")
    tensors = load_tensors(run / STATE_FILE, framework="torch")
    require_keys(meta, ["configs", "epoch", "history", "opt_groups", "sched", "numpy"], run / META_FILE)
    return meta, tensors


def resumable(run: str | Path, configs: dict) -> bool:
    """Whether ``run`` holds an intact resume state of these settings (what ``--force`` continues)."""
    try:
        found = _read_state(Path(run))
    except DiffGRMError:
        return False
    return found is not None and found[0]["configs"] == configs


def clear_state(run: str | Path) -> None:
    for name in (STATE_FILE, META_FILE):
        (Path(run) / name).unlink(missing_ok=True)


def forced_stage(out: str | Path) -> Path:
    """Where ``--force`` trains a run that replaces ``out``: beside it, hidden."""
    out = Path(out).absolute()
    return out.with_name(f".{out.name}.forced")


@contextlib.contextmanager
def run_folder(out: str | Path, configs: dict, *, force: bool, inputs: tuple[str | Path, ...] = (),
               main: bool = True) -> Iterator[Path]:
    """The folder ``train`` writes for ``--out``, under ``out``'s lock (rank 0 alone under torchrun).

    ``out`` itself, unless ``force`` replaces a run there that cannot be continued (finished,
    other settings, damaged): then :func:`forced_stage`, continued when it holds these settings'
    state, and swapped in for the old run only once the new one is complete.
    """
    out = Path(out)
    with output_lock(out) if main else contextlib.nullcontext():
        work = out
        if check_output(out, "run", force=force, inputs=inputs) == "run" and force and not resumable(out, configs):
            work = forced_stage(out)
            if main and not resumable(work, configs):
                shutil.rmtree(work, ignore_errors=True)
        distributed.barrier()
        yield work
        if main and work != out:
            swap_in(work, out)
        elif main:
            shutil.rmtree(forced_stage(out), ignore_errors=True)  # an earlier forced attempt, now obsolete
        distributed.barrier()  # the other ranks return once rank 0 has put the run in place
