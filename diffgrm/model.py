"""The network: a history encoder and a decoder over the n SID digit slots (method.md section 2).

``DiffGRM``: a bidirectional *denoising* decoder. Slot d holds either the embedding of its known
code or a per-digit [MASK] embedding; every slot attends to every other slot and to the history,
and predicts its digit with a head tied to that digit's slice of the code embedding table.

``ARGenerator``: the autoregressive baseline on the very same SIDs, encoder and sizes: a causal
decoder that reads ``[BOS, c0, ..., c_{n-2}]`` and predicts ``c0 ... c_{n-1}``.

Both decoders take inputs shaped ``[B, R, ...]``: R rows per user (OCN's views in training, the
beams in decoding) that share one encoded history. Cross-attention folds the R rows into the
query length, so the history's keys and values are projected once per user (:meth:`cross_kv`)
and never copied per row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diffgrm.config import ModelConfig
from diffgrm.errors import DiffGRMError
from diffgrm.sid_index import MASK, masked_digits  # MASK: a masked / padding position, everywhere in the package


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper mask on CPU (torch's mask draws were a quarter of a profiled step).

    torch draws one random number per element; here each 64-bit random word gives 7 one-byte
    draws, and an element is kept when its byte is at least ``round(256 p)``: the rate is ``p``
    rounded to a multiple of 1/256 (0.1 -> 0.1016), and kept values are scaled to stay unbiased.
    Other devices use torch's fused kernel. Seeded by ``torch.manual_seed`` like any dropout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        threshold = round(self.p * 256)
        if threshold >= 256:
            return torch.zeros_like(x)
        n = x.numel()
        words = torch.empty((n + 6) // 7, dtype=torch.int64, device=x.device).random_()  # 63 random bits
        draws = words.view(torch.uint8).view(-1, 8)[:, :7].reshape(-1)[:n].view(x.shape)  # 7 full bytes each
        return torch.where(draws >= threshold, x * (256 / (256 - threshold)), 0.0)


class Attention(nn.Module):
    """Multi-head attention on ``[B, T, d]`` with precomputable keys/values."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.h, self.dropout = heads, dropout
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.o = nn.Linear(d, d)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        k, v = self.kv(x).view(b, t, 2, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None = None,
                causal: bool = False) -> torch.Tensor:
        b, t, d = x.shape
        q = self.q(x).view(b, t, self.h, d // self.h).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask, dropout_p=p, is_causal=causal)
        return self.o(y.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Sequential):
    def __init__(self, d: int, d_ff: int, dropout: float) -> None:
        super().__init__(nn.Linear(d, d_ff), nn.GELU(), Dropout(dropout), nn.Linear(d_ff, d))


class EncoderBlock(nn.Module):
    """Pre-LN self-attention block over the history, padding masked."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.attn = Attention(c.d_model, c.n_heads, c.dropout)
        self.ff = FeedForward(c.d_model, c.d_ff, c.dropout)
        self.drop = Dropout(c.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.drop(self.attn(h, self.attn.project_kv(h), mask=keep))
        return x + self.drop(self.ff(self.ln2(x)))


class DecoderBlock(nn.Module):
    """Pre-LN: self-attention over the n slots, cross-attention to the history, feed-forward."""

    def __init__(self, c: ModelConfig, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.ln1, self.ln2, self.ln3 = (nn.LayerNorm(c.d_model) for _ in range(3))
        self.self_attn = Attention(c.d_model, c.n_heads, c.dropout)
        self.cross_attn = Attention(c.d_model, c.n_heads, c.dropout)
        self.ff = FeedForward(c.d_model, c.d_ff, c.dropout)
        self.drop = Dropout(c.dropout)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], keep: torch.Tensor,
                slots: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, R, n, d]`` -> ``[B, R, n, d]``; with ``slots [B, R, q]`` only those slots are
        computed (they still attend to all n) and ``[B, R, q, d]`` comes back."""
        b, r, n, d = x.shape
        h = self.ln1(x)
        kv_self = self.self_attn.project_kv(h.reshape(b * r, n, d))
        if slots is not None:
            pick = slots[..., None].expand(*slots.shape, d)
            x, h = x.gather(2, pick), h.gather(2, pick)
        q = x.shape[2]
        x = x + self.drop(self.self_attn(h.reshape(b * r, q, d), kv_self, causal=self.causal)).view(b, r, q, d)
        return self._cross_ff(x, kv, keep)

    def _cross_ff(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], keep: torch.Tensor) -> torch.Tensor:
        """Cross-attention and feed-forward of ``x [B, ..., d]``: all queries of a user (its R rows,
        or its selected slots) read that user's history, folded into one query length."""
        shape = x.shape
        h = self.ln2(x).reshape(shape[0], -1, shape[-1])
        x = x + self.drop(self.cross_attn(h, kv, mask=keep)).view(shape)
        return x + self.drop(self.ff(self.ln3(x)))

    def forward_step(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], keep: torch.Tensor,
                     cache: list, layer: int) -> torch.Tensor:
        """One new slot ``x [B, R, 1, d]`` of a causal decoder, reading the earlier slots' keys and
        values from ``cache[layer]`` (``[B * R, heads, t, dh]`` each, or ``None`` at t = 0) and
        appending its own: the AR decoder's key/value cache, one slot per layer per step."""
        b, r, _, d = x.shape
        h = self.ln1(x).reshape(b * r, 1, d)
        k, v = self.self_attn.project_kv(h)
        if cache[layer] is not None:
            k, v = torch.cat([cache[layer][0], k], dim=2), torch.cat([cache[layer][1], v], dim=2)
        cache[layer] = (k, v)
        x = x + self.drop(self.self_attn(h, (k, v))).view(b, r, 1, d)  # slot t sees slots <= t: causal
        return self._cross_ff(x, kv, keep)

    def forward_selected(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], keep: torch.Tensor,
                         idx: torch.Tensor) -> torch.Tensor:
        """Only the slots ``idx [B, Q]`` (flat ``row * n + slot`` positions per user, any rows):
        ``[B, Q, d]``. Training's last layer: OCN's views mask 1 + ... + n slots of each sample
        and only those carry a loss, so the other slots are skipped here."""
        b, r, n, d = x.shape
        h = self.ln1(x)
        k, v = self.self_attn.project_kv(h.reshape(b * r, n, d))  # every slot is still a key
        q = idx.shape[1]
        pick = idx[..., None].expand(b, q, d)
        xs, hs = x.reshape(b, r * n, d).gather(1, pick), h.reshape(b, r * n, d).gather(1, pick)
        rows = (idx // n + torch.arange(b, device=x.device)[:, None] * r).reshape(-1)  # each query's row
        att = self.self_attn(hs.reshape(b * q, 1, d), (k[rows], v[rows]), causal=False)
        xs = xs + self.drop(att).view(b, q, d)
        return self._cross_ff(xs, kv, keep)


class GenerativeRecommender(nn.Module):
    """Shared parts: the catalogue's codes, the code embedding table, the history encoder."""

    def __init__(self, config: ModelConfig, item_codes: torch.Tensor) -> None:
        super().__init__()
        c = self.config = config
        n, k, d = c.n_digits, c.codebook_size, c.d_model
        item_codes = torch.as_tensor(item_codes, dtype=torch.long)
        if item_codes.ndim != 2 or item_codes.shape[1] != n or item_codes.min() < 0 or item_codes.max() >= k:
            raise DiffGRMError(f"item codes must be [items, {n}] in 0..{k - 1}, got {tuple(item_codes.shape)}")
        self.register_buffer("item_codes", item_codes, persistent=True)
        self.register_buffer("digit_offset", torch.arange(n) * k, persistent=False)
        self.code_emb = nn.Embedding(n * k, d)
        self.item_mlp = nn.Sequential(nn.Linear(n * d, d), nn.ReLU(), nn.Linear(d, d))
        self.pos_emb = nn.Embedding(c.max_history, d)
        # extension (config switch, off in the paper's setting): each history item's own id
        self.item_emb = nn.Embedding(item_codes.shape[0], d) if c.item_id_emb else None
        self.dec_in_drop = Dropout(c.input_dropout)
        self.enc_drop = Dropout(c.dropout)
        self.encoder = nn.ModuleList(EncoderBlock(c) for _ in range(c.enc_layers))
        self.enc_ln = nn.LayerNorm(d)
        self.decoder = nn.ModuleList(DecoderBlock(c, causal=c.kind == "ar") for _ in range(c.dec_layers))
        self.dec_ln = nn.LayerNorm(d)

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    @property
    def device(self) -> torch.device:
        return self.code_emb.weight.device

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[..., n]`` -> per-digit embeddings ``[..., n, d]`` (digit d uses rows d*K..)."""
        return self.code_emb(codes + self.digit_offset)

    def encode(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Item indices ``[B, L]`` (left-aligned, ``MASK`` = padding) -> (memory ``[B, L, d]``,
        attention mask ``[B, 1, 1, L]``, True where there is an item).

        Positions count back from the most recent item, so "the last item" always has position 0
        whatever the history length.
        """
        keep = history != MASK
        lengths = keep.sum(1)
        if (lengths == 0).any():
            raise DiffGRMError("a history is empty: a user needs at least one past item")
        history = history[:, -self.config.max_history :] if history.shape[1] > self.config.max_history else history
        keep = history != MASK
        lengths = keep.sum(1, keepdim=True)
        codes = self.item_codes[history.clamp(min=0)]  # [B, L, n]
        x = self.item_mlp(self.embed_codes(codes).flatten(2))
        if self.item_emb is not None:
            x = x + self.item_emb(history.clamp(min=0))
        pos = (lengths - 1 - torch.arange(history.shape[1], device=history.device)).clamp(min=0)
        x = self.enc_drop(x + self.pos_emb(pos))
        mask = keep[:, None, None, :]
        for block in self.encoder:
            x = block(x, mask)
        return self.enc_ln(x), mask

    def cross_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each decoder layer's keys/values of the history, computed once per user."""
        return [block.cross_attn.project_kv(memory) for block in self.decoder]

    def _decode(self, x: torch.Tensor, kv: list, keep: torch.Tensor) -> torch.Tensor:
        """Decoder layers + tied heads for every slot: ``x [B, R, n, d]`` -> logits ``[B, R, n, K]``."""
        for block, layer_kv in zip(self.decoder, kv):
            x = block(x, layer_kv, keep)
        # tied heads: slot s is scored against digit s's rows of the code embedding table
        return torch.einsum("brsd,skd->brsk", self.dec_ln(x), self._head_table()[: x.shape[2]])

    def _decode_slots(self, x: torch.Tensor, kv: list, keep: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """As :meth:`_decode`, scoring only the listed slots: ``slots [B, R, q]`` -> ``[B, R, q, K]``.
        The last layer computes those slots alone (the others' outputs would never be read)."""
        *early, last = list(zip(self.decoder, kv))
        for block, layer_kv in early:
            x = block(x, layer_kv, keep)
        x = last[0](x, last[1], keep, slots)
        return self._heads(self.dec_ln(x), slots)

    def _decode_selected(self, x: torch.Tensor, kv: list, keep: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
        """As :meth:`_decode`, scoring only the selected positions: ``select [B, R, n]`` bool with the
        same count Q per user -> ``[B, Q, K]`` in (row, slot) order."""
        idx = select.reshape(select.shape[0], -1).nonzero()[:, 1].view(select.shape[0], -1)  # [B, Q]
        *early, last = list(zip(self.decoder, kv))
        for block, layer_kv in early:
            x = block(x, layer_kv, keep)
        x = last[0].forward_selected(x, last[1], keep, idx)
        return self._heads(self.dec_ln(x), idx % select.shape[-1])

    def _head_table(self) -> torch.Tensor:
        """``[n, K, d]``: digit s's rows of the (tied) code embedding table."""
        return self.code_emb.weight.view(self.config.n_digits, self.config.codebook_size, -1)

    def _heads(self, h: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Logits ``[*slots.shape, K]`` of hidden states ``h [*slots.shape, d]``, each scored against
        the rows of its own slot's digit, one digit at a time."""
        table = self._head_table()
        flat_h, flat_slots = h.reshape(-1, h.shape[-1]), slots.reshape(-1)
        out = h.new_empty(flat_h.shape[0], table.shape[1])
        for digit in range(table.shape[0]):
            rows = (flat_slots == digit).nonzero().squeeze(1)
            if len(rows):
                out[rows] = (flat_h[rows] @ table[digit].T).to(out.dtype)  # autocast may give bf16
        return out.view(*slots.shape, -1)


class DiffGRM(GenerativeRecommender):
    """Masked discrete diffusion over the n digits: one bidirectional pass predicts every slot."""

    def __init__(self, config: ModelConfig, item_codes: torch.Tensor) -> None:
        super().__init__(config, item_codes)
        self.mask_emb = nn.Embedding(config.n_digits, config.d_model)
        self._init()

    def _inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """Partial SIDs ``[B, R, n]`` -> decoder inputs ``[B, R, n, d]``: a masked digit reads its slot's mask embedding."""
        masked = tokens == MASK
        x = self.embed_codes(tokens.clamp(min=0))
        return self.dec_in_drop(torch.where(masked[..., None], self.mask_emb.weight.expand_as(x), x))

    def denoise(self, tokens: torch.Tensor, kv: list, keep: torch.Tensor) -> torch.Tensor:
        """Every slot: partial SIDs ``tokens [B, R, n]`` (``MASK`` where unknown) -> logits ``[B, R, n, K]``.
        What a trace, a confidence read-out and OCN's confidence pass need."""
        return self._decode(self._inputs(tokens), kv, keep)

    def denoise_masked(self, tokens: torch.Tensor, kv: list, keep: torch.Tensor) -> torch.Tensor:
        """The masked slots only: ``tokens [B, R, n]`` with the same number m of masked digits in every
        row (as at each CPD step) -> logits ``[B, R, m, K]``, masked digits in ascending order.

        Decoding's entry point: the last decoder layer and the heads skip the filled slots, whose
        outputs a search never reads."""
        counts = (tokens == MASK).sum(-1)
        if counts.numel() and bool((counts != counts.reshape(-1)[0]).any()):
            raise DiffGRMError("denoise_masked needs the same number of masked digits in every row")
        m = int(counts.reshape(-1)[0]) if counts.numel() else 0
        if m == tokens.shape[-1]:  # all masked: every slot, already in ascending order
            return self.denoise(tokens, kv, keep)
        return self._decode_slots(self._inputs(tokens), kv, keep, masked_digits(tokens, m))

    def denoise_selected(self, tokens: torch.Tensor, kv: list, keep: torch.Tensor, select: torch.Tensor
                         ) -> torch.Tensor:
        """The selected slots only: ``select [B, R, n]`` bool with the same count Q per user -> logits
        ``[B, Q, K]`` in (row, digit) order. Training's entry point: OCN selects the masked slots."""
        counts = select.sum((1, 2))
        if counts.numel() and bool((counts != counts[0]).any()):
            raise DiffGRMError("denoise_selected needs the same number of selected slots for every user")
        return self._decode_selected(self._inputs(tokens), kv, keep, select)


class ReleasedDiffGRM(DiffGRM):
    """DiffGRM in the released layout that Cornac's port and the reference code train (kind
    ``cornac-diffgrm``; the differences, and how their weights map here: :mod:`diffgrm.interop.network`):
    bias-free q/k/v, one final LayerNorm for the encoder's output and the decoder's, history
    positions counted from the oldest item, and a cross-attention that reads the whole
    ``max_history`` window, its padding rows (zeros) included."""

    def __init__(self, config: ModelConfig, item_codes: torch.Tensor) -> None:
        if config.item_id_emb:
            raise DiffGRMError("the released DiffGRM network has no item-id embedding (item_id_emb must be false)")
        super().__init__(config, item_codes)
        d = config.d_model
        for module in self.modules():
            if isinstance(module, Attention):
                module.q, module.kv = nn.Linear(d, d, bias=False), nn.Linear(d, 2 * d, bias=False)
        del self.enc_ln  # the decoder's final norm serves the encoder too (one tensor each, safe to save)
        self._init()

    def encode(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Item indices ``[B, L]`` (left-aligned, ``MASK`` = padding) -> (memory ``[B, M, d]``, mask
        ``[B, 1, 1, M]``), M = ``max_history``: each row's last M items at positions 0.. (oldest
        first), padded to M with zero rows, and a mask that is all true (the decoder reads the padding)."""
        present = (history != MASK).sum(1)
        if (present == 0).any():
            raise DiffGRMError("a history is empty: a user needs at least one past item")
        slots = torch.arange(self.config.max_history, device=history.device)
        kept = present.clamp(max=len(slots))
        at = ((present - kept)[:, None] + slots).clamp(max=history.shape[1] - 1)  # rows over M keep their newest
        keep = slots[None, :] < kept[:, None]
        items = torch.where(keep, history.gather(1, at), 0).clamp(min=0)
        x = self.enc_drop(self.item_mlp(self.embed_codes(self.item_codes[items]).flatten(2)) + self.pos_emb(slots))
        mask = keep[:, None, None, :]
        for block in self.encoder:
            x = block(x, mask)
        return self.dec_ln(x) * keep[..., None], torch.ones_like(mask)


class ARGenerator(GenerativeRecommender):
    """The autoregressive baseline: slot t reads digit t-1 (BOS for t = 0) and predicts digit t."""

    def __init__(self, config: ModelConfig, item_codes: torch.Tensor) -> None:
        super().__init__(config, item_codes)
        self.bos = nn.Parameter(torch.zeros(config.d_model))
        self.slot_pos = nn.Embedding(config.n_digits, config.d_model)
        self._init()

    def teacher_logits(self, sids: torch.Tensor, kv: list, keep: torch.Tensor) -> torch.Tensor:
        """Teacher forcing on complete SIDs ``[B, R, n]`` -> logits for every digit ``[B, R, n, K]``."""
        return self._prefix_logits(sids[..., :-1], kv, keep)

    def next_logits(self, prefix: torch.Tensor, kv: list, keep: torch.Tensor) -> torch.Tensor:
        """Logits of digit t given the first t digits ``[B, R, t]`` -> ``[B, R, K]``."""
        return self._prefix_logits(prefix, kv, keep)[..., prefix.shape[-1], :]

    def step_logits(self, last: torch.Tensor | None, t: int, kv: list, keep: torch.Tensor, cache: list) -> torch.Tensor:
        """Logits ``[B, R, K]`` of digit t computing slot t only: ``last [B, R]`` is digit t-1's code
        (``None`` at t = 0) and ``cache`` (one entry per decoder layer, ``[None] * layers`` at t = 0)
        holds the keys/values of slots < t in the current beam order (see :func:`reorder_cache`).
        The same numbers as :meth:`next_logits` on the whole prefix, without recomputing it."""
        b = keep.shape[0]
        d = self.config.d_model
        if t == 0:
            x = self.bos.expand(b, 1, 1, d)
        else:
            x = self.code_emb(last + self.digit_offset[t - 1])[:, :, None, :]
        x = self.dec_in_drop(x + self.slot_pos.weight[t])
        for i, block in enumerate(self.decoder):
            x = block.forward_step(x, kv[i], keep, cache, i)
        return self.dec_ln(x)[:, :, 0] @ self._head_table()[t].T

    def _prefix_logits(self, prefix: torch.Tensor, kv: list, keep: torch.Tensor) -> torch.Tensor:
        b, r, t = prefix.shape
        d = self.config.d_model
        x = self.bos.expand(b, r, 1, d)
        if t:
            x = torch.cat([x, self.code_emb(prefix + self.digit_offset[:t])], dim=2)
        x = self.dec_in_drop(x + self.slot_pos.weight[: t + 1])
        return self._decode(x, kv, keep)  # [B, R, t+1, K]


def reorder_cache(cache: list, parent: torch.Tensor) -> None:
    """Follow the beams a search kept: ``parent [B, R']`` indexes the previous step's R beams."""
    b, r_new = parent.shape
    for i, entry in enumerate(cache):
        if entry is not None:
            k, v = entry
            rows = (parent + torch.arange(b, device=parent.device)[:, None] * (k.shape[0] // b)).reshape(-1)
            cache[i] = (k[rows], v[rows])


def build_model(config: ModelConfig, item_codes: torch.Tensor) -> GenerativeRecommender:
    """The network ``config.kind`` names: ``diffgrm``, ``ar``, or ``cornac-diffgrm`` (the released
    layout that Cornac and the reference code train, :mod:`diffgrm.interop.network`)."""
    kinds = {"diffgrm": DiffGRM, "cornac-diffgrm": ReleasedDiffGRM}
    return kinds.get(config.kind, ARGenerator)(config, item_codes)


def default_device(name: str | torch.device | None = None) -> torch.device:
    """The device to use: ``name`` if given (checked), else ``cuda`` when available, else CPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DiffGRMError(f"unknown device {name!r}; use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DiffGRMError("--device cuda was asked for, but torch sees no CUDA GPU here")
    return device


def count_params(model: nn.Module) -> str:
    n = sum(p.numel() for p in model.parameters())
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"

