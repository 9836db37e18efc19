"""Training: AdamW, warm-up + cosine, gradient clipping, early stopping, checkpoints.

A run folder holds ``model.safetensors`` (weights, no pickled code), ``config.json`` (model and
training configs, the catalogue's fingerprint, where its users' interactions came from, the package
version, the sha256 of ``model.safetensors``, which :func:`load_run` checks), ``history.jsonl`` (one
line per epoch: loss, validation metrics, time) and ``catalogue/``, its own SIDs and items
(:mod:`diffgrm.portable`), so that it decodes on any machine.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm

from diffgrm import __version__, distributed
from diffgrm.config import ModelConfig, TrainConfig
from diffgrm.data import Samples
from diffgrm.decode import Recommender, pad_histories
from diffgrm.errors import DiffGRMError
from diffgrm.metrics import combined_score, popularity_metrics
from diffgrm.model import ARGenerator, DiffGRM, GenerativeRecommender, build_model, default_device
from diffgrm.ocn import ocn_loss
from diffgrm.portable import CATALOGUE, RUN_FORMAT, dataset_name, load_run_data, write_catalogue
from diffgrm.prepare import Prepared, load_prepared
from diffgrm.resume import TrainState, clear_state, load_state, run_folder, save_state
from diffgrm.safeio import (atomic_write, file_checksums, load_tensors, read_json, require_keys, verify_checksums,
                            write_json, write_text)


def ar_loss(model: ARGenerator, history: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Teacher-forced, label-smoothed cross-entropy over all n digits."""
    memory, keep = model.encode(history)
    logits = model.teacher_logits(targets[:, None, :], model.cross_kv(memory), keep)
    k = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, k), targets.reshape(-1), label_smoothing=label_smoothing)


class _Loss(torch.nn.Module):
    """The training loss as a module, so that ``DistributedDataParallel`` can wrap it: it
    averages the gradients of whatever the forward used (OCN's confidence pass runs inside, per
    rank, without gradients)."""

    def __init__(self, model: GenerativeRecommender, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, hist: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.fn(hist, targets)


def make_step(model: GenerativeRecommender, cfg: TrainConfig, opt: torch.optim.Optimizer,
              generator: torch.Generator | None = None) -> Callable[..., float]:
    """One optimiser step on a batch ``(history [B, L], target SIDs [B, n], weight)``; returns the loss.

    The loss runs under autocast for ``bf16``/``fp16`` (fp16 with a gradient scaler, on CUDA
    only); clipping and the update stay in fp32. (``torch.compile`` of the loss was measured
    slower on the CPU, 462 against 610 samples/s: bench/train_step.py, so it is not offered.)
    Under torchrun the loss goes through ``DistributedDataParallel``; ``weight`` (this rank's
    share of the global batch times the number of ranks) makes the averaged gradient that of
    the whole batch when the shares differ by one sample.
    """
    device = model.device
    if cfg.precision == "fp16" and device.type != "cuda":
        raise DiffGRMError("precision fp16 needs a CUDA GPU; use bf16 or fp32 on this device")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None

    def loss_fn(hist: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if isinstance(model, DiffGRM):
            return ocn_loss(model, hist, targets, strategy=cfg.noising, label_smoothing=cfg.label_smoothing,
                            generator=generator, views=cfg.ocn_views, pick=cfg.ocn_pick)
        return ar_loss(model, hist, targets, cfg.label_smoothing)

    forward = loss_fn
    if distributed.active():
        from torch.nn.parallel import DistributedDataParallel

        # the only buffers are the catalogue's codes, constant: broadcasting them every step (megabytes
        # for a large catalogue) would cost more than the gradients
        forward = DistributedDataParallel(_Loss(model, loss_fn), device_ids=[device] if device.type == "cuda" else None,
                                          broadcast_buffers=False, gradient_as_bucket_view=True)

    def step(hist: torch.Tensor, targets: torch.Tensor, weight: float = 1.0) -> float:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = forward(hist, targets)
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


def training_samples(prepared: Prepared, min_history: int) -> Samples:
    """The training split's samples with at least ``min_history`` history items.

    ``prepare`` writes every prefix with one or more history items; folders prepared by older
    versions start at two, and asking them for one is refused rather than silently ignored.
    """
    data = prepared.splits["train"]
    if len(data) == 0:
        raise DiffGRMError("the training split is empty")
    if min_history < prepared.train_min_history:
        raise DiffGRMError(
            f"{prepared.path}'s training split starts at {prepared.train_min_history} history items, so "
            f"min_history={min_history} cannot be honoured; prepare the data again with this version of diffgrm"
        )
    lengths = np.fromiter((len(h) for h in data.histories), dtype=np.int64, count=len(data))
    keep = np.flatnonzero(lengths >= min_history)
    if len(keep) == len(data):
        return data
    return Samples([data.histories[i] for i in keep], data.targets[keep], data.users[keep])


def popularity_baseline(prepared: Prepared, samples: Samples, exclude_seen: bool = False) -> dict[str, float]:
    """Item-level metrics on ``samples`` of recommending the most frequent training targets to
    everyone (``exclude_seen``: minus each user's history): the number every run's score is shown beside."""
    return popularity_metrics(prepared.splits["train"].targets, samples.targets, prepared.n_items,
                              histories=samples.histories if exclude_seen else None)


def evaluate_split(model: GenerativeRecommender, prepared: Prepared, split: str = "test", *, users: int = 0,
                   beam: int = 32, order: str = "confidence", passes: int | None = None,
                   progress: bool = True, exclude_seen: bool = False) -> dict:
    """A run's metrics on one split (``users`` > 0: a fixed subsample) beside popularity's, in the
    form ``RUN/metrics.json`` keeps them (what the explorer's sidebar reads). ``exclude_seen``
    keeps each user's history out of the Top-K, popularity's included."""
    if split not in prepared.splits:
        raise DiffGRMError(f"no split {split!r} in {prepared.path} (have {', '.join(prepared.splits)})")
    samples = subsample(prepared.splits[split], users, seed=0)
    metrics = Recommender(model).evaluate(samples, beam=beam, order=order, progress=progress, passes=passes,
                                          exclude_seen=exclude_seen)
    metrics.update(split=split, order=order if model.config.kind == "diffgrm" else "left-to-right",
                   passes=passes or model.config.n_digits, exclude_seen=exclude_seen,
                   popularity=popularity_baseline(prepared, samples, exclude_seen))
    return metrics


@dataclass
class TrainResult:
    model: GenerativeRecommender
    best_epoch: int
    best_valid: dict | None
    history: list[dict]


def train(prepared: Prepared, model_cfg: ModelConfig, cfg: TrainConfig, out: str | Path | None = None, *,
          device: str | torch.device | None = None, progress: bool = True, force: bool = False,
          on_epoch: Callable[[int, GenerativeRecommender, dict], None] | None = None) -> TrainResult:
    """Train on ``prepared``'s training split, validate with the model's own decoder, keep the best.

    ``out`` must be new, empty, or an unfinished run with the same settings (which continues
    after its last epoch); a finished or different run there is replaced, as a whole, only with
    ``force``, and only once the new run is complete (see :func:`diffgrm.resume.run_folder`).
    ``on_epoch(epoch, model, row)`` is called after every epoch (row = that epoch's history
    line), for notebooks that watch the model learn; the model is in eval mode during it.
    """
    device = distributed.setup(device) or default_device(device)
    if out is None:
        return _fit(prepared, model_cfg, cfg, None, device, progress, on_epoch)
    configs = run_configs(model_cfg, cfg, prepared)
    with run_folder(out, configs, force=force, inputs=(prepared.path,), main=distributed.is_main()) as work:
        return _fit(prepared, model_cfg, cfg, work, device, progress, on_epoch)


def run_configs(model_cfg: ModelConfig, cfg: TrainConfig, prepared: Prepared) -> dict:
    """What a resume state must match to be continued."""
    return {"model": model_cfg.to_dict(), "train": cfg.to_dict(), "fingerprint": prepared.catalogue.fingerprint}


def _fit(prepared: Prepared, model_cfg: ModelConfig, cfg: TrainConfig, out: Path | None, device: torch.device,
         progress: bool, on_epoch: Callable[[int, GenerativeRecommender, dict], None] | None) -> TrainResult:
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
    cat = prepared.catalogue
    if (model_cfg.n_digits, model_cfg.codebook_size) != (cat.n_digits, cat.codebook_size):
        raise DiffGRMError("the model config does not match the catalogue's digits / codebook size")
    model = build_model(model_cfg, torch.from_numpy(cat.codes)).to(device)
    data = training_samples(prepared, cfg.min_history)
    valid = subsample(prepared.splits["valid"], cfg.eval_users, cfg.seed)
    steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
    if cfg.max_steps:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps)
    total = steps_per_epoch * cfg.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(min(cfg.warmup_steps, total // 2), total))
    step_fn = make_step(model, cfg, opt, gen)
    lengths = np.minimum([len(h) for h in data.histories], model_cfg.max_history)
    targets_all = torch.from_numpy(cat.codes[data.targets]).to(device)

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
        write_text(Path(out) / "history.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    for epoch in range(first, cfg.epochs + 1):
        if stopped:
            break
        model.train()
        batches = length_batches(lengths, cfg.batch_size, rng)[:steps_per_epoch]
        losses, shares = [], []  # this rank's losses and sample counts: averaged over the ranks once per epoch
        bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False)
        t_epoch = time.perf_counter()
        for step, idx in enumerate(bar):
            mine = idx[my_rank::ranks]  # this rank's share of the global batch
            hist = pad_histories([data.histories[i] for i in mine], model_cfg.max_history, device)
            targets = targets_all[torch.from_numpy(mine).to(device)]
            loss = step_fn(hist, targets, len(mine) * ranks / len(idx))
            losses.append(loss)
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
            metrics = Recommender(model).evaluate(valid, beam=cfg.eval_beam, progress=progress, desc="validate")
            score = combined_score(metrics[cfg.select])
            row.update(valid=metrics["item"], valid_sid=metrics["sid"], valid_score=score,
                       valid_seconds=metrics["seconds"])
            if score > best:
                best, best_epoch, stale = score, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        history.append(row)
        if on_epoch is not None and main:
            model.eval()
            on_epoch(epoch, model, row)
        if writes:  # rewritten whole: an interrupt leaves the previous complete file
            write_text(Path(out) / "history.jsonl", "".join(json.dumps(r) + "\n" for r in history))
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


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(run: str | Path, model: GenerativeRecommender, cfg: TrainConfig, prepared: Prepared,
                    extra: dict | None = None) -> Path:
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    atomic_write(run / "model.safetensors", lambda p: save_model(model, str(p)))
    write_catalogue(prepared, run)
    meta = {
        "model": model.config.to_dict(),
        "train": cfg.to_dict(),
        "fingerprint": prepared.catalogue.fingerprint,
        "data": prepared.source,
        "dataset": dataset_name(prepared),
        "format": RUN_FORMAT,
        "diffgrm_version": __version__,
        **(extra or {}),
        "sha256": file_checksums(run, ("model.safetensors",)),  # checked by load_run: a flipped byte is an error
    }
    write_json(run / "config.json", meta)  # written last: a run folder with config.json is complete
    return run


def load_run(run: str | Path, data: str | Path | None = None,
             device: str | torch.device | None = None) -> tuple[GenerativeRecommender, Prepared, dict]:
    """Model, catalogue with users, and metadata of a run. The run's own catalogue decodes; its users
    come from ``data`` (a prepared folder, a dataset folder or name) or from where it recorded them.
    A damaged or mismatched checkpoint is one clear error."""
    run = Path(run)
    if not (run / "model.safetensors").is_file() or not (run / "config.json").is_file():
        hint = " (an unfinished run: train again with the same settings to continue it)" if (run / "resume.json").is_file() else ""
        raise DiffGRMError(f"{run} holds no checkpoint (model.safetensors + config.json){hint}; "
                           "train one with `diffgrm train`")
    meta = read_json(run / "config.json")
    require_keys(meta, ["model", "fingerprint", "data"], run / "config.json")
    if (run / CATALOGUE).is_dir():  # a run that carries its catalogue: its users are matched by item id
        prepared = load_run_data(run, meta, data)
    else:
        prepared = _load_legacy_data(run, meta, data)
    device = default_device(device)
    try:
        model_cfg = ModelConfig.from_dict(meta["model"])
        model = build_model(model_cfg, torch.from_numpy(prepared.catalogue.codes))
    except (TypeError, ValueError, AttributeError) as exc:
        raise DiffGRMError(f"{run / 'config.json'}: the model settings are damaged ({exc})") from None
    verify_checksums(run, meta.get("sha256"), run / "config.json", "restore the file or retrain the run")
    load_tensors(run / "model.safetensors", framework="torch")  # a damaged file: its own clear error
    try:
        load_model(model, str(run / "model.safetensors"), device=str(device))  # re-ties shared weights
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise DiffGRMError(f"{run / 'model.safetensors'} does not match {run / 'config.json'} ({detail[:160]}); "
                           "the run folder is inconsistent: retrain it") from None
    return model.to(device).eval(), prepared, meta


def _load_legacy_data(run: Path, meta: dict, data: str | Path | None) -> Prepared:
    """A run written before runs carried their catalogue: it decodes only with the prepared folder of
    the very SIDs it was trained on."""
    if data is None and not Path(meta["data"]).is_dir():
        raise DiffGRMError(f"the data this run was trained on ({meta['data']}, from {run / 'config.json'}) is gone; "
                           "pass --data with the prepared folder")
    prepared = load_prepared(data or meta["data"])
    if prepared.catalogue.fingerprint != meta["fingerprint"]:
        raise DiffGRMError(
            f"the checkpoint in {run} was trained on another catalogue (fingerprint {meta['fingerprint']}, "
            f"data has {prepared.catalogue.fingerprint}) and carries no catalogue of its own (an older diffgrm "
            "wrote it); prepare the same data on the machine that trained it, or retrain"
        )
    return prepared
