"""`diffgrm synth` and bring-your-own item vectors (``item_embeddings.npy``): written, read, checked,
and prepared without the sentence encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffgrm.cli import main
from diffgrm.data import EMBEDDINGS_FILE, read_folder
from diffgrm.errors import DiffGRMError
from diffgrm.synth import synthesize


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "data"
    counts = synthesize(out, 2000, 400, dim=32, seed=3, progress=False)
    return out, counts


def test_synth_writes_a_data_folder_with_clustered_vectors_and_topical_users(synth):
    out, counts = synth
    ds = read_folder(out)
    assert ds.n_items == 2000 and ds.n_users == 400 and ds.n_interactions == counts["interactions"]
    assert ds.embeddings.shape == (2000, 32) and ds.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ds.embeddings, axis=1), 1.0, rtol=1e-5)
    topic = np.array([int(json.loads(line)["categories"][0][2].split()[1])
                      for line in (out / "items.jsonl").read_text().splitlines()])
    # vectors carry the topics: an item's nearest other item is usually in its topic
    sims = ds.embeddings @ ds.embeddings.T
    np.fill_diagonal(sims, -2)
    assert (topic[sims.argmax(1)] == topic).mean() > 0.8
    # sequences follow the topics: consecutive items share a topic far more often than by chance
    same = np.mean([np.mean(topic[s[1:]] == topic[s[:-1]]) for s in ds.sequences])
    chance = np.sum(np.bincount(topic) ** 2) / len(topic) ** 2
    assert same > 0.4 and same > 5 * chance
    lengths = [len(s) for s in ds.sequences]
    assert min(lengths) >= 5 and max(lengths) <= 20


def test_synth_is_reproducible_and_refuses_to_overwrite(synth, tmp_path):
    out, _ = synth
    again = tmp_path / "again"
    synthesize(again, 2000, 400, dim=32, seed=3, progress=False)
    for name in ("items.jsonl", "user_sequence.txt", EMBEDDINGS_FILE):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    with pytest.raises(DiffGRMError, match="already holds a dataset"):
        synthesize(again, 100, 10, progress=False)
    synthesize(again, 100, 10, progress=False, force=True)
    assert read_folder(again).n_items == 100


def test_prepare_uses_the_folders_vectors_and_never_the_encoder(synth, tmp_path, monkeypatch):
    import diffgrm.prepare as prepare_module

    def no_encoder(*args, **kwargs):
        raise AssertionError("the sentence encoder ran although the folder brought its vectors")

    monkeypatch.setattr(prepare_module, "embed_texts", no_encoder)
    out, _ = synth
    assert main(["prepare", "--dataset", str(out), "--out", str(tmp_path / "p"), "--codebook", "16", "--quiet"]) == 0
    report = json.loads((tmp_path / "p" / "tokenizer_report.json").read_text())
    assert report["encoder"] == EMBEDDINGS_FILE and report["embedding_dim"] == 32
    from diffgrm.prepare import load_prepared

    prepared = load_prepared(tmp_path / "p")
    np.testing.assert_array_equal(prepared.embeddings, read_folder(out).embeddings)


def test_cli_synth_then_prepare_and_its_errors(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["synth", "--items", "300", "--users", "60", "--out", str(out), "--dim", "8", "--quiet"]) == 0
    assert "300 items" in capsys.readouterr().err
    assert main(["synth", "--items", "5", "--users", "60", "--out", str(tmp_path / "x")]) == 2
    assert "--items: must be at least 10" in capsys.readouterr().err
    assert main(["synth", "--items", "50", "--users", "5", "--out", str(tmp_path / "y"), "--min-length", "9",
                 "--max-length", "4"]) == 2
    assert "2 <= min <= max" in capsys.readouterr().err
    assert main(["prepare", "--dataset", str(out), "--out", str(tmp_path / "p"), "--encoder", "all-MiniLM-L6-v2"]) == 2
    err = capsys.readouterr().err
    assert "carries item_embeddings.npy" in err and "Traceback" not in err


def _folder_with(tmp_path, vectors, n_items=20, name="byo"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "items.jsonl").write_text("".join(json.dumps({"item_id": f"i{i}"}) + "\n" for i in range(n_items)))
    (folder / "user_sequence.txt").write_text("".join(f"u{u} i{u} i{u + 1} i{u + 2}\n" for u in range(n_items - 2)))
    np.save(folder / EMBEDDINGS_FILE, vectors)
    return folder


@pytest.mark.parametrize("vectors, message", [
    (np.zeros((19, 4), np.float32), "has 19 rows but items.jsonl has 20 items"),
    (np.zeros(20, np.float32), "must be a 2-D float array"),
    (np.zeros((20, 4), np.int64), "must be a 2-D float array"),
    (np.zeros((20, 1), np.float32), "at least 2 dimensions"),
    (np.where(np.arange(80).reshape(20, 4) == 29, np.nan, 0.0), "row 7 holds NaN"),
    (np.array([{"a": 1}] * 20, dtype=object), "not a readable .npy array"),
])
def test_bad_item_vectors_are_clear_errors(tmp_path, vectors, message):
    with pytest.raises(DiffGRMError, match=message):
        read_folder(_folder_with(tmp_path, vectors))


def test_items_without_text_are_allowed_when_the_folder_brings_vectors(tmp_path):
    rng = np.random.default_rng(0)
    ds = read_folder(_folder_with(tmp_path, rng.normal(size=(20, 4)).astype(np.float64)))
    assert ds.items["title"].tolist()[:2] == ["i0", "i1"] and ds.embeddings.dtype == np.float32
    (tmp_path / "byo" / EMBEDDINGS_FILE).unlink()
    with pytest.raises(DiffGRMError, match="have no text at all"):
        read_folder(tmp_path / "byo")
