"""SASRec: the discriminative baseline every generative recommender has to beat.

A causal Transformer over the item-id history whose last hidden state scores *every* item with a
dot product against the (tied) item embeddings, trained with a full-softmax cross-entropy at every
position (Kang & McAuley 2018, with the cross-entropy loss that later audits found much stronger
than the original sampled binary loss). No semantic IDs: it shows whether the SID machinery earns
its keep on the same split and metrics, which are item level only (it generates no SID).

It is a model kind like the others (``diffgrm train --model sasrec``, ``ModelConfig(kind="sasrec")``):
its sizes are the ModelConfig's (``enc_layers`` blocks of width ``d_model``, feed-forward ``d_ff``),
it trains through the shared loop of :mod:`diffgrm.fit` (:class:`SASRecTask`) and its run folder is
written and read by :mod:`diffgrm.checkpoint`, with the same checks. Training sequences are each
user's training part (the validation history), so the validation and test targets are never
trained on, as for the generative models; a position is scored when its history holds at least
``min_history`` items, the generative models' training samples.

:class:`SASRecConfig`, :func:`train_sasrec`, :func:`load_sasrec` and :func:`evaluate_sasrec` keep
the benchmarks' recipe and calls: the recipe's sizes and optimiser, mapped onto the shared configs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from diffgrm.checkpoint import load_weights, read_config, run_catalogue, saved_configs
from diffgrm.config import ModelConfig, TrainConfig, _Serialisable
from diffgrm.data import Samples
from diffgrm.decode import pad_histories
from diffgrm.errors import DiffGRMError
from diffgrm.fit import train_task
from diffgrm.metrics import ranking_metrics, sid_ranking_metrics
from diffgrm.model import MASK, default_device
from diffgrm.prepare import Prepared

LEGACY_SIZES = {"d_model": "d_model", "n_heads": "n_heads", "n_layers": "enc_layers", "dropout": "dropout",
                "max_history": "max_history"}
"""Where a SASRec run written before SASRec shared the configs kept its sizes: its ``train`` keys
(:attr:`TrainConfig.LEGACY_KEYS`), and the ModelConfig field each one is."""


@dataclass
class SASRecConfig(_Serialisable):
    """The benchmarks' SASRec recipe (the usual Amazon settings, d 64, 2 blocks): :meth:`configs`
    maps it onto the ModelConfig and TrainConfig every model trains with."""

    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    dropout: float = 0.2
    max_history: int = 50
    epochs: int = 40
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 5
    eval_users: int = 0  # validation users per epoch (0 = all)
    # positions whose history is shorter than this are not scored: 1 = every next-item prediction,
    # 2 = the samples of the generative models' default (TrainConfig.min_history)
    min_history: int = 1
    max_minutes: float = 0.0  # 0 = no wall-time cap
    seed: int = 0

    def __post_init__(self) -> None:
        self.configs()  # the shared configs check every value

    def configs(self, n_digits: int = 4, codebook_size: int = 256) -> tuple[ModelConfig, TrainConfig]:
        """The recipe as (model, training) configs: validation every epoch, no label smoothing and no
        warm-up (the learning rate decays along a cosine from its peak)."""
        model = ModelConfig(kind="sasrec", n_digits=n_digits, codebook_size=codebook_size, d_model=self.d_model,
                            n_heads=self.n_heads, d_ff=4 * self.d_model, enc_layers=self.n_layers,
                            dropout=self.dropout, max_history=self.max_history)
        train = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                            warmup_steps=0, label_smoothing=0.0, patience=self.patience, eval_start=1,
                            eval_users=self.eval_users, max_minutes=self.max_minutes, min_history=self.min_history,
                            seed=self.seed)
        return model, train


class SASRec(nn.Module):
    """Item embeddings + learned positions -> causal pre-LN Transformer -> scores over all items."""

    def __init__(self, n_items: int, cfg: ModelConfig | SASRecConfig) -> None:
        super().__init__()
        if isinstance(cfg, SASRecConfig):
            cfg = cfg.configs()[0]
        self.n_items, self.config = n_items, cfg
        self.pad = n_items  # index of the padding row
        self.items = nn.Embedding(n_items + 1, cfg.d_model, padding_idx=self.pad)
        self.pos = nn.Embedding(cfg.max_history, cfg.d_model)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.enc_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    @property
    def cfg(self) -> ModelConfig:
        return self.config

    @property
    def device(self) -> torch.device:
        return self.items.weight.device

    def hidden(self, seq: torch.Tensor) -> torch.Tensor:
        """``seq [B, L]`` left-aligned item indices padded with ``pad`` -> hidden states ``[B, L, d]``.

        The causal mask alone keeps padding (always after the real items) out of every real position.
        """
        L = seq.shape[1]
        x = self.items(seq) * math.sqrt(self.config.d_model) + self.pos(torch.arange(L, device=seq.device))
        causal = torch.triu(torch.ones(L, L, dtype=torch.bool, device=seq.device), diagonal=1)
        return self.norm(self.blocks(self.drop(x), mask=causal))

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """Dot products of hidden states with every (real) item's embedding."""
        return h @ self.items.weight[: self.n_items].T


def _pad(seqs: list[np.ndarray], pad: int, max_len: int) -> torch.Tensor:
    """``pad_histories`` (left-aligned, last ``max_len`` items), with the embedding's padding row."""
    batch = pad_histories(seqs, max_len)
    return batch.masked_fill(batch == MASK, pad)


@torch.no_grad()
def rank_items(model: SASRec, histories: list[np.ndarray], k: int = 10, batch: int = 512,
               device: torch.device | str | None = None, exclude_seen: bool = False) -> np.ndarray:
    """Top-``k`` item indices ``[users, k]`` for each history, best first. ``exclude_seen``
    scores every item of the history (not only the last ``max_history``) ``-inf`` first."""
    model.eval()
    device = model.device if device is None else device
    out = []
    for s in range(0, len(histories), batch):
        hs = histories[s : s + batch]
        seq = _pad(hs, model.pad, model.config.max_history).to(device)
        last = torch.tensor([min(len(h), model.config.max_history) - 1 for h in hs], device=device)
        h = model.hidden(seq)[torch.arange(len(hs), device=device), last]
        scores = model.scores(h)
        if exclude_seen:
            seen = pad_histories(hs, max(len(x) for x in hs), device)
            users = torch.arange(len(hs), device=device)[:, None].expand_as(seen)
            scores[users[seen != MASK], seen[seen != MASK]] = float("-inf")
        out.append(scores.topk(k, dim=-1).indices.cpu().numpy())
    return np.concatenate(out)


def sasrec_metrics(model: SASRec, samples: Samples, exclude_seen: bool = False) -> dict:
    """Item-level Recall/NDCG@5/10 over ``samples`` (every item scored): the SID level is not
    defined for a model that generates no SIDs, so there is no ``"sid"`` entry and no beam."""
    return _ranked_metrics(model, samples, exclude_seen)[0]


def _ranked_metrics(model: SASRec, samples: Samples, exclude_seen: bool) -> tuple[dict, np.ndarray]:
    t0 = time.perf_counter()
    ranked = rank_items(model, samples.histories, k=10, exclude_seen=exclude_seen)
    out = {"item": ranking_metrics(ranked, samples.targets), "users": len(samples), "model": "sasrec",
           "seconds": round(time.perf_counter() - t0, 2)}
    if exclude_seen:
        out["exclude_seen"] = True
    return out, ranked


def training_sequences(prepared: Prepared, min_history: int, max_history: int) -> list[np.ndarray]:
    """Each user's training part (the validation history), its last ``max_history + 1`` items, when
    it holds at least one position with ``min_history`` items before it."""
    seqs = [np.asarray(h)[-(max_history + 1):] for h in prepared.splits["valid"].histories if len(h) > min_history]
    if not seqs:
        raise DiffGRMError(f"no user has {min_history + 1} training items: nothing to train SASRec on")
    return seqs


class SASRecTask:
    """SASRec's training task (:class:`diffgrm.fit.Task`): user sequences, the full-softmax
    cross-entropy at every scored position, validation by ranking every item."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, prepared: Prepared, device: torch.device,
                 generator: torch.Generator | None = None) -> None:
        self.seqs = training_sequences(prepared, cfg.min_history, model_cfg.max_history)
        self.model = SASRec(prepared.n_items, model_cfg).to(device)
        self.cfg, self.device = cfg, device

    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.seqs])

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor]:
        return (_pad([self.seqs[i] for i in idx], self.model.pad, self.model.config.max_history + 1).to(self.device),)

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        inp, tgt = batch[:, :-1], batch[:, 1:]
        real = tgt != self.model.pad  # score only positions whose next item is real, not padding
        real[:, : self.cfg.min_history - 1] = False  # and whose history is long enough
        logits = self.model.scores(self.model.hidden(inp)[real])
        return nn.functional.cross_entropy(logits, tgt[real], label_smoothing=self.cfg.label_smoothing)

    def validate(self, samples: Samples, beam: int, progress: bool) -> dict:
        return sasrec_metrics(self.model, samples)


def load_sasrec_run(run: str | Path, data: str | Path | None = None, device: str | torch.device | None = None,
                    users: bool = True) -> tuple[SASRec, Prepared, dict]:
    """A SASRec run's model, catalogue (with its users unless ``users`` is false) and metadata, with
    the checks of every run: the catalogue's fingerprint, the weights' sha256, the configs' keys.
    Reads runs written before SASRec shared the configs too (no catalogue of their own: they need
    the prepared folder they were trained on, found by fingerprint)."""
    run = Path(run)
    meta = read_config(run)
    if meta["model"].get("kind") != "sasrec":
        raise DiffGRMError(f"{run} is not a SASRec run (its model is {meta['model'].get('kind')!r})")
    prepared = run_catalogue(run, meta, data, users=users)
    cat, saved = prepared.catalogue, meta
    if "n_items" in meta["model"]:  # the older layout: sizes among the training settings, feed-forward 4 d
        if meta["model"]["n_items"] != prepared.n_items:
            raise DiffGRMError(f"{run / 'config.json'} was trained on {meta['model']['n_items']} items, its "
                               f"catalogue holds {prepared.n_items}: the run folder is inconsistent")
        d_model = (meta.get("train") or {}).get("d_model", SASRecConfig.d_model)
        saved = {**meta, "model": {"d_ff": 4 * d_model, **meta["model"]}}
    model_cfg, _ = saved_configs(run, saved, cat.n_digits, cat.codebook_size, renamed=LEGACY_SIZES)
    model = SASRec(prepared.n_items, model_cfg)
    return load_weights(run, meta, model, default_device(device)), prepared, meta


# --------------------------------------------------------------------------- the benchmarks' calls


def train_sasrec(prepared: Prepared, cfg: SASRecConfig = SASRecConfig(), out: str | Path | None = None, *,
                 device: str | torch.device | None = None, progress: bool = True,
                 force: bool = False) -> tuple[SASRec, list[dict]]:
    """Train the recipe ``cfg`` (see :meth:`SASRecConfig.configs`) through the shared loop; with
    ``out``, into a run folder like every other (resumable, checked on load)."""
    model_cfg, train_cfg = cfg.configs(prepared.catalogue.n_digits, prepared.catalogue.codebook_size)
    result = train_task(SASRecTask, prepared, model_cfg, train_cfg, out, device=device, progress=progress, force=force)
    return result.model, result.history


def load_sasrec(run: str | Path, device: str | torch.device = "cpu") -> SASRec:
    """The model of a SASRec run, checked (:func:`load_sasrec_run`) without reading its users."""
    return load_sasrec_run(run, device=device, users=False)[0]


def evaluate_sasrec(model: SASRec, samples: Samples, codes: np.ndarray, device: torch.device | str | None = None,
                    exclude_seen: bool = False) -> dict:
    """:func:`sasrec_metrics` plus, for the benchmarks' tables, ``"sid"``: the ranked items' SIDs
    against the target's (equal to the item level on a one-to-one catalogue), and ``"beam": 0``."""
    if device is not None:
        model = model.to(device)
    out, ranked = _ranked_metrics(model, samples, exclude_seen)
    out.update(sid=sid_ranking_metrics(codes[ranked], codes[samples.targets]), beam=0)
    return out
