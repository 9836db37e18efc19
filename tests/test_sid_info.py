"""SID information diagnostics: hand-computed cases, a brute-force cross-check, and the report keys."""

import itertools
import json
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from diffgrm.errors import DiffGRMError
from diffgrm.prepare import Prepared, format_report
from diffgrm.pse import Catalogue, collision_rate, repair_collisions
from diffgrm.sid_info import (
    collision_rates,
    conditional_entropy_bits,
    entropy_bits,
    max_bits,
    prefix_entropy_bits,
    row_ids,
    sid_information,
)


def test_a_copied_digit_holds_no_bits_of_its_own():
    # digit 1 copies digit 0; digit 2 is a fair coin independent of both
    codes = np.array([[0, 0, 0], [0, 0, 1], [1, 1, 0], [1, 1, 1]])
    assert prefix_entropy_bits(codes) == pytest.approx([1.0, 1.0, 2.0])  # the copy adds nothing
    # H(all) = 2; dropping digit 0 or 1 leaves 2 bits, dropping digit 2 leaves 1
    assert conditional_entropy_bits(codes) == pytest.approx([0.0, 0.0, 1.0])
    info = sid_information(codes)
    assert info["digit_bits"] == pytest.approx([1.0, 1.0, 1.0])
    assert info["redundancy_bits"] == pytest.approx(1.0)  # 3 bits of digits for 2 bits of items
    assert info["max_bits"] == pytest.approx(2.0) and info["distinct_sids"] == 4


def test_all_distinct_codes_reach_log2_items():
    codes = np.array(list(itertools.product(range(2), repeat=3)))  # the 8 binary words
    assert prefix_entropy_bits(codes) == pytest.approx([1.0, 2.0, 3.0])
    assert conditional_entropy_bits(codes) == pytest.approx([1.0, 1.0, 1.0])
    info = sid_information(codes[::-1])  # item order does not matter
    assert info["prefix_bits"][-1] == pytest.approx(max_bits(8)) == pytest.approx(3.0)
    assert info["redundancy_bits"] == pytest.approx(0.0)
    assert info["collision_rate_sharing"] == info["collision_rate_beyond_first"] == 0.0


def test_the_two_collision_rates_by_hand():
    # SID (0, 1) held by 3 items, (2, 3) by 2, (5, 5) by 1: 6 items, 3 distinct SIDs
    codes = np.array([[0, 1], [0, 1], [0, 1], [2, 3], [2, 3], [5, 5]])
    rates = collision_rates(codes)
    assert rates["sharing"] == pytest.approx(5 / 6)  # every item of the groups of 3 and 2
    assert rates["beyond_first"] == pytest.approx((6 - 3) / 6)  # 2 + 1 items beyond the first
    assert collision_rate(codes) == rates["sharing"]  # pse's rate is the "sharing" count
    # joint entropy of the group sizes 3, 2, 1 out of 6, below log2 6 because of the collisions
    by_hand = -sum(p * math.log2(p) for p in (3 / 6, 2 / 6, 1 / 6))
    assert entropy_bits(codes) == pytest.approx(by_hand) and by_hand < math.log2(6)
    info = sid_information(codes)
    assert info["distinct_sids"] == 3 and info["prefix_bits"][-1] == pytest.approx(by_hand)


def _brute_entropy(codes: np.ndarray, digits) -> float:
    counts = np.array(list(Counter(tuple(row[list(digits)]) for row in codes).values()), dtype=float)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def test_matches_a_brute_force_count_and_obeys_the_bounds():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 5, size=(300, 4))
    codes[:, 3] = (codes[:, 0] + codes[:, 1]) % 5  # digit 3 is a function of digits 0 and 1
    prefix = prefix_entropy_bits(codes)
    assert prefix == pytest.approx([_brute_entropy(codes, range(k)) for k in range(1, 5)])
    full = _brute_entropy(codes, range(4))
    own = conditional_entropy_bits(codes)
    assert own == pytest.approx([full - _brute_entropy(codes, [d for d in range(4) if d != i]) for i in range(4)])
    assert own[3] == pytest.approx(0.0)
    assert all(a <= b + 1e-12 for a, b in zip(prefix, prefix[1:]))  # never falls as k grows
    assert prefix[-1] <= max_bits(len(codes)) + 1e-12
    info = sid_information(codes)
    assert all(0 <= o <= d + 1e-9 for o, d in zip(info["conditional_bits"], info["digit_bits"]))
    rates = collision_rates(codes)
    assert rates["sharing"] / 2 <= rates["beyond_first"] <= rates["sharing"]


def test_huge_code_values_do_not_overflow():
    big = 2**40
    codes = np.array([[big, 1, big], [big, 1, big], [0, big, 3], [big - 1, 1, big]])
    ids = row_ids(codes)
    assert ids[0] == ids[1] and len(set(ids.tolist())) == 3
    assert collision_rates(codes)["beyond_first"] == pytest.approx(1 / 4)


def test_bad_inputs():
    with pytest.raises(DiffGRMError, match="items, digits"):
        sid_information(np.zeros(5, dtype=int))
    with pytest.raises(DiffGRMError, match="non-negative integers"):
        sid_information(np.array([[0, -1]]))
    with pytest.raises(DiffGRMError, match="n_items"):
        max_bits(0)
    assert entropy_bits(np.array([[1, 2]]), []) == 0.0


# --- the tokenizer report -----------------------------------------------------------------------


def _catalogue() -> Catalogue:
    rng = np.random.default_rng(3)
    dist = rng.random((200, 3, 8)).astype(np.float32)  # 200 items in 8^3 = 512 SIDs: many collide
    raw = dist.argmin(axis=2)
    return Catalogue(codes=repair_collisions(raw, dist), codes_raw=raw, codebook_size=8)


def _old_report(cat: Catalogue) -> dict:
    """A report as ``prepare`` writes it, minus the new key (folders prepared before it existed)."""
    report = {"dataset": "toy", "n_items": 200, "n_users": 9, "n_interactions": 50, "skipped_users": 0,
              "n_train_items": 200, "encoder": "enc", "embedding_dim": 8, "tokenizer": "opq", "seed": 0,
              **cat.report(), "seconds": {"embedding": 0.0, "tokenizer": 0.0}}
    del report["information"]
    return report


def test_the_report_carries_information_before_and_after_repair():
    cat = _catalogue()
    report = cat.report()
    info = report["information"]
    assert json.loads(json.dumps(report)) == report  # JSON-ready
    assert info["before"] == sid_information(cat.codes_raw) and info["after"] == sid_information(cat.codes)
    assert info["before"]["collision_rate_sharing"] == report["collision_rate_before"] > 0
    assert info["before"]["prefix_bits"][0] == pytest.approx(report["per_digit_before"][0]["entropy_bits"])
    after = info["after"]
    assert after["prefix_bits"][-1] == pytest.approx(after["max_bits"]) == pytest.approx(math.log2(200), abs=1e-4)
    assert after["collision_rate_sharing"] == after["collision_rate_beyond_first"] == 0.0
    assert info["before"]["prefix_bits"][-1] < after["prefix_bits"][-1]  # collisions cost bits
    for key in ("collision_rate_before", "collision_rate_after", "per_digit", "per_digit_before", "moved_items"):
        assert key in report  # the keys other code reads are still there


def test_format_report_prints_the_block_and_old_reports_still_print():
    cat = _catalogue()
    old = _old_report(cat)
    text = format_report({**old, "information": cat.information()})
    before = cat.information()["before"]
    assert "ceiling log2 200 items = 7.64" in text and "H(digit | others)" in text
    assert f"{before['prefix_bits'][0]:5.2f}" in text
    assert f"{before['collision_rate_sharing']:.2%} of items share their SID" in text
    assert f"{before['collision_rate_beyond_first']:.2%} are beyond the first" in text
    assert "H(digit | others)" not in format_report(old)


def test_prepared_folders_without_the_key_compute_it_from_the_codes(tmp_path):
    cat = _catalogue()
    prepared = Prepared(path=tmp_path, items=pd.DataFrame(), splits={}, users=[], catalogue=cat,
                        embeddings=np.zeros((200, 8)), report=_old_report(cat))
    assert prepared.information() == cat.information()
    stored = {"before": {"marker": 1}, "after": {}}
    assert Prepared(**{**prepared.__dict__, "report": {"information": stored}}).information() == stored
