"""Property tests (hypothesis): random malformed inputs give a result or a DiffGRMError, nothing else.

Three readers face generated damage: the data-folder reader (random item records, user lines,
encodings and garbage), and the prepared-folder and run loaders (a random file of a real folder
truncated, overwritten in places, emptied or removed). Whatever they return must be consistent;
whatever they raise must be the one error type the CLI turns into an ``error:`` line.
Derandomized, so CI sees the same examples on every run.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffgrm.data import MIN_SEQUENCE, read_folder
from diffgrm.errors import DiffGRMError
from diffgrm.prepare import load_prepared
from diffgrm.train import load_run

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

IDS = ["a", "b", "c", "d", "e", "f", "7", "x y"]
values = st.one_of(st.none(), st.text(max_size=12), st.integers(-5, 5), st.floats(allow_nan=True), st.booleans(),
                   st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
records = st.fixed_dictionaries(
    {"item_id": st.one_of(st.sampled_from(IDS), values)},
    optional={"title": values, "text": values, "categories": values, "price": values},
)
item_lines = st.lists(st.one_of(records.map(json.dumps), st.text(max_size=20), st.just("")), min_size=0, max_size=10)
user_lines = st.lists(
    st.tuples(st.sampled_from(["u1", "u2", "u3", "\ufeffu4", "u1"]), st.lists(st.sampled_from(IDS + ["zz"]), max_size=6))
    .map(lambda t: " ".join([t[0], *t[1]])),
    max_size=6,
)
encodings = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "latin-1"])


@SETTINGS
@given(items=item_lines, users=user_lines, enc_items=encodings, enc_users=encodings, junk=st.binary(max_size=8))
def test_a_random_data_folder_reads_consistently_or_is_one_clear_error(items, users, enc_items, enc_users, junk):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "items.jsonl").write_bytes("\n".join(items).encode(enc_items, errors="replace"))
        (folder / "user_sequence.txt").write_bytes("\n".join(users).encode(enc_users, errors="replace") + junk)
        try:
            ds = read_folder(folder)
        except DiffGRMError as exc:
            assert str(exc) and "\n" not in str(exc)
            return
    assert ds.n_items == len(ds.items) == len(set(ds.items["item_id"]))
    assert all(t.strip() for t in ds.items["text"])
    assert len(set(ds.users)) == len(ds.users) and not any(u.startswith("\ufeff") for u in ds.users)
    for seq in ds.sequences:
        assert len(seq) >= MIN_SEQUENCE and seq.min() >= 0 and seq.max() < ds.n_items


def corrupt(path: Path, how: str, at: float, raw: bytes) -> None:
    data = path.read_bytes()
    cut = int(at * len(data))
    if how == "truncate":
        path.write_bytes(data[:cut])
    elif how == "overwrite":
        path.write_bytes(data[:cut] + raw + data[cut + len(raw):])
    elif how == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()


damage = st.tuples(st.sampled_from(["truncate", "overwrite", "empty", "remove"]), st.floats(0, 1),
                   st.binary(min_size=1, max_size=16))


@SETTINGS
@given(which=st.integers(0, 1_000), how=damage)
def test_a_damaged_prepared_folder_loads_or_is_one_clear_error(chain_prepared, which, how):
    files = sorted(p.relative_to(chain_prepared) for p in chain_prepared.rglob("*") if p.is_file())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(shutil.copytree(chain_prepared, Path(tmp) / "p"))
        corrupt(folder / files[which % len(files)], *how)
        try:
            prepared = load_prepared(folder)
        except DiffGRMError as exc:
            assert str(exc) and "\n" not in str(exc)
            return
    codes = prepared.catalogue.codes
    assert len(codes) == prepared.n_items == len(prepared.embeddings)
    assert codes.min() >= 0 and codes.max() < prepared.catalogue.codebook_size
    for split in prepared.splits.values():
        assert split.targets.max() < prepared.n_items
        assert all(len(h) == 0 or h.max() < prepared.n_items for h in split.histories)


@SETTINGS
@given(which=st.sampled_from(["config.json", "model.safetensors"]), how=damage)
def test_a_damaged_run_loads_or_is_one_clear_error(chain_run, which, how):
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(shutil.copytree(chain_run, Path(tmp) / "r"))
        corrupt(run / which, *how)
        try:
            model, prepared, _ = load_run(run, device="cpu")
        except DiffGRMError as exc:
            assert str(exc) and "\n" not in str(exc)
            return
    assert model.config.n_digits == prepared.catalogue.n_digits
    assert all(np.isfinite(p.detach().numpy()).all() or how[0] == "overwrite" for p in model.parameters())
