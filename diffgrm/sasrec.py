"""SASRec: the discriminative baseline every generative recommender has to beat.

A causal Transformer over the item-id history whose last hidden state scores *every* item with a
dot product against the (tied) item embeddings, trained with a full-softmax cross-entropy at every
position (Kang & McAuley 2018, with the cross-entropy loss that later audits found much stronger
than the original sampled binary loss). No semantic IDs: it is here so that `bench/quality.py`
can show whether the SID machinery earns its keep on the same split and metrics.

Training sequences are each user's training part (the validation history), so the validation and
test targets are never trained on, as for the generative models.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from diffgrm.config import _Serialisable
from diffgrm.data import Samples
from diffgrm.decode import pad_histories
from diffgrm.errors import DiffGRMError
from diffgrm.metrics import combined_score, ranking_metrics, sid_ranking_metrics
from diffgrm.model import MASK, default_device
from diffgrm.prepare import Prepared
from diffgrm.safeio import (atomic_write, file_checksums, load_tensors, read_json, require_keys, verify_checksums,
                            write_json, write_text)
from diffgrm.train import subsample


@dataclass
class SASRecConfig(_Serialisable):
    """Sizes and optimiser of SASRec; the defaults are the usual Amazon settings (d 64, 2 blocks)."""

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
        if self.d_model % self.n_heads:
            raise DiffGRMError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if min(self.d_model, self.n_layers, self.max_history, self.epochs, self.batch_size, self.min_history) < 1:
            raise DiffGRMError("SASRec sizes, epochs and batch size must be positive")


class SASRec(nn.Module):
    """Item embeddings + learned positions -> causal pre-LN Transformer -> scores over all items."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.n_items, self.cfg = n_items, cfg
        self.pad = n_items  # index of the padding row
        self.items = nn.Embedding(n_items + 1, cfg.d_model, padding_idx=self.pad)
        self.pos = nn.Embedding(cfg.max_history, cfg.d_model)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, 4 * cfg.d_model, cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def hidden(self, seq: torch.Tensor) -> torch.Tensor:
        """``seq [B, L]`` left-aligned item indices padded with ``pad`` -> hidden states ``[B, L, d]``.

        The causal mask alone keeps padding (always after the real items) out of every real position.
        """
        L = seq.shape[1]
        x = self.items(seq) * math.sqrt(self.cfg.d_model) + self.pos(torch.arange(L, device=seq.device))
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
               device: torch.device | str = "cpu", exclude_seen: bool = False) -> np.ndarray:
    """Top-``k`` item indices ``[users, k]`` for each history, best first. ``exclude_seen``
    scores every item of the history (not only the last ``max_history``) ``-inf`` first."""
    model.eval()
    out = []
    for s in range(0, len(histories), batch):
        hs = histories[s : s + batch]
        seq = _pad(hs, model.pad, model.cfg.max_history).to(device)
        last = torch.tensor([min(len(h), model.cfg.max_history) - 1 for h in hs], device=device)
        h = model.hidden(seq)[torch.arange(len(hs), device=device), last]
        scores = model.scores(h)
        if exclude_seen:
            seen = pad_histories(hs, max(len(x) for x in hs), device)
            users = torch.arange(len(hs), device=device)[:, None].expand_as(seen)
            scores[users[seen != MASK], seen[seen != MASK]] = float("-inf")
        out.append(scores.topk(k, dim=-1).indices.cpu().numpy())
    return np.concatenate(out)


def evaluate_sasrec(model: SASRec, samples: Samples, codes: np.ndarray, device: torch.device | str = "cpu",
                    exclude_seen: bool = False) -> dict:
    """The same metrics dict as ``Recommender.evaluate``: item level and SID level, Recall/NDCG@5/10."""
    t0 = time.perf_counter()
    ranked = rank_items(model, samples.histories, k=10, device=device, exclude_seen=exclude_seen)
    out = {"item": ranking_metrics(ranked, samples.targets),
           "sid": sid_ranking_metrics(codes[ranked], codes[samples.targets]),
           "beam": 0, "users": len(samples), "model": "sasrec", "seconds": round(time.perf_counter() - t0, 2)}
    if exclude_seen:
        out["exclude_seen"] = True
    return out


def train_sasrec(prepared: Prepared, cfg: SASRecConfig = SASRecConfig(), out: str | Path | None = None, *,
                 device: str | torch.device | None = None, progress: bool = True) -> tuple[SASRec, list[dict]]:
    """Train on every user's training part, keep the epoch with the best validation score."""
    device = default_device(device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    valid_all = prepared.splits["valid"]
    seqs = [np.asarray(h)[-(cfg.max_history + 1):] for h in valid_all.histories if len(h) > cfg.min_history]
    if not seqs:
        raise DiffGRMError(f"no user has {cfg.min_history + 1} training items: nothing to train SASRec on")
    valid = subsample(valid_all, cfg.eval_users, cfg.seed)
    model = SASRec(prepared.n_items, cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    codes = prepared.catalogue.codes
    order = np.argsort([len(s) for s in seqs], kind="stable")
    history, best, best_state, stale, t_start = [], -1.0, None, 0, time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        # batches of similar length (shuffled within and across), so padding stays small
        chunks = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        rng.shuffle(chunks)
        t0, losses = time.perf_counter(), []
        for idx in tqdm(chunks, desc=f"sasrec epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False):
            batch = _pad([seqs[i] for i in idx], model.pad, cfg.max_history + 1).to(device)
            inp, tgt = batch[:, :-1], batch[:, 1:]
            real = tgt != model.pad  # score only positions whose next item is real, not padding
            real[:, : cfg.min_history - 1] = False  # and whose history is long enough
            loss = nn.functional.cross_entropy(model.scores(model.hidden(inp)[real]), tgt[real])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        metrics = evaluate_sasrec(model, valid, codes, device)
        score = combined_score(metrics["item"])
        row = {"epoch": epoch, "loss": float(np.mean(losses)), "train_seconds": round(time.perf_counter() - t0, 1),
               "valid": metrics["item"], "valid_score": score}
        history.append(row)
        if progress:
            tqdm.write(f"sasrec epoch {epoch}: loss {row['loss']:.4f}, valid ndcg@10 {metrics['item']['ndcg@10']:.4f}")
        if score > best:
            best, stale, best_state = score, 0, copy.deepcopy(model.state_dict())
            row["best"] = True
        else:
            stale += 1
        out_of_time = cfg.max_minutes > 0 and (time.perf_counter() - t_start) / 60 > cfg.max_minutes
        if stale >= cfg.patience or out_of_time:
            break
    model.load_state_dict(best_state)
    model.eval()
    if out is not None:
        save_sasrec(out, model, prepared, history)
    return model, history


def save_sasrec(run: str | Path, model: SASRec, prepared: Prepared, history: list[dict]) -> Path:
    """Weights as safetensors, config and training history as JSON (nothing is pickled)."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write(run / "model.safetensors", lambda p: save_file(tensors, str(p)))
    meta = {"model": {"kind": "sasrec", "n_items": model.n_items}, "train": model.cfg.to_dict(),
            "fingerprint": prepared.catalogue.fingerprint, "data": str(Path(prepared.path).resolve()),
            "sha256": file_checksums(run, ("model.safetensors",))}  # checked by load_sasrec
    write_text(run / "history.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    write_json(run / "config.json", meta)  # last: a folder with config.json is complete
    return run


def load_sasrec(run: str | Path, device: str | torch.device = "cpu") -> SASRec:
    run = Path(run)
    if not (run / "model.safetensors").is_file() or not (run / "config.json").is_file():
        raise DiffGRMError(f"{run} holds no SASRec checkpoint (model.safetensors + config.json)")
    meta = read_json(run / "config.json")
    if not isinstance(meta.get("model"), dict) or meta["model"].get("kind") != "sasrec":
        raise DiffGRMError(f"{run} is not a SASRec run")
    require_keys(meta, ["train"], run / "config.json")
    try:
        model = SASRec(int(meta["model"]["n_items"]), SASRecConfig.from_dict(meta["train"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise DiffGRMError(f"{run / 'config.json'}: the model settings are damaged ({exc})") from None
    verify_checksums(run, meta.get("sha256"), run / "config.json", "restore the file or retrain the run")
    weights = load_tensors(run / "model.safetensors", framework="torch")
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise DiffGRMError(f"{run / 'model.safetensors'} does not match {run / 'config.json'}; retrain the run "
                           f"({str(exc).splitlines()[-1].strip()[:160]})") from None
    return model.to(device).eval()
