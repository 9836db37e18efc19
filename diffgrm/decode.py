"""A trained network plus its catalogue: Top-K recommendations and evaluation.

This is the only place where the network meets the decoders: it encodes histories once, caches
the cross-attention keys/values, and hands CPD (or the AR beam) a function from partial SIDs to
log-probabilities. The decoders never see the network, the network never sees a beam.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from diffgrm import distributed
from diffgrm.ar import ar_search
from diffgrm.cpd import cpd_search
from diffgrm.data import Samples
from diffgrm.errors import DiffGRMError
from diffgrm.metrics import ranking_metrics, sid_ranking_metrics
from diffgrm.model import MASK, ARGenerator, DiffGRM, GenerativeRecommender, reorder_cache
from diffgrm.sid_index import SIDIndex
from diffgrm.trace import SearchResult


def pad_histories(histories: Sequence[np.ndarray], max_len: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Left-aligned item indices ``[B, L]`` padded with ``MASK`` to the batch's longest history."""
    hs = [np.asarray(h, dtype=np.int64)[-max_len:] for h in histories]
    if any(len(h) == 0 for h in hs):
        raise DiffGRMError("a history is empty: a user needs at least one past item")
    out = np.full((len(hs), max(len(h) for h in hs)), MASK, dtype=np.int64)
    for i, h in enumerate(hs):
        out[i, : len(h)] = h
    return torch.from_numpy(out).to(device)


class Recommender:
    """Generates Top-K items for histories with CPD (DiffGRM) or the trie beam (AR)."""

    def __init__(self, model: GenerativeRecommender, index: SIDIndex | None = None) -> None:
        self.model = model.eval()
        c = model.config
        # the AR decoder asks about prefixes only: its index holds n + 1 patterns per item, not 2 ** n
        subsets = "prefix" if isinstance(model, ARGenerator) else "all"
        self.index = index or SIDIndex(model.item_codes.cpu(), c.codebook_size, subsets=subsets)

    @property
    def kind(self) -> str:
        return self.model.config.kind

    @torch.no_grad()
    def search(self, histories: Sequence[np.ndarray], *, beam: int = 32, topk: int = 10, order: str = "confidence",
               trace: bool = False, seed: int = 0, constrain: bool = True, kv_cache: bool = True,
               passes: int | None = None, exclude_seen: bool = False, on_step=None) -> SearchResult:
        """Top-K for each history. ``order`` and ``passes`` (CPD only): confidence, fixed or random
        fill order, and the number of network passes (1..n, default n: one digit per pass). ``kv_cache``
        (AR only): compute one new slot per step from cached keys/values (the default), or the
        whole prefix at every step (the same results, for checking).

        ``constrain=False`` lets beams leave the catalogue (SIDs naming no item are dropped at the
        end, so fewer than K items may come back): the ablation that shows why the mask matters.

        ``exclude_seen`` keeps each user's history items (all of them, not only the last
        ``max_history``) out of the Top-K inside the search: their slots go to the next best items.

        ``on_step(step, tokens, scores)`` sees the beams after every step (``cpd.StepHook``).
        """
        n_items = self.model.item_codes.shape[0]
        for h in histories:
            if len(h) and (np.min(h) < 0 or np.max(h) >= n_items):
                raise DiffGRMError(f"a history holds an item index outside 0..{n_items - 1}")
        hist = pad_histories(histories, self.model.config.max_history, self.model.device)
        seen = pad_histories(histories, max(len(h) for h in histories), self.model.device) if exclude_seen else None
        memory, keep = self.model.encode(hist)
        kv = self.model.cross_kv(memory)
        if isinstance(self.model, DiffGRM):
            # without a trace the search reads the masked digits only, so the network skips the filled slots
            masked_only = not trace

            denoise = self.model.denoise_masked if masked_only else self.model.denoise

            def logprob_fn(tokens: torch.Tensor) -> torch.Tensor:
                return denoise(tokens, kv, keep).log_softmax(-1)

            return cpd_search(logprob_fn, self.index, len(histories), beam=beam, topk=topk, order=order,
                              seed=seed, trace=trace, constrain=constrain, masked_only=masked_only, passes=passes,
                              seen=seen, on_step=on_step)
        if passes is not None and passes != self.model.config.n_digits:
            raise DiffGRMError("the AR decoder fills one digit per pass: --passes applies to DiffGRM only")
        assert isinstance(self.model, ARGenerator)
        if not kv_cache:
            def next_fn(prefix: torch.Tensor) -> torch.Tensor:
                return self.model.next_logits(prefix, kv, keep).log_softmax(-1)

            return ar_search(next_fn, self.index, len(histories), beam=beam, topk=topk, trace=trace,
                             constrain=constrain, seen=seen, on_step=on_step)
        # a real AR decoder: each step computes the new slot only, reading earlier slots' keys/values
        cache: list = [None] * len(self.model.decoder)

        def step_fn(prefix: torch.Tensor) -> torch.Tensor:
            t = prefix.shape[-1]
            last = prefix[..., t - 1] if t else None
            return self.model.step_logits(last, t, kv, keep, cache).log_softmax(-1)

        return ar_search(step_fn, self.index, len(histories), beam=beam, topk=topk, trace=trace, constrain=constrain,
                         on_reorder=lambda parent: reorder_cache(cache, parent), seen=seen, on_step=on_step)

    @torch.no_grad()
    def digit_logprobs(self, history: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Log-probabilities ``[m, n, K]`` the decoder gives every digit of ``m`` partial SIDs
        ``[m, n]`` (``MASK`` = -1 where unknown) for one history: what a search would have seen
        there. The AR decoder predicts only the next digit (partial SIDs must be left-aligned
        prefixes); its other digits are ``-inf``."""
        tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
        c = self.model.config
        if tokens.shape[1] != c.n_digits or ((tokens < MASK) | (tokens >= c.codebook_size)).any():
            raise DiffGRMError(f"partial SIDs must be [m, {c.n_digits}] with codes in 0..{c.codebook_size - 1} or -1")
        hist = pad_histories([np.asarray(history, dtype=np.int64)], c.max_history, self.model.device)
        memory, keep = self.model.encode(hist)
        kv = self.model.cross_kv(memory)
        t = torch.from_numpy(tokens).to(self.model.device)[None]  # [1, m, n]
        if isinstance(self.model, DiffGRM):
            return self.model.denoise(t, kv, keep).log_softmax(-1)[0].cpu().numpy()
        out = np.full((len(tokens), c.n_digits, c.codebook_size), -np.inf, dtype=np.float32)
        filled = (tokens != MASK).sum(1)
        for k in np.unique(filled):
            rows = np.flatnonzero(filled == k)
            if (tokens[rows, :k] == MASK).any():
                raise DiffGRMError("the AR decoder reads left-aligned prefixes: fill digits 0..t-1 only")
            if k < c.n_digits:
                out[rows, k] = self.model.next_logits(t[:, rows, :k], kv, keep).log_softmax(-1)[0].cpu().numpy()
        return out

    def evaluate(self, samples: Samples, *, beam: int = 32, topk: int = 10, batch_users: int = 32,
                 order: str = "confidence", progress: bool = True, desc: str = "evaluate",
                 passes: int | None = None, exclude_seen: bool = False) -> dict:
        """Item-level (headline) and SID-level Recall/NDCG@5/10 over ``samples``; ``exclude_seen``
        keeps each user's history items out of the rankings (see :meth:`search`)."""
        if topk < 10:
            raise DiffGRMError("evaluation needs the Top-10 (topk >= 10)")
        t0 = time.perf_counter()
        done = []
        # under torchrun each rank decodes every world_size-th batch (the same batches as one
        # process, so the same rankings) and the rankings are gathered in batch order
        starts = distributed.share(list(enumerate(range(0, len(samples), batch_users))))
        for b, s in tqdm(starts, desc=desc, disable=not progress or not distributed.is_main(), leave=False,
                         unit="batch"):
            res = self.search(samples.histories[s : s + batch_users], beam=beam, topk=topk, order=order, passes=passes,
                              exclude_seen=exclude_seen)
            done.append((b, res.items.cpu().numpy(), res.sids.cpu().numpy()))
        done = sorted((row for part in distributed.gather(done) for row in part), key=lambda row: row[0])
        ranked, ranked_sids = np.concatenate([r[1] for r in done]), np.concatenate([r[2] for r in done])
        codes = self.model.item_codes.cpu().numpy()
        top = ranked[:, :10]
        out = {
            "item": ranking_metrics(ranked, samples.targets),
            "sid": sid_ranking_metrics(ranked_sids, codes[samples.targets]),
            # how personal the lists are: distinct items over all users' Top-10s (popularity: 10)
            "distinct_top10": int(len(np.unique(top[top >= 0]))),
            "beam": beam,
            "users": len(samples),
            "model": self.kind,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        if exclude_seen:
            out["exclude_seen"] = True
        return out
