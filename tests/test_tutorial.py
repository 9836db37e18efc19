"""diffgrm.tutorial: the notebooks' shared set-up."""

from __future__ import annotations

import json

from diffgrm import tutorial
from diffgrm.config import TokenizerConfig


def test_setup_reads_quick_mode_and_makes_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIFFGRM_QUICK", "1")
    quick, runs = tutorial.setup(tmp_path / "runs" / "notebooks")
    assert quick and runs.is_dir() and "quick mode" in capsys.readouterr().out
    monkeypatch.delenv("DIFFGRM_QUICK")
    assert tutorial.setup(runs)[0] is False


def test_prepared_movielens_prepares_once_per_config(tmp_path, monkeypatch):
    calls = []

    def fake_prepare(dataset, folder, config, **kw):
        calls.append(config)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tokenizer.json").write_text(json.dumps(config.to_dict()))
        (folder / "tokenizer_report.json").write_text("{}")

    monkeypatch.setattr("diffgrm.prepare.prepare", fake_prepare)
    monkeypatch.setattr("diffgrm.prepare.load_prepared", lambda folder: folder)
    monkeypatch.setattr("diffgrm.data.load_dataset", lambda name: name)
    small, other = TokenizerConfig(codebook_size=8), TokenizerConfig(codebook_size=16)
    assert tutorial.prepared_movielens(tmp_path / "ml", small) == tmp_path / "ml"
    tutorial.prepared_movielens(tmp_path / "ml", small)  # the same config: reused
    tutorial.prepared_movielens(tmp_path / "ml", other)  # another: prepared again
    assert calls == [small, other]


def test_source_shows_the_packages_own_lines_with_where_they_are():
    import inspect

    from diffgrm.cpd_passes import pass_sizes
    from diffgrm.tutorial import source

    text = source(pass_sizes)
    start = inspect.getsourcelines(pass_sizes)[1]
    head, body = text.split("\n", 1)
    assert head == f"# diffgrm/cpd_passes.py, lines {start}-{start + len(body.splitlines()) - 1}"
    assert body.startswith("def pass_sizes(") and body == inspect.getsource(pass_sizes)
