"""OCN, On-policy Coherent Noising: which digits to mask in training (method.md section 3).

Masked diffusion trains on partially masked SIDs ("views"). OCN picks them *on policy*: a
no-grad pass with every digit masked gives the model's confidence per digit, the digits are
sorted least confident first, and view t masks the t least confident digits (t = 1..n). The n
views are the states of one denoising trajectory, exactly the states that confidence-first
decoding (CPD) visits, and the hardest digit is supervised n times, the easiest once.

The ablations build views differently; all return the same shapes so the loss is shared:

============== ==========================================================================
``ocn``        nested views along the least-confident-first order (the method)
``most``       nested views along the most-confident-first order
``sequential`` nested views along a random digit order per sample
``random``     n independent views; digit masked with probability r ~ U(0, 1) (>= 1 masked)
``random_t``   LLaDA-style: one ratio t ~ U(0, 1) per view, loss weighted by 1 / t
============== ==========================================================================
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diffgrm.errors import DiffGRMError
from diffgrm.model import MASK, DiffGRM

STRATEGIES = ("ocn", "most", "sequential", "random", "random_t")
NESTED = ("ocn", "most", "sequential")  # views of one trajectory: every sample masks 1 + ... + n slots


def nested_views(targets: torch.Tensor, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """View t masks the first t digits of ``order`` (``[B, n]``, a permutation per row).

    Returns tokens ``[B, n, n]`` (view, digit; ``MASK`` where masked) and the bool mask of
    masked positions. View 0 masks one digit and view n-1 masks all of them.
    """
    b, n = targets.shape
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=order.device).expand(b, n))  # rank[d] = position of d
    views = torch.arange(n, device=targets.device)[:, None]  # view t masks ranks <= t
    masked = rank[:, None, :] <= views[None]  # [B, n(view), n(digit)]
    tokens = torch.where(masked, torch.full_like(masked, MASK, dtype=targets.dtype), targets[:, None, :])
    return tokens, masked


def random_views(targets: torch.Tensor, generator: torch.Generator | None = None,
                 llada: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n independent random views per sample; returns tokens, masked, per-view weights ``[B, n]``."""
    b, n = targets.shape
    dev = targets.device
    ratio = torch.rand(b, n, 1, generator=generator, device=dev).clamp(min=1.0 / (4 * n))
    masked = torch.rand(b, n, n, generator=generator, device=dev) < ratio
    # every view masks at least one digit: force one random digit where none was drawn
    force = F.one_hot(torch.randint(0, n, (b, n), generator=generator, device=dev), n).bool()
    masked = masked | (force & ~masked.any(-1, keepdim=True))
    tokens = torch.where(masked, torch.full_like(masked, MASK, dtype=targets.dtype), targets[:, None, :])
    weights = (1.0 / ratio[..., 0]) if llada else torch.ones(b, n, device=dev)
    return tokens, masked, weights


def pick_views(tokens: torch.Tensor, masked: torch.Tensor, k: int, pick: str = "random",
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep ``k`` of the n nested views of every sample: ``[B, n, n]`` -> ``[B, k, n]``.

    A step over all n views of n slots costs about n^2 slots; k views cost k n. ``random`` draws k
    distinct masking depths per sample, so every state of the trajectory, the all-masked one that
    decoding starts from included, is trained in expectation. ``shallowest`` keeps views 1..k, what
    the reference does for n > 4 (k = 4): states with more than k masked digits are never trained.
    """
    b, n, _ = masked.shape
    if k <= 0 or k >= n:
        return tokens, masked
    if pick == "shallowest":
        idx = torch.arange(k, device=masked.device).expand(b, k)
    elif pick == "random":
        idx = torch.argsort(torch.rand(b, n, generator=generator, device=masked.device), dim=1)[:, :k]
        idx = idx.sort(dim=1).values  # keep the views in depth order (the loss does not care; traces do)
    else:
        raise DiffGRMError(f"unknown view pick {pick!r}; choose random or shallowest")
    rows = idx[..., None].expand(b, k, n)
    return tokens.gather(1, rows), masked.gather(1, rows)


def digit_confidence(model: DiffGRM, kv: list, keep: torch.Tensor) -> torch.Tensor:
    """Max softmax probability of every digit with all digits masked: ``[B, n]``, no grad, eval mode."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        b = keep.shape[0]
        tokens = torch.full((b, 1, model.config.n_digits), MASK, dtype=torch.long, device=keep.device)
        probs = model.denoise(tokens, [(k.detach(), v.detach()) for k, v in kv], keep).softmax(-1)
    model.train(was_training)
    return probs.amax(-1)[:, 0]


def make_views(strategy: str, targets: torch.Tensor, confidence: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Views for one batch: tokens ``[B, V, n]``, masked ``[B, V, n]``, weights ``[B, V]``."""
    b, n = targets.shape
    ones = torch.ones(b, n, device=targets.device)
    if strategy in ("ocn", "most"):
        if confidence is None:
            raise DiffGRMError(f"the {strategy} strategy needs the model's confidence")
        order = torch.argsort(confidence, dim=1, descending=strategy == "most", stable=True)
        return (*nested_views(targets, order), ones)
    if strategy == "sequential":
        order = torch.argsort(torch.rand(b, n, generator=generator, device=targets.device), dim=1)
        return (*nested_views(targets, order), ones)
    if strategy in ("random", "random_t"):
        return random_views(targets, generator, llada=strategy == "random_t")
    raise DiffGRMError(f"unknown noising strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def masked_loss(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor, weights: torch.Tensor,
                label_smoothing: float) -> torch.Tensor:
    """Label-smoothed cross-entropy averaged over all masked positions of all views.

    ``logits`` are ``[B, V, n, K]`` for every slot, or ``[B, Q, K]`` for the masked slots only, in
    (view, digit) order (``DiffGRM.denoise_selected(..., masked)``): the same loss either way.
    """
    b, v, n = masked.shape
    labels = targets[:, None, :].expand(b, v, n)
    w = masked.float() * weights[..., None]
    if logits.ndim == 3:  # the masked slots only
        labels, w = labels[masked], w[masked]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), label_smoothing=label_smoothing,
                         reduction="none")
    return (ce * w.reshape(-1)).sum() / masked.sum().clamp(min=1)


def ocn_loss(model: DiffGRM, history: torch.Tensor, targets: torch.Tensor, *, strategy: str = "ocn",
             label_smoothing: float = 0.1, generator: torch.Generator | None = None, views: int = 0,
             pick: str = "random") -> torch.Tensor:
    """One training step's loss: encode (with grad), pick views, one decoder pass over all views.

    ``views`` > 0 supervises that many of the n nested views per sample (:func:`pick_views`).
    """
    memory, keep = model.encode(history)
    kv = model.cross_kv(memory)
    conf = digit_confidence(model, kv, keep) if strategy in ("ocn", "most") else None
    tokens, masked, weights = make_views(strategy, targets, conf, generator)
    if strategy in NESTED and 0 < views < targets.shape[1]:
        tokens, masked = pick_views(tokens, masked, views, pick, generator)
        weights = weights[:, :views]
    # all nested views (or the same k) mask the same number of slots in every sample: the network's
    # last layer then computes only those; random depths differ per sample, so they read every slot
    same_count = strategy in NESTED and (not 0 < views < targets.shape[1] or pick == "shallowest")
    logits = model.denoise_selected(tokens, kv, keep, masked) if same_count else model.denoise(tokens, kv, keep)
    return masked_loss(logits, targets, masked, weights, label_smoothing)


@torch.no_grad()
def digit_report(model: DiffGRM, history: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per digit, from the all-masked state: accuracy of the top code and mean confidence ``[n]``.

    A training diagnostic: OCN should lift the hard digits, whose confidence starts lowest.
    """
    was_training = model.training
    model.eval()
    memory, keep = model.encode(history)
    tokens = torch.full((len(targets), 1, model.config.n_digits), MASK, dtype=torch.long, device=targets.device)
    probs = model.denoise(tokens, model.cross_kv(memory), keep).softmax(-1)[:, 0]  # [B, n, K]
    model.train(was_training)
    return {"accuracy": (probs.argmax(-1) == targets).float().mean(0), "confidence": probs.amax(-1).mean(0)}
