"""Smoke test of the speed bench: ``python -m bench speed run --quick`` runs, prints its tables and writes every
section of its JSON with positive numbers. No timing is asserted (the machine may be busy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HEADERS = [
    "### 1. Decode: CPD vs AR",
    "| what | seconds | users/s | x floor |",
    "| target | measured | met |",
    "### 1b. Network passes: CPD at S = 4, 2, 1 and the AR decoder",
    "| beam | decoder | users/s | x cached AR time | x floor |",
    "### 2. Training throughput",
    "| model | samples/s | ms per step |",
    "### 3. Tokenizer",
    "| step | items | seconds | items/s |",
    "### 4. Scaling",
    "| items | CPD ms/user | AR ms/user | floor ms/user | CPD x floor | CPD first call s | train ms/step |",
    "| beam | CPD ms/user | AR ms/user | floor ms/user | CPD x floor | CPD / AR |",
]


def numbers(tree, path="") -> list[tuple[str, float]]:
    """Every numeric leaf of a JSON tree (booleans excluded), with its path."""
    if isinstance(tree, dict):
        return [pair for key, value in tree.items() for pair in numbers(value, f"{path}.{key}")]
    if isinstance(tree, list):
        return [pair for i, value in enumerate(tree) for pair in numbers(value, f"{path}[{i}]")]
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return [(path, tree)]
    return []


def test_quick_bench_writes_every_section(tmp_path):
    out = tmp_path / "speed.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "speed", "run", "--quick", "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=170,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for header in HEADERS:
        assert header in proc.stdout, header

    result = json.loads(out.read_text())
    assert set(result) == {"meta", "decode", "passes", "train", "tokenizer", "scaling"}
    assert result["meta"]["quick"] is True and result["meta"]["threads"] == 1
    for section in ("decode", "passes", "train", "tokenizer", "scaling"):
        found = numbers(result[section])
        assert len(found) >= 5, section
        bad = [(path, value) for path, value in found if not value > 0]
        assert not bad, bad

    decode = result["decode"]
    assert set(decode["seconds"]) == {"floor", "cpd_search", "cpd", "ar"}
    assert set(decode["targets"]) == {"cpd_within_1.5x_floor", "cpd_not_slower_than_ar"}
    assert all(isinstance(v, bool) for v in decode["targets"].values())
    passes = result["passes"]["beams"]
    assert list(passes) == ["16", "32"]  # the quick beams (JSON keys)
    for row in passes.values():
        assert set(row["seconds"]) == {"floor", "cpd S=4", "cpd S=2", "cpd S=1", "ar cached", "ar uncached"}
        assert set(row["targets"]) == {"cpd_half_faster_than_cached_ar", "cpd_n_within_1.5x_floor"}
    assert set(result["train"]["models"]) == {"DiffGRM, OCN noising", "DiffGRM, random masking", "AR, teacher forcing"}
    assert {"opq", "pq"} <= set(result["tokenizer"]["fit"])
    assert result["scaling"]["catalogue"] and result["scaling"]["beam"]
    assert [r["items"] for r in result["scaling"]["catalogue"]] == sorted(
        r["items"] for r in result["scaling"]["catalogue"]
    )
