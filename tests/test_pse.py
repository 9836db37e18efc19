import itertools

import numpy as np
import pytest

from diffgrm.config import TokenizerConfig, tokenizer_preset
from diffgrm.errors import DiffGRMError
from diffgrm.pse import (
    PSETokenizer,
    build_catalogue,
    collision_groups,
    collision_rate,
    digit_stats,
    repair_collisions,
)

SMALL = dict(n_digits=4, codebook_size=16, pca_dim=16, kmeans_iters=10, opq_iters=5)


@pytest.mark.parametrize("method", ["opq", "pq", "rq", "random"])
def test_shapes_range_and_determinism(method, clustered_embeddings):
    x = clustered_embeddings
    cfg = TokenizerConfig(method=method, seed=3, **SMALL)
    a = PSETokenizer(cfg).fit_transform(x, np.arange(500))
    b = PSETokenizer(cfg).fit_transform(x, np.arange(500))
    assert a.shape == (600, 4) and a.dtype == np.int64
    assert a.min() >= 0 and a.max() < 16
    np.testing.assert_array_equal(a, b)
    c = PSETokenizer(TokenizerConfig(method=method, seed=4, **SMALL)).fit_transform(x, np.arange(500))
    assert (a != c).any()


def test_opq_fits_on_training_items_only(clustered_embeddings):
    x = clustered_embeddings.copy()
    cfg = TokenizerConfig(**SMALL)
    train = np.arange(400)
    a = PSETokenizer(cfg).fit(x, train)
    x[400:] = np.roll(x[400:], 1, axis=1)  # change only items outside the training set
    b = PSETokenizer(cfg).fit(x, train)
    for key in a.state:
        np.testing.assert_array_equal(a.state[key], b.state[key])


def test_opq_rotation_is_orthogonal_and_digits_balanced(clustered_embeddings):
    tok = PSETokenizer(TokenizerConfig(**SMALL)).fit(clustered_embeddings)
    r = tok.state["rotation"]
    np.testing.assert_allclose(r @ r.T, np.eye(len(r)), atol=1e-4)
    assert tok.subvectors(clustered_embeddings).shape == (600, 4, 4)
    stats = digit_stats(tok.transform(clustered_embeddings), 16)
    assert all(s["usage"] >= 0.9 for s in stats)


def test_save_load_round_trip(tmp_path, clustered_embeddings):
    tok = PSETokenizer(TokenizerConfig(**SMALL)).fit(clustered_embeddings)
    tok.save(tmp_path)
    again = PSETokenizer.load(tmp_path)
    assert again.config == tok.config
    np.testing.assert_array_equal(again.transform(clustered_embeddings), tok.transform(clustered_embeddings))


def test_collision_rate_and_groups_by_hand():
    codes = np.array([[0, 1], [0, 1], [2, 3], [0, 1], [2, 3], [1, 1]])
    assert collision_rate(codes) == pytest.approx(5 / 6)
    assert [g.tolist() for g in collision_groups(codes)] == [[0, 1, 3], [2, 4]]


def test_digit_stats_by_hand():
    codes = np.array([[0, 0], [1, 0], [2, 0], [3, 0]])
    s0, s1 = digit_stats(codes, 8)
    assert s0["usage"] == 0.5 and s0["dead_codes"] == 4 and s0["entropy_bits"] == pytest.approx(2.0)
    assert s1["usage"] == 1 / 8 and s1["dead_codes"] == 7 and s1["entropy_bits"] == 0.0


def _cost(dist, sid):
    return sum(dist[d, c] for d, c in enumerate(sid))


def test_repair_keeps_the_closest_item_and_moves_others_to_cheapest_free_sid():
    rng = np.random.default_rng(0)
    dist = (0.1 + rng.random((3, 2, 4))).astype(np.float32)
    dist[:, :, 1] = 0.0  # everybody's nearest SID is (1, 1)
    dist[2, :, 1] = 0.05  # item 2 is farthest from it
    dist[0, :, 1] = 0.01
    codes = dist.argmin(axis=2)
    assert (codes == 1).all()
    fixed = repair_collisions(codes, dist)
    assert fixed[1].tolist() == [1, 1]  # the closest keeps its SID
    assert collision_rate(fixed) == 0.0
    # the first mover (item 0, second closest) gets its cheapest SID other than (1, 1)
    taken = {(1, 1)}
    best = min((s for s in itertools.product(range(4), repeat=2) if s not in taken), key=lambda s: _cost(dist[0], s))
    assert tuple(fixed[0]) == best
    taken.add(best)
    best2 = min((s for s in itertools.product(range(4), repeat=2) if s not in taken), key=lambda s: _cost(dist[2], s))
    assert tuple(fixed[2]) == best2


@pytest.mark.parametrize("method", ["opq", "rq", "random"])
def test_catalogue_is_one_to_one(method, clustered_embeddings):
    cfg = TokenizerConfig(method=method, n_digits=2, codebook_size=32, pca_dim=16, kmeans_iters=10, opq_iters=5)
    cat = build_catalogue(PSETokenizer(cfg), clustered_embeddings)
    report = cat.report()
    assert report["collision_rate_before"] > 0  # 600 items in 1024 SIDs must collide
    assert report["collision_rate_after"] == 0.0
    assert len({tuple(r) for r in cat.codes}) == 600
    unmoved = (cat.codes == cat.codes_raw).all(axis=1)
    assert report["moved_items"] == int((~unmoved).sum()) > 0
    assert len(report["per_digit"]) == 2 and {"usage", "entropy_bits", "dead_codes"} <= set(report["per_digit"][0])


def test_no_repair_keeps_collisions(clustered_embeddings):
    cfg = TokenizerConfig(n_digits=2, codebook_size=32, pca_dim=16, repair=False)
    cat = build_catalogue(PSETokenizer(cfg), clustered_embeddings)
    np.testing.assert_array_equal(cat.codes, cat.codes_raw)
    assert cat.report()["collision_rate_after"] > 0


def test_fingerprint_changes_with_the_codes(clustered_embeddings):
    cat = build_catalogue(PSETokenizer(TokenizerConfig(**SMALL)), clustered_embeddings)
    fp = cat.fingerprint
    cat.codes[0, 0] = (cat.codes[0, 0] + 1) % 16
    assert cat.fingerprint != fp and len(fp) == 16


def test_bad_settings_and_inputs(clustered_embeddings):
    x = clustered_embeddings
    with pytest.raises(DiffGRMError, match="needs at least 256 training items"):
        PSETokenizer(TokenizerConfig()).fit(x, np.arange(100))
    with pytest.raises(DiffGRMError, match="power of two"):
        TokenizerConfig(codebook_size=100)
    with pytest.raises(DiffGRMError, match="unknown tokenizer"):
        TokenizerConfig(method="lsh")
    with pytest.raises(DiffGRMError, match="cannot hold 600 distinct items"):
        build_catalogue(PSETokenizer(TokenizerConfig(n_digits=1, codebook_size=256, pca_dim=16)), x)
    with pytest.raises(DiffGRMError, match="NaN"):
        PSETokenizer(TokenizerConfig(**SMALL)).fit(np.full((300, 8), np.nan))
    with pytest.raises(DiffGRMError, match="not fitted"):
        PSETokenizer(TokenizerConfig(**SMALL)).transform(x)
    tok = PSETokenizer(TokenizerConfig(**SMALL)).fit(x)
    with pytest.raises(DiffGRMError, match="31 dims, the tokenizer was fit on 32"):
        tok.transform(np.zeros((3, 31), np.float32) + 1)
    with pytest.raises(DiffGRMError, match="unknown tokenizer preset"):
        tokenizer_preset("huge")
    assert tokenizer_preset("small", seed=5, n_digits=None).codebook_size == 64


DETERMINISM = """
import hashlib, numpy as np
from diffgrm.config import TokenizerConfig
from diffgrm.pse import PSETokenizer, build_catalogue
rng = np.random.default_rng(0)
centres = rng.normal(size=(60, 384)).astype(np.float32)
x = centres[rng.integers(0, 60, size=3000)] + 0.5 * rng.normal(size=(3000, 384)).astype(np.float32)
tok = PSETokenizer(TokenizerConfig(codebook_size=64, kmeans_iters=10, opq_iters=5))
cat = build_catalogue(tok, x)
h = hashlib.sha256(cat.codes.tobytes())
for k in sorted(tok.state):
    h.update(np.ascontiguousarray(tok.state[k]).tobytes())
print(h.hexdigest())
"""


def test_the_catalogue_is_bit_identical_on_any_thread_count():
    """Multi-threaded BLAS (the PCA's SVD) and faiss gave another catalogue on 1 and 2 threads."""
    import os
    import subprocess
    import sys

    digests = set()
    for threads in ("1", "2", "3"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        proc = subprocess.run([sys.executable, "-c", DETERMINISM], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        digests.add(proc.stdout.strip())
    assert len(digests) == 1, digests


def test_collision_groups_match_a_brute_force_grouping():
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 3, size=(400, 3))
    want = {}
    for i, row in enumerate(map(tuple, codes)):
        want.setdefault(row, []).append(i)
    want = sorted((g for g in want.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))
    assert [g.tolist() for g in collision_groups(codes)] == want
    assert collision_groups(np.arange(8).reshape(4, 2)) == []


@pytest.mark.parametrize("chunk", [7, 64, 1 << 16])
def test_repair_measured_a_chunk_at_a_time_equals_the_whole_array(chunk):
    """A million items never hold items x digits x codes floats: repair may ask for slices."""
    rng = np.random.default_rng(5)
    dist = rng.random((300, 3, 8)).astype(np.float32)
    codes = np.minimum(dist.argmin(axis=2), 2)  # crowd the first codes: many collisions
    asked = []

    def slice_of(start, stop):
        asked.append((start, stop))
        return dist[start:stop]

    fixed = repair_collisions(codes, slice_of, chunk=chunk)
    np.testing.assert_array_equal(fixed, repair_collisions(codes, dist))
    assert collision_rate(fixed) == 0.0
    assert all(start % chunk == 0 and stop - start <= chunk for start, stop in asked)  # fixed chunk boundaries


def test_the_fit_uses_a_seeded_sample_of_at_most_fit_items(clustered_embeddings):
    cfg = TokenizerConfig(**SMALL, fit_items=150)
    a = PSETokenizer(cfg).fit(clustered_embeddings)
    b = PSETokenizer(cfg).fit(clustered_embeddings)
    np.testing.assert_array_equal(a.state["centroids"], b.state["centroids"])  # the same sample each time
    full = PSETokenizer(TokenizerConfig(**SMALL, fit_items=0)).fit(clustered_embeddings)
    assert len(clustered_embeddings) > 150
    assert not np.array_equal(a.state["pca_mean"], full.state["pca_mean"])
    # the mean learnt is the sample's: the seeded choice of 150 rows
    rows = np.sort(np.random.default_rng(cfg.seed).choice(len(clustered_embeddings), 150, replace=False))
    np.testing.assert_allclose(a.state["pca_mean"], clustered_embeddings[rows].mean(0), rtol=1e-5, atol=1e-6)
    assert a.transform(clustered_embeddings).shape == (len(clustered_embeddings), 4)  # every item encoded
    with pytest.raises(DiffGRMError, match="fit_items"):
        TokenizerConfig(fit_items=1)
