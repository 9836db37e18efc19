"""Training and loading the SID models (DiffGRM and AR), and the entry points for every model.

:func:`train` trains any :data:`diffgrm.config.MODEL_KINDS` kind through the one loop of
:mod:`diffgrm.fit` (AdamW, warm-up + cosine, gradient clipping, early stopping, resume) into a run
folder (:mod:`diffgrm.checkpoint`: safetensors and JSON, with its own catalogue); :func:`load_run`
reads a run back with every check, and :func:`evaluate_split` scores it beside popularity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from diffgrm.checkpoint import load_weights, read_config, run_catalogue, save_checkpoint, saved_configs
from diffgrm.config import ModelConfig, TrainConfig
from diffgrm.data import Samples
from diffgrm.decode import Recommender, pad_histories
from diffgrm.errors import DiffGRMError
from diffgrm.fit import TrainResult, length_batches, lr_lambda, optimizer_step, run_configs, subsample, train_task
from diffgrm.metrics import popularity_metrics
from diffgrm.model import ARGenerator, DiffGRM, GenerativeRecommender, build_model, default_device
from diffgrm.ocn import ocn_loss
from diffgrm.prepare import Prepared
from diffgrm.sasrec import SASRec, SASRecTask, load_sasrec_run, sasrec_metrics
from diffgrm.trace import check_beam

__all__ = ["TrainResult", "ar_loss", "evaluate_split", "length_batches", "load_run", "lr_lambda", "make_step",
           "popularity_baseline", "run_configs", "save_checkpoint", "subsample", "train", "training_samples"]


def ar_loss(model: ARGenerator, history: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Teacher-forced, label-smoothed cross-entropy over all n digits."""
    memory, keep = model.encode(history)
    logits = model.teacher_logits(targets[:, None, :], model.cross_kv(memory), keep)
    k = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, k), targets.reshape(-1), label_smoothing=label_smoothing)


def sid_loss(model: GenerativeRecommender, cfg: TrainConfig,
             generator: torch.Generator | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss of a SID model on ``(history [B, L], target SIDs [B, n])``: OCN's (or an
    ablation's) for DiffGRM, teacher forcing for AR."""
    def loss_fn(hist: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if isinstance(model, DiffGRM):
            return ocn_loss(model, hist, targets, strategy=cfg.noising, label_smoothing=cfg.label_smoothing,
                            generator=generator, views=cfg.ocn_views, pick=cfg.ocn_pick)
        return ar_loss(model, hist, targets, cfg.label_smoothing)
    return loss_fn


def make_step(model: GenerativeRecommender, cfg: TrainConfig, opt: torch.optim.Optimizer,
              generator: torch.Generator | None = None) -> Callable[..., float]:
    """One optimiser step of a SID model on a batch ``(history [B, L], target SIDs [B, n])``;
    returns the loss (:func:`diffgrm.fit.optimizer_step`: autocast, clipping, torchrun)."""
    return optimizer_step(model, cfg, opt, sid_loss(model, cfg, generator), model.device)


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


def evaluate_split(model: GenerativeRecommender | SASRec, prepared: Prepared, split: str = "test", *, users: int = 0,
                   beam: int = 32, order: str = "confidence", passes: int | None = None,
                   progress: bool = True, exclude_seen: bool = False) -> dict:
    """A run's metrics on one split (``users`` > 0: a fixed subsample) beside popularity's, in the
    form ``RUN/metrics.json`` keeps them (what the explorer's sidebar reads). ``exclude_seen``
    keeps each user's history out of the Top-K, popularity's included. A SASRec model scores
    every item: its metrics are item level only (it generates no SIDs), with no beam or order."""
    if split not in prepared.splits:
        raise DiffGRMError(f"no split {split!r} in {prepared.path} (have {', '.join(prepared.splits)})")
    samples = subsample(prepared.splits[split], users, seed=0)
    if isinstance(model, SASRec):
        metrics = sasrec_metrics(model, samples, exclude_seen=exclude_seen)
        metrics.update(split=split, exclude_seen=exclude_seen)
    else:
        metrics = Recommender(model).evaluate(samples, beam=beam, order=order, progress=progress, passes=passes,
                                              exclude_seen=exclude_seen)
        metrics.update(split=split, order=order if isinstance(model, DiffGRM) else "left-to-right",
                       passes=passes or model.config.n_digits, exclude_seen=exclude_seen)
    metrics["popularity"] = popularity_baseline(prepared, samples, exclude_seen)
    return metrics


class SIDTask:
    """The training task of the SID models (:class:`diffgrm.fit.Task`): samples of a history and
    its next item's SID, the OCN (DiffGRM) or teacher-forced (AR) loss, validation by the model's
    own decoder at the config's beam."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, prepared: Prepared, device: torch.device,
                 generator: torch.Generator) -> None:
        cat = prepared.catalogue
        if (model_cfg.n_digits, model_cfg.codebook_size) != (cat.n_digits, cat.codebook_size):
            raise DiffGRMError("the model config does not match the catalogue's digits / codebook size")
        self.model = build_model(model_cfg, torch.from_numpy(cat.codes)).to(device)
        self.data = training_samples(prepared, cfg.min_history)
        self.max_history, self.device = model_cfg.max_history, device
        self.targets = torch.from_numpy(cat.codes[self.data.targets]).to(device)
        self.loss = sid_loss(self.model, cfg, generator)

    def lengths(self) -> np.ndarray:
        return np.minimum([len(h) for h in self.data.histories], self.max_history)

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        hist = pad_histories([self.data.histories[i] for i in idx], self.max_history, self.device)
        return hist, self.targets[torch.from_numpy(idx).to(self.device)]

    def validate(self, samples: Samples, beam: int, progress: bool) -> dict:
        return Recommender(self.model).evaluate(samples, beam=beam, progress=progress, desc="validate")


def check_configs(model_cfg: ModelConfig, cfg: TrainConfig) -> None:
    """What the two configs must agree on, checked before anything is loaded or trained."""
    if model_cfg.kind == "sasrec" and cfg.select != "item":
        raise DiffGRMError("SASRec ranks item ids and generates no SIDs: its checkpoint is chosen at item level "
                           "(--select item)")
    if model_cfg.kind != "sasrec":
        check_beam(cfg.eval_beam, 10)  # validation reads the Top-10


def train(prepared: Prepared, model_cfg: ModelConfig, cfg: TrainConfig, out: str | Path | None = None, *,
          device: str | torch.device | None = None, progress: bool = True, force: bool = False,
          on_epoch: Callable[[int, torch.nn.Module, dict], None] | None = None) -> TrainResult:
    """Train ``model_cfg.kind`` on ``prepared``'s training split, validate, keep the best epoch.

    DiffGRM and AR validate with their own decoder (CPD, the AR beam); SASRec scores every item.
    ``out`` must be new, empty, or an unfinished run with the same settings (which continues
    after its last epoch); a finished or different run there is replaced, as a whole, only with
    ``force``, and only once the new run is complete (see :func:`diffgrm.resume.run_folder`).
    ``on_epoch(epoch, model, row)`` is called after every epoch (row = that epoch's history
    line), for notebooks that watch the model learn; the model is in eval mode during it.
    """
    check_configs(model_cfg, cfg)
    make_task = SASRecTask if model_cfg.kind == "sasrec" else SIDTask
    return train_task(make_task, prepared, model_cfg, cfg, out, device=device, progress=progress, force=force,
                      on_epoch=on_epoch)


def load_run(run: str | Path, data: str | Path | None = None, device: str | torch.device | None = None, *,
             sasrec: bool = False) -> tuple[GenerativeRecommender, Prepared, dict]:
    """Model, catalogue with users, and metadata of a run. The run's own catalogue decodes; its users
    come from ``data`` (a prepared folder, a dataset folder or name) or from where it recorded them.
    A damaged or mismatched checkpoint is one clear error. A SASRec run (``sasrec=True`` accepts
    one) gives a :class:`diffgrm.sasrec.SASRec`: it ranks items, it decodes no SIDs."""
    run = Path(run)
    meta = read_config(run)
    if meta["model"].get("kind") == "sasrec":
        if not sasrec:
            raise DiffGRMError(f"{run} is a SASRec run: it ranks item ids and has no SIDs to decode or explain; "
                               "`diffgrm evaluate` scores it, the rest needs a DiffGRM or AR run")
        return load_sasrec_run(run, data=data, device=device)
    prepared = run_catalogue(run, meta, data)
    device = default_device(device)
    model_cfg, _ = saved_configs(run, meta, prepared.catalogue.n_digits, prepared.catalogue.codebook_size)
    try:
        model = build_model(model_cfg, torch.from_numpy(prepared.catalogue.codes))
    except (TypeError, ValueError, AttributeError) as exc:
        raise DiffGRMError(f"{run / 'config.json'}: the model settings are damaged ({exc})") from None
    return load_weights(run, meta, model, device), prepared, meta
