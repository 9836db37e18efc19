"""PSE, Parallel Semantic Encoding: item embeddings -> n-digit semantic IDs (method.md section 1).

Pipeline (``method="opq"``): whitened PCA fit on training items -> L2 normalise -> OPQ rotation
-> split into n equal-width subspaces -> k-means with K centroids in each. Digit d of an item is
its nearest centroid in subspace d, so the digits are symmetric: none is "coarse".

The tokenizer follows scikit-learn: :meth:`PSETokenizer.fit` learns the transform, one method
per stage, and :meth:`PSETokenizer.transform` maps any embeddings to codes. Making a *catalogue*
one-to-one is a property of a whole item set, not of one item, so it lives beside, in
``collisions.py`` (:func:`repair_collisions` moves colliding items to their nearest free SID);
:func:`build_catalogue` runs everything.

Baselines for the ablations: ``pq`` (no rotation), ``rq`` (residual k-means on the raw
embedding, the "semantic hourglass"), ``random``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from threadpoolctl import threadpool_limits

from diffgrm.collisions import CHUNK, collision_groups, collision_rate, repair_collisions
from diffgrm.config import TokenizerConfig
from diffgrm.errors import DiffGRMError
from diffgrm.safeio import atomic_write, load_tensors, read_json, write_json
from diffgrm.sid_info import sid_information


def _faiss():
    """faiss, imported when a tokenizer is fit: reading a prepared folder and encoding with a fitted
    tokenizer need numpy only, so a machine without faiss (a GPU image) can train and evaluate."""
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a dependency of the package
        raise DiffGRMError("fitting a tokenizer needs faiss (pip install faiss-cpu); prepare the data on a machine "
                           "that has it and use the prepared folder here") from exc
    return faiss


def one_thread(fn):
    """Run ``fn`` with BLAS and faiss on one thread: multi-threaded SVD and k-means sum in another
    order, and a last-bit difference flips nearest codes, so the same data gave another catalogue
    on another thread count. One thread makes the catalogue identical on any thread count."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            import faiss
        except ImportError:  # nothing of faiss runs without it (see _faiss)
            faiss = None
        before = faiss.omp_get_max_threads() if faiss else 0
        if faiss:
            faiss.omp_set_num_threads(1)
        try:
            with threadpool_limits(limits=1):
                return fn(*args, **kwargs)
        finally:
            if faiss:
                faiss.omp_set_num_threads(before)

    return wrapper


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class PSETokenizer:
    """Embeddings ``[N, dim]`` -> codes ``[N, n_digits]`` in ``0..K-1``; seedable, deterministic."""

    def __init__(self, config: TokenizerConfig | None = None) -> None:
        self.config = config or TokenizerConfig()
        self.state: dict[str, np.ndarray] = {}

    # ---------------------------------------------------------------- fit
    @one_thread
    def fit(self, embeddings: np.ndarray, train_idx: np.ndarray | None = None) -> "PSETokenizer":
        """Learn the transform from ``embeddings[train_idx]`` (all rows if None), stage by stage.

        The item embeddings come from the sentence encoder already (``text.embed_texts``). For
        ``opq`` (``pq`` skips stage 3):

        1. :meth:`_fit_rows`: the training items, or a seeded sample of ``config.fit_items`` of them;
        2. :meth:`_fit_whitened_pca`: whitened PCA, then L2 normalisation;
        3. :meth:`_fit_opq_rotation`: the OPQ rotation;
        4. :meth:`_fit_subspace_kmeans`: product quantization, k-means with K centroids in each of
           the n subspaces.

        ``rq`` runs :meth:`_fit_residual_kmeans` on the raw embeddings instead, and ``random``
        learns nothing. Collisions are a property of the whole catalogue, handled after encoding
        (:func:`repair_collisions`).
        """
        method = self.config.method
        x = self._check(embeddings)
        xt = self._fit_rows(x, train_idx)
        self.state = {"dim": np.array([x.shape[1]], dtype=np.int64)}
        if method == "rq":
            self.state["centroids"] = self._fit_residual_kmeans(xt)
        elif method != "random":
            y = self._fit_whitened_pca(xt)
            if method == "opq":
                y = self._fit_opq_rotation(y)
            self.state["centroids"] = self._fit_subspace_kmeans(y)
        return self

    def _fit_rows(self, x: np.ndarray, train_idx: np.ndarray | None) -> np.ndarray:
        """The items the transform is learnt from: ``x[train_idx]``, or a seeded sample of
        ``config.fit_items`` of them (the codebooks of a million items are learnt as well from a
        few hundred thousand, and every item is encoded afterwards). At least one item per code."""
        cfg = self.config
        rows = np.arange(len(x)) if train_idx is None else np.asarray(train_idx)
        if cfg.fit_items and len(rows) > cfg.fit_items:
            rows = np.sort(np.random.default_rng(cfg.seed).choice(rows, cfg.fit_items, replace=False))
        xt = x if train_idx is None and len(rows) == len(x) else x[rows]
        k = cfg.codebook_size
        if len(xt) < k:
            raise DiffGRMError(
                f"a codebook of {k} codes needs at least {k} training items, but there are {len(xt)}; "
                f"use a smaller --codebook (e.g. {1 << max(1, int(np.log2(max(len(xt), 2))) - 2)})"
            )
        return xt

    def _fit_whitened_pca(self, x: np.ndarray) -> np.ndarray:
        """Stage 2: PCA to ``config.pca_dim`` dimensions (a multiple of the digits), each scaled to
        unit variance when ``config.whiten``; returns ``x`` projected and L2 normalised."""
        cfg = self.config
        dim = min(cfg.pca_dim, x.shape[1], len(x) - 1)
        dim -= dim % cfg.n_digits
        if dim < cfg.n_digits:
            raise DiffGRMError(f"too few training items ({len(x)}) for {cfg.n_digits} digits")
        mean = x.mean(axis=0)
        # SVD of the centred data: rows of vt are the principal directions
        _, s, vt = np.linalg.svd((x - mean).astype(np.float64), full_matrices=False)
        var = (s[:dim] ** 2) / max(len(x) - 1, 1)
        scale = 1.0 / np.sqrt(var + 1e-8) if cfg.whiten else np.ones(dim)
        self.state["pca_mean"] = mean.astype(np.float32)
        self.state["pca_components"] = (vt[:dim] * scale[:, None]).astype(np.float32)
        return self._project(x)

    def _project(self, x: np.ndarray) -> np.ndarray:
        return _l2n((x - self.state["pca_mean"]) @ self.state["pca_components"].T).astype(np.float32)

    def _pq(self, d: int):
        faiss = _faiss()
        cfg = self.config
        pq = faiss.ProductQuantizer(d, cfg.n_digits, int(np.log2(cfg.codebook_size)))
        pq.cp.seed = cfg.seed
        pq.cp.niter = cfg.kmeans_iters
        # small catalogues (MovieLens) have < 39 points per centroid; faiss would warn on every pass
        pq.cp.min_points_per_centroid = 1
        pq.verbose = False
        return pq

    def _fit_opq_rotation(self, y: np.ndarray) -> np.ndarray:
        """Stage 3: the orthogonal rotation (OPQ) that balances the variance over the n subspaces;
        returns ``y`` rotated."""
        d = y.shape[1]
        faiss = _faiss()
        opq = faiss.OPQMatrix(d, self.config.n_digits)
        opq.niter = self.config.opq_iters
        pq = self._pq(d)
        opq.pq = pq  # faiss keeps a raw pointer: `pq` must stay alive until train() returns
        opq.verbose = False
        opq.train(np.ascontiguousarray(y))
        self.state["rotation"] = faiss.vector_to_array(opq.A).reshape(d, d).astype(np.float32)
        return y @ self.state["rotation"].T

    def _fit_subspace_kmeans(self, y: np.ndarray) -> np.ndarray:
        """Stage 4: product quantization, k-means with K centroids in each of the n contiguous
        subspaces of ``y``; returns the centroids ``[n_digits, K, dsub]``."""
        cfg = self.config
        faiss = _faiss()
        dsub = y.shape[1] // cfg.n_digits
        if cfg.kmeans_seeds == "shared":  # faiss' product quantizer: one seed for every sub-quantizer
            pq = self._pq(y.shape[1])
            pq.train(np.ascontiguousarray(y))
            return faiss.vector_to_array(pq.centroids).reshape(cfg.n_digits, cfg.codebook_size, dsub)
        # one k-means per subspace, each with its own seed: with a shared seed, clusters that are
        # tight in every projection start from the same sample rows and get the same code number in
        # every digit, which reads as structure (29-29-29-29) where there is none
        cents = []
        for d in range(cfg.n_digits):
            km = faiss.Kmeans(dsub, cfg.codebook_size, niter=cfg.kmeans_iters, seed=cfg.seed + 1 + 7919 * d,
                              min_points_per_centroid=1)
            km.train(np.ascontiguousarray(y[:, d * dsub:(d + 1) * dsub]))
            cents.append(km.centroids)
        return np.stack(cents).astype(np.float32)

    def _fit_residual_kmeans(self, x: np.ndarray) -> np.ndarray:
        """The ``rq`` ablation: k-means on the raw embeddings, then on what each level leaves;
        returns the centroids ``[n_digits, K, dim]``."""
        faiss = _faiss()
        cfg = self.config
        residual = x.astype(np.float32).copy()
        levels = []
        for level in range(cfg.n_digits):
            km = faiss.Kmeans(
                x.shape[1], cfg.codebook_size, niter=cfg.kmeans_iters, seed=cfg.seed + level, min_points_per_centroid=1
            )
            km.train(residual)
            _, assign = km.index.search(residual, 1)
            residual -= km.centroids[assign[:, 0]]
            levels.append(km.centroids)
        return np.stack(levels)

    # ---------------------------------------------------------------- transform
    def _check(self, embeddings: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or len(x) == 0:
            raise DiffGRMError(f"embeddings must be a non-empty [items, dim] array, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise DiffGRMError("embeddings contain NaN or infinite values")
        if "dim" in self.state and x.shape[1] != int(self.state["dim"][0]):
            raise DiffGRMError(f"embeddings have {x.shape[1]} dims, the tokenizer was fit on {int(self.state['dim'][0])}")
        return x

    @one_thread
    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """Squared distance of every item's sub-vector to every code: ``[N, n_digits, K]``.

        For ``rq`` level d is measured on the residual left by the nearest codes of levels < d;
        for ``random`` the "distances" are random with the assigned code at 0, so collision repair
        moves items to random free SIDs.
        """
        if not self.state:
            raise DiffGRMError("the tokenizer is not fitted: call fit() first")
        cfg = self.config
        x = self._check(embeddings)
        n, k = cfg.n_digits, cfg.codebook_size
        if cfg.method == "random":
            rng = np.random.default_rng(cfg.seed)
            dist = rng.random((len(x), n, k), dtype=np.float32)
            codes = rng.integers(0, k, size=(len(x), n))
            np.put_along_axis(dist, codes[:, :, None], 0.0, axis=2)
            return dist
        cents = self.state["centroids"]
        if cfg.method == "rq":
            out = np.empty((len(x), n, k), dtype=np.float32)
            residual = x.copy()
            for level in range(n):
                out[:, level] = _sqdist(residual, cents[level])
                residual -= cents[level][out[:, level].argmin(axis=1)]
            return out
        y = self._project(x)
        if "rotation" in self.state:
            y = y @ self.state["rotation"].T
        sub = y.reshape(len(y), n, -1)
        return np.stack([_sqdist(sub[:, d], cents[d]) for d in range(n)], axis=1)

    def transform(self, embeddings: np.ndarray) -> np.ndarray:
        """Nearest code per digit, ``[N, n_digits]`` int64 (before any collision repair), a
        :data:`CHUNK` of items at a time."""
        if self.config.method == "random":  # random codes are drawn for all items at once
            return self.distances(embeddings).argmin(axis=2).astype(np.int64)
        return np.concatenate([self.distances(embeddings[s : s + CHUNK]).argmin(axis=2).astype(np.int64)
                               for s in range(0, len(embeddings), CHUNK)])

    def fit_transform(self, embeddings: np.ndarray, train_idx: np.ndarray | None = None) -> np.ndarray:
        return self.fit(embeddings, train_idx).transform(embeddings)

    @one_thread
    def subvectors(self, embeddings: np.ndarray) -> np.ndarray:
        """The vectors that digit d quantizes: ``[N, n_digits, dsub]`` (opq/pq only; for plots)."""
        if self.config.method not in ("opq", "pq"):
            raise DiffGRMError(f"the {self.config.method} tokenizer has no per-digit subspaces")
        y = self._project(self._check(embeddings))
        if "rotation" in self.state:
            y = y @ self.state["rotation"].T
        return y.reshape(len(y), self.config.n_digits, -1)

    # ---------------------------------------------------------------- persistence
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.ascontiguousarray(v) for k, v in self.state.items()}
        atomic_write(folder / "tokenizer.safetensors", lambda p: save_file(arrays, str(p)))
        write_json(folder / "tokenizer.json", self.config.to_dict())

    @classmethod
    def load(cls, folder: str | Path) -> "PSETokenizer":
        folder = Path(folder)
        try:
            cfg = TokenizerConfig.from_dict(read_json(folder / "tokenizer.json"))
        except TypeError as exc:
            raise DiffGRMError(f"{folder / 'tokenizer.json'} is not a tokenizer config ({exc})") from None
        state = load_tensors(folder / "tokenizer.safetensors")
        tok = cls(cfg)
        tok.state = state
        return tok


def _sqdist(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``[len(x), len(c)]``."""
    d = (x * x).sum(1)[:, None] - 2.0 * (x @ c.T) + (c * c).sum(1)[None, :]
    return np.maximum(d, 0.0).astype(np.float32)


# --------------------------------------------------------------------------- catalogue


def digit_stats(codes: np.ndarray, codebook_size: int) -> list[dict[str, float]]:
    """Per digit: ``usage`` (fraction of codes used), ``dead_codes``, ``entropy_bits`` (max log2 K)."""
    out = []
    for d in range(codes.shape[1]):
        counts = np.bincount(codes[:, d], minlength=codebook_size)
        p = counts[counts > 0] / counts.sum()
        used = int((counts > 0).sum())
        out.append(
            {
                "digit": d,
                "usage": used / codebook_size,
                "dead_codes": codebook_size - used,
                "entropy_bits": float(-(p * np.log2(p)).sum()),
                "max_code_items": int(counts.max()),
            }
        )
    return out


def fingerprint(codes: np.ndarray, codebook_size: int) -> str:
    """A short hash of the catalogue: checkpoints refuse SIDs with another fingerprint."""
    h = hashlib.sha256(f"{codes.shape}:{codebook_size}".encode())
    h.update(np.ascontiguousarray(codes, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


@dataclass
class Catalogue:
    """The SID of every item (``codes``, one-to-one when repaired) and the raw nearest codes."""

    codes: np.ndarray
    codes_raw: np.ndarray
    codebook_size: int

    @property
    def n_digits(self) -> int:
        return self.codes.shape[1]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.codes, self.codebook_size)

    def information(self) -> dict[str, dict[str, object]]:
        """What the digits tell about the item (:mod:`diffgrm.sid_info`), on the raw and the repaired codes."""
        return {"before": sid_information(self.codes_raw), "after": sid_information(self.codes)}

    def report(self) -> dict[str, object]:
        groups = collision_groups(self.codes_raw)
        return {
            "n_digits": self.n_digits,
            "codebook_size": self.codebook_size,
            "collision_rate_before": collision_rate(self.codes_raw),
            "collision_rate_after": collision_rate(self.codes),
            "collision_groups_before": len(groups),
            "largest_collision_group": int(max((len(g) for g in groups), default=1)),
            "moved_items": int((self.codes != self.codes_raw).any(axis=1).sum()),
            "per_digit": digit_stats(self.codes, self.codebook_size),
            "per_digit_before": digit_stats(self.codes_raw, self.codebook_size),
            "information": self.information(),
            "fingerprint": self.fingerprint,
        }


def build_catalogue(tokenizer: PSETokenizer, embeddings: np.ndarray, train_idx: np.ndarray | None = None) -> Catalogue:
    """Fit the tokenizer (if not fitted) and assign every item a SID, repaired if configured.

    Codes are assigned a chunk of items at a time and collision repair measures only the items
    that collide, so memory grows with the items, not with items x digits x codes."""
    if not tokenizer.state:
        tokenizer.fit(embeddings, train_idx)
    if tokenizer.config.method == "random":  # its "distances" are one random draw over all items
        dist = tokenizer.distances(embeddings)
        raw = dist.argmin(axis=2).astype(np.int64)
        codes = repair_collisions(raw, dist) if tokenizer.config.repair else raw
        return Catalogue(codes=codes, codes_raw=raw, codebook_size=tokenizer.config.codebook_size)
    raw = tokenizer.transform(embeddings)
    codes = raw
    if tokenizer.config.repair:
        codes = repair_collisions(raw, lambda start, stop: tokenizer.distances(embeddings[start:stop]))
    return Catalogue(codes=codes, codes_raw=raw, codebook_size=tokenizer.config.codebook_size)
