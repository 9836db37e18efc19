"""Several processes, one model: ``torch.distributed`` as launched by ``torchrun``.

``torchrun --nproc_per_node N -m diffgrm train DATA ...`` starts N copies of the command; each
finds its rank in the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``...). :func:`setup` joins the process group (``nccl`` on CUDA, ``gloo`` on the
CPU). Training then wraps the loss in ``DistributedDataParallel``: every rank takes its share of
each global batch, gradients are averaged, and all ranks keep identical weights. Evaluation
decodes a share of the user batches on each rank and gathers the rankings, so metrics, early
stopping and checkpoints are the same as in one process. Rank 0 alone writes files and draws
progress bars. A single process (no torchrun) runs none of this.

torch is imported only when a process group is joined or used: the CLI imports this module for
every command, and commands that never touch a model (``fetch``, ``app``) start without paying
for torch's import.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from diffgrm.errors import DiffGRMError

if TYPE_CHECKING:
    import torch


def _dist():
    """torch.distributed when it has been imported (no process group can exist before), else None."""
    return sys.modules.get("torch.distributed")


def launched() -> bool:
    """Was this process started by torchrun (or another launcher) as one of several?"""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    dist = _dist()
    return dist is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return _dist().get_rank() if active() else 0


def world_size() -> int:
    return _dist().get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0, or the only process: the one that writes files and prints."""
    return rank() == 0


def setup(device: str | torch.device | None = None) -> torch.device | None:
    """Join the process group when launched as several processes; returns this rank's device
    (``cuda:LOCAL_RANK`` on a GPU machine) or ``device`` unchanged in a single process."""
    import torch
    import torch.distributed as dist

    if not launched():
        return None if device is None else torch.device(device)
    use_cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    if not dist.is_initialized():
        for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
            if key not in os.environ:
                raise DiffGRMError(f"WORLD_SIZE is set but {key} is not: start several processes with torchrun "
                                   "(torchrun --nproc_per_node N -m diffgrm ...)")
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def close() -> None:
    dist = _dist()
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        _dist().barrier()


def share(items: Sequence) -> Sequence:
    """This rank's share of ``items``: every ``world_size``-th one from its rank on."""
    return items[rank()::world_size()]


def gather(obj: object) -> list:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` in one process)."""
    if not active():
        return [obj]
    out: list = [None] * world_size()
    _dist().all_gather_object(out, obj)
    return out


def broadcast(obj: object) -> object:
    """Rank 0's ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=0)
    return box[0]


def mean(value: float, weight: float = 1.0) -> float:
    """The ``weight``-weighted mean of ``value`` over the ranks (the value itself in one process)."""
    if not active():
        return value
    import torch

    dist = _dist()
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([value * weight, weight], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t[0] / t[1])
