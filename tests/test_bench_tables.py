"""Every committed benchmark table is its experiment's rendering of the committed JSON: ``python -m
bench NAME table`` writes each .md (and each figure drawn from the JSON) again byte for byte, with
no run folder and no training."""

from __future__ import annotations

import shutil

import pytest

from bench.common import RESULTS_DIR
from bench.registry import ENTRIES, load, stages
from bench.results_io import write_table

WITH_TABLES = [name for name in ENTRIES if getattr(load(name), "RESULTS", ())]


def test_every_committed_table_belongs_to_one_benchmark():
    owned = [f"{result}.md" for name in WITH_TABLES for result in load(name).RESULTS]
    assert len(owned) == len(set(owned))
    assert sorted(owned) == sorted(p.name for p in RESULTS_DIR.glob("*.md"))


@pytest.mark.parametrize("name", WITH_TABLES)
def test_the_table_stage_writes_the_committed_files_again(name, tmp_path):
    module = load(name)
    assert "table" in stages(module)
    for result in module.RESULTS:
        shutil.copy(RESULTS_DIR / f"{result}.json", tmp_path / f"{result}.json")
        written = write_table(module, tmp_path / result)
        assert written[0].name == f"{result}.md"
        for path in written:
            assert path.read_bytes() == (RESULTS_DIR / path.name).read_bytes(), f"{path.name} differs from the committed file"
