"""The training loop every model shares: AdamW, warm-up + cosine, gradient clipping, early stopping
on validation, resume after an interrupt, and the run folder it writes.

The loop knows a model family only through a :class:`Task`: the units it trains on (samples of
a history and its next item, or whole user sequences), the loss of a batch of them, and how the
model scores a validation split. ``diffgrm.train`` has the task of the SID models (DiffGRM and
AR), ``diffgrm.sasrec`` SASRec's; both train, checkpoint and resume through :func:`train_task`.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from diffgrm import distributed
from diffgrm.checkpoint import save_checkpoint
from diffgrm.config import ModelConfig, TrainConfig
from diffgrm.data import Samples
from diffgrm.errors import DiffGRMError
from diffgrm.metrics import combined_score
from diffgrm.model import default_device
from diffgrm.prepare import Prepared
from diffgrm.resume import TrainState, clear_state, load_state, run_folder, save_state
from diffgrm.safeio import write_text


class Task(Protocol):
    """What the loop needs from a model family (built with ``(model_cfg, cfg, prepared, device, generator)``)."""

    model: torch.nn.Module

    def lengths(self) -> np.ndarray:
        """One length per training unit: batches group units of similar length, to pad little."""

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
        """The tensors of the training units ``idx``, on the model's device."""

    def loss(self, *batch: torch.Tensor) -> torch.Tensor:
        """The mean training loss of one batch (what :meth:`batch` returned)."""

    def validate(self, samples: Samples, beam: int, progress: bool) -> dict:
        """Metrics of the model on ``samples``: ``"item"`` (and ``"sid"`` where SIDs are generated)
        Recall/NDCG@5/10, and ``"seconds"``."""


def lr_lambda(warmup: int, total: int):
    """Linear warm-up to the peak rate, then cosine decay to zero at the last step."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return f


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, pool: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar history length, so that padding to the longest costs little.

    Samples are shuffled, cut into pools of ``pool`` batches, sorted by length inside each pool,
    batched, and the batch order shuffled again: random, but a batch of 6-item histories is not
    padded to 50 because one long history fell into it.
    """
    perm = rng.permutation(len(lengths))
    batches = []
    span = batch_size * pool
    for start in range(0, len(perm), span):
        chunk = perm[start : start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def subsample(samples: Samples, n: int, seed: int) -> Samples:
    if n <= 0 or n >= len(samples):
        return samples
    idx = np.sort(np.random.default_rng(seed).choice(len(samples), n, replace=False))
    return Samples([samples.histories[i] for i in idx], samples.targets[idx], samples.users[idx])


class _Loss(torch.nn.Module):
    """The training loss as a module, so that ``DistributedDataParallel`` can wrap it: it
    averages the gradients of whatever the forward used (OCN's confidence pass runs inside, per
    rank, without gradients)."""

    def __init__(self, model: torch.nn.Module, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, *batch: torch.Tensor) -> torch.Tensor:
        return self.fn(*batch)


def optimizer_step(model: torch.nn.Module, cfg: TrainConfig, opt: torch.optim.Optimizer,
                   loss_fn: Callable[..., torch.Tensor], device: torch.device) -> Callable[..., float]:
    """One optimiser step on a batch (``loss_fn``'s arguments); returns the loss.

    The loss runs under autocast for ``bf16``/``fp16`` (fp16 with a gradient scaler, on CUDA
    only); clipping and the update stay in fp32. Under torchrun the loss goes through
    ``DistributedDataParallel``; ``weight`` (this rank's share of the global batch times the
    number of ranks) makes the averaged gradient that of the whole batch when the shares differ
    by one sample.
    """
    if cfg.precision == "fp16" and device.type != "cuda":
        raise DiffGRMError("precision fp16 needs a CUDA GPU; use bf16 or fp32 on this device")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
    forward = loss_fn
    if distributed.active():
        from torch.nn.parallel import DistributedDataParallel

        # the only buffers are constants (the catalogue's codes): broadcasting them every step (megabytes
        # for a large catalogue) would cost more than the gradients
        forward = DistributedDataParallel(_Loss(model, loss_fn), device_ids=[device] if device.type == "cuda" else None,
                                          broadcast_buffers=False, gradient_as_bucket_view=True)

    def step(*batch: torch.Tensor, weight: float = 1.0) -> float:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = forward(*batch)
        opt.zero_grad(set_to_none=True)
        scaled = loss * weight if weight != 1.0 else loss
        if scaler is not None:
            scaler.scale(scaled).backward()
            scaler.unscale_(opt)
        else:
            scaled.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        return float(loss.detach())

    return step


@dataclass
class TrainResult:
    model: torch.nn.Module
    best_epoch: int
    best_valid: dict | None
    history: list[dict]


def run_configs(model_cfg: ModelConfig, cfg: TrainConfig, prepared: Prepared) -> dict:
    """What a resume state must match to be continued."""
    return {"model": model_cfg.to_dict(), "train": cfg.to_dict(), "fingerprint": prepared.catalogue.fingerprint}


def train_task(make_task: Callable[..., Task], prepared: Prepared, model_cfg: ModelConfig, cfg: TrainConfig,
               out: str | Path | None = None, *, device: str | torch.device | None = None, progress: bool = True,
               force: bool = False,
               on_epoch: Callable[[int, torch.nn.Module, dict], None] | None = None) -> TrainResult:
    """Train the model ``make_task`` builds; with ``out``, into a run folder (see ``diffgrm.train.train``)."""
    device = distributed.setup(device) or default_device(device)
    if out is None:
        return _fit(make_task, prepared, model_cfg, cfg, None, device, progress, on_epoch)
    configs = run_configs(model_cfg, cfg, prepared)
    with run_folder(out, configs, force=force, inputs=(prepared.path,), main=distributed.is_main()) as work:
        return _fit(make_task, prepared, model_cfg, cfg, work, device, progress, on_epoch)


def _write_history(out: Path, history: list[dict]) -> None:
    # rewritten whole: an interrupt leaves the previous complete file
    write_text(out / "history.jsonl", "".join(json.dumps(r) + "\n" for r in history))


def _fit(make_task: Callable[..., Task], prepared: Prepared, model_cfg: ModelConfig, cfg: TrainConfig,
         out: Path | None, device: torch.device, progress: bool,
         on_epoch: Callable[[int, torch.nn.Module, dict], None] | None) -> TrainResult:
    """The training loop, writing into ``out`` (the run folder, or a forced run's staging folder)."""
    # Under torchrun every rank runs this function: rank 0 alone writes ``out``, and the ranks
    # agree on everything else by construction (same seed, same batches, averaged gradients,
    # gathered validation).
    main = distributed.is_main()
    progress = progress and main
    writes = out is not None and main
    ranks, my_rank = distributed.world_size(), distributed.rank()
    if cfg.batch_size < ranks:
        raise DiffGRMError(f"batch_size {cfg.batch_size} is smaller than the {ranks} processes: each needs samples")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    task = make_task(model_cfg, cfg, prepared, device, gen)
    model = task.model
    valid = subsample(prepared.splits["valid"], cfg.eval_users, cfg.seed)
    lengths = task.lengths()
    steps_per_epoch = math.ceil(len(lengths) / cfg.batch_size)
    if cfg.max_steps:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps)
    total = steps_per_epoch * cfg.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(min(cfg.warmup_steps, total // 2), total))
    step_fn = optimizer_step(model, cfg, opt, task.loss, device)

    history: list[dict] = []
    best, best_epoch, best_state, stale, stopped, first = -1.0, 0, None, 0, False, 1
    configs = run_configs(model_cfg, cfg, prepared)
    saved = load_state(out, configs, model, opt, sched, gen, rng) if out is not None else None
    if saved is not None:  # an interrupted run with these settings: continue after its last epoch
        history, best, best_epoch, best_state = saved.history, saved.best, saved.best_epoch, saved.best_state
        stale, stopped, first = saved.stale, saved.stopped, saved.epoch + 1
        if progress:
            tqdm.write(f"resuming {out} after epoch {saved.epoch} of {cfg.epochs}")
    t_start = time.perf_counter()
    if writes:
        Path(out).mkdir(parents=True, exist_ok=True)
        _write_history(Path(out), history)
    for epoch in range(first, cfg.epochs + 1):
        if stopped:
            break
        model.train()
        batches = length_batches(lengths, cfg.batch_size, rng)[:steps_per_epoch]
        losses, shares = [], []  # this rank's losses and unit counts: averaged over the ranks once per epoch
        bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False)
        t_epoch = time.perf_counter()
        for step, idx in enumerate(bar):
            mine = idx[my_rank::ranks]  # this rank's share of the global batch
            losses.append(step_fn(*task.batch(mine), weight=len(mine) * ranks / len(idx)))
            shares.append(len(mine))
            sched.step()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        seen = sum(len(b) for b in batches)
        loss = distributed.mean(float(np.average(losses, weights=shares)), float(sum(shares)))
        row = {"epoch": epoch, "loss": loss, "samples": seen, "train_seconds": round(time.perf_counter() - t_epoch, 2),
               "samples_per_second": round(seen / (time.perf_counter() - t_epoch), 1)}
        out_of_time = cfg.max_minutes > 0 and (time.perf_counter() - t_start) / 60 > cfg.max_minutes
        if epoch >= cfg.eval_start or epoch == cfg.epochs or out_of_time:
            model.eval()
            metrics = task.validate(valid, cfg.eval_beam, progress)
            score = combined_score(metrics[cfg.select])
            row.update(valid=metrics["item"], **({"valid_sid": metrics["sid"]} if "sid" in metrics else {}),
                       valid_score=score, valid_seconds=metrics["seconds"])
            if score > best:
                best, best_epoch, stale = score, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        history.append(row)
        if on_epoch is not None and main:
            model.eval()
            on_epoch(epoch, model, row)
        if writes:
            _write_history(Path(out), history)
        if progress:
            msg = f"epoch {epoch}: loss {row['loss']:.4f}, {row['samples_per_second']:.0f} samples/s"
            if "valid" in row:
                v = row["valid"]
                msg += f", valid ndcg@10 {v['ndcg@10']:.4f} recall@10 {v['recall@10']:.4f}"
            tqdm.write(msg)
        stopped = stale >= cfg.patience or out_of_time
        stopped = bool(distributed.broadcast(stopped))  # rank 0's clock decides a time limit for all
        if writes:
            save_state(out, TrainState(epoch, best, best_epoch, stale, stopped, history, best_state),
                       configs, model, opt, sched, gen, rng)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    best_valid = next((r["valid"] for r in history if r["epoch"] == best_epoch), None)
    result = TrainResult(model=model, best_epoch=best_epoch, best_valid=best_valid, history=history)
    if writes:
        save_checkpoint(out, model, cfg, prepared, extra={"best_epoch": best_epoch, "best_valid": best_valid})
        clear_state(out)
    distributed.barrier()  # the other ranks return once rank 0 has written the run
    return result
