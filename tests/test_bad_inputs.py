"""Bad inputs, table-driven: every one exits 2 with one ``error:`` line and changes no file.

Each case builds its own damaged copy (of a data folder, the chain prepared folder or the chain
run) under the test's folder and names the command to run. The harness snapshots every file
under that folder and the shared fixtures before and after, so "no traceback" and "nothing
lost or half-written" are checked together, for every case.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from diffgrm.cli import main
from tests.conftest import write_chain_dataset, write_folder_dataset


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file and folder under ``roots``: path -> content hash ("dir" for folders)."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            out[str(p)] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclass
class Env:
    """What a case may use: its own folder, the shared prepared folder and runs (never to be damaged)."""

    tmp: Path
    prepared: Path
    run: Path
    sasrec: Path

    def data(self) -> Path:
        return write_chain_dataset(self.tmp / "data", n_items=40, n_users=30)

    def copy_prepared(self) -> Path:
        return Path(shutil.copytree(self.prepared, self.tmp / "prepared"))

    def copy_run(self) -> Path:
        return Path(shutil.copytree(self.run, self.tmp / "run"))

    def copy_sasrec(self) -> Path:
        return Path(shutil.copytree(self.sasrec, self.tmp / "sasrec"))


@pytest.fixture(scope="session")
def chain_sasrec_run(chain_prepared, tmp_path_factory) -> Path:
    """A small SASRec run on the chain catalogue (seconds)."""
    from diffgrm.prepare import load_prepared
    from diffgrm.sasrec import SASRecConfig, train_sasrec

    run = tmp_path_factory.mktemp("chain_sasrec") / "run"
    cfg = SASRecConfig(d_model=16, n_heads=2, n_layers=1, epochs=2, batch_size=64)
    train_sasrec(load_prepared(chain_prepared), cfg, run, device="cpu", progress=False)
    return run


def edit_json(path: Path, change: Callable[[dict], object]) -> None:
    """Change a JSON object in place (``change`` mutates it)."""
    value = json.loads(path.read_text())
    change(value)
    path.write_text(json.dumps(value))


def truncate(path: Path, keep: int = 100) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


def items_line(env: Env, record: dict | str, line: int = 3) -> Path:
    """A data folder whose items.jsonl has ``record`` on one line."""
    data = env.data()
    lines = (data / "items.jsonl").read_text().splitlines() + [""]
    lines[line - 1] = record if isinstance(record, str) else json.dumps(record)
    (data / "items.jsonl").write_text("\n".join(lines) + "\n")
    return data


def prepare(data: Path | str, env: Env, *extra: str) -> list[str]:
    return ["prepare", "--dataset", str(data), "--out", str(env.tmp / "out"), "--codebook", "8", "--quiet", *extra]


def train(env: Env, data: Path | None = None, *extra: str, out: Path | None = None) -> list[str]:
    return ["train", str(data or env.prepared), "--out", str(out or env.tmp / "newrun"), "--preset", "tiny",
            "--epochs", "1", "--max-steps", "2", "--quiet", *extra]


def evaluate(run: Path, *extra: str) -> list[str]:
    return ["evaluate", str(run), "--users", "5", "--quiet", *extra]


def encoded(env: Env, file: str, encoding: str) -> Path:
    data = env.data()
    text = (data / file).read_text()
    (data / file).write_bytes(text.encode(encoding))
    return data


def unfinished_run(env: Env, epochs: str) -> Path:
    """A run interrupted after its first epoch (resume state, no checkpoint)."""
    from dataclasses import replace

    from diffgrm.config import preset
    from diffgrm.prepare import load_prepared
    from diffgrm.train import train as train_fn

    def stop(epoch, model, row):
        if epoch == 2:  # epoch 1's state is saved by then
            raise KeyboardInterrupt

    model_cfg, cfg = preset("tiny", n_digits=4, codebook_size=8)
    cfg = replace(cfg, epochs=int(epochs), max_steps=2, eval_users=5)
    with pytest.raises(KeyboardInterrupt):
        train_fn(load_prepared(env.prepared), model_cfg, cfg, env.tmp / "half", device="cpu", progress=False, on_epoch=stop)
    return env.tmp / "half"


def other_catalogue(env: Env) -> Path:
    """The chain prepared folder with two items' SIDs swapped: another fingerprint, same shape."""
    from safetensors.numpy import load_file

    from tests.conftest import save_catalogue

    folder = env.copy_prepared()
    arrays = load_file(str(folder / "catalogue.safetensors"))
    arrays["codes"][[0, 1]] = arrays["codes"][[1, 0]]
    save_catalogue(folder, arrays)
    return folder


def legacy(run: Path) -> Path:
    """A run as diffgrm wrote it before runs carried their catalogue."""
    shutil.rmtree(run / "catalogue")
    edit_json(run / "config.json", lambda m: m.pop("format"))
    return run


def older_sasrec(env: Env, data: Path) -> Path:
    """The SASRec run as diffgrm wrote SASRec runs before they shared the configs: sizes among the
    training settings, the item count in "model", no catalogue of its own."""
    run = env.copy_sasrec()
    meta = json.loads((run / "config.json").read_text())
    m, t = meta["model"], meta["train"]
    train = {"d_model": m["d_model"], "n_heads": m["n_heads"], "n_layers": m["enc_layers"], "dropout": m["dropout"],
             "max_history": m["max_history"], **{k: t[k] for k in ("epochs", "batch_size", "lr", "seed")}}
    (run / "config.json").write_text(json.dumps({"model": {"kind": "sasrec", "n_items": 60}, "train": train,
                                                 "fingerprint": meta["fingerprint"], "data": str(data),
                                                 "sha256": meta["sha256"]}))
    shutil.rmtree(run / "catalogue")
    return run


def flip_last_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


def zipped(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    return path


def packed(env: Env, change: Callable[[dict, dict], object] | None = None) -> Path:
    """The chain run packed (in a folder of its own), its manifest and members changed by ``change``."""
    from diffgrm.pack import MANIFEST, pack

    path = pack(env.run, env.tmp / "packs" / "run.zip")
    with zipfile.ZipFile(path) as zf:
        blobs = {name: zf.read(name) for name in zf.namelist()}
    manifest = json.loads(blobs.pop(MANIFEST))
    if change is not None:
        change(manifest, blobs)
    return zipped(path, {MANIFEST: json.dumps(manifest).encode(), **blobs})


def escape(manifest: dict, blobs: dict) -> None:
    """A member that would land outside the unpacked folder, listed like any other."""
    blobs["run/../../escape.txt"] = b"x"
    manifest["files"]["run/../../escape.txt"] = hashlib.sha256(b"x").hexdigest()


def case(setup: Callable[[Env], list[str]], expect: str, id: str):
    return pytest.param(setup, expect, id=id)


CASES = [
    # ---------------------------------------------------------------- data folders (prepare)
    case(lambda e: prepare(encoded(e, "user_sequence.txt", "utf-16"), e), "user_sequence.txt is encoded as UTF-16", "utf16-bom"),
    case(lambda e: prepare(encoded(e, "items.jsonl", "utf-16-le"), e), "items.jsonl:1: not UTF-8 text (it holds NUL bytes; it looks like UTF-16", "utf16-no-bom"),
    case(lambda e: prepare(latin1(e), e), "items.jsonl:3: not UTF-8 text", "latin-1"),
    case(lambda e: prepare(items_line(e, {"item_id": "I2", "text": 42}), e), "items.jsonl:3: 'text' must be a string", "text-number"),
    case(lambda e: prepare(items_line(e, {"item_id": "I2", "title": ["a", "b"]}), e), "'title' must be a string", "title-list"),
    case(lambda e: prepare(items_line(e, {"item_id": 2.5, "title": "x"}), e), "'item_id' must be a string or a whole number", "id-float"),
    case(lambda e: prepare(items_line(e, {"item_id": True, "title": "x"}), e), "'item_id' must be a string", "id-bool"),
    case(lambda e: prepare(items_line(e, {"item_id": "I 2", "title": "x"}), e), "holds whitespace", "id-space"),
    case(lambda e: prepare(items_line(e, "{not json"), e), "items.jsonl:3: not valid JSON", "items-not-json"),
    case(lambda e: prepare(items_line(e, "[1, 2]"), e), "items.jsonl:3: expected a JSON object", "items-list"),
    case(lambda e: prepare(items_line(e, {"title": "no id"}), e), "items.jsonl:3: the item has no 'item_id'", "items-no-id"),
    case(lambda e: prepare(items_line(e, {"item_id": "I0", "title": "again"}, line=41), e), "item 'I0' appears twice",
         "items-duplicate"),
    case(lambda e: prepare(items_line(e, {"item_id": "I2", "title": "", "categories": []}), e), "have no text", "items-no-text"),
    case(lambda e: prepare(seq_append(e, "U0 I1 I2 I3\n"), e), "user 'U0' has more than one sequence", "user-twice"),
    case(lambda e: prepare(seq_append(e, "Z I1 I2 NOPE\n"), e), "item 'NOPE' is not in items.jsonl", "unknown-item"),
    case(lambda e: prepare(seq_replace(e, ""), e), "holds no user sequences", "seq-empty"),
    case(lambda e: prepare(seq_replace(e, "A I1 I2\nB I3\n"), e), "no user with at least 3 items", "seq-too-short"),
    case(lambda e: prepare(seq_replace_bytes(e, bytes(range(256))), e), "not UTF-8 text", "seq-binary"),
    case(lambda e: prepare(remove(e.data(), "items.jsonl"), e), "missing file", "items-missing"),
    case(lambda e: prepare(remove(e.data(), "items.jsonl", "user_sequence.txt"), e), "missing file", "both-missing"),
    case(lambda e: prepare(e.tmp / "nowhere", e), "unknown dataset", "dataset-missing"),
    case(lambda e: prepare(e.data() / "items.jsonl", e), "unknown dataset", "dataset-is-a-file"),
    # ---------------------------------------------------------------- prepare: options and --out
    case(lambda e: prepare(e.data(), e) + ["--codebook", "100"], "power of two", "codebook-100"),
    case(lambda e: prepare(e.data(), e) + ["--digits", "0"], "--digits: must be between 1 and 16", "digits-0"),
    case(lambda e: prepare(e.data(), e) + ["--seed", "-1"], "--seed: must be at least 0", "seed-negative"),
    case(lambda e: prepare(e.data(), e) + ["--tokenizer", "lsh"], "invalid choice", "tokenizer-unknown"),
    case(lambda e: prepare(e.data(), e) + ["--bogus"], "unrecognized arguments", "unknown-option"),
    case(lambda e: [*prepare(e.data(), e)[:4], str(touch(e.tmp / "out")), *prepare(e.data(), e)[5:]], "is a file", "out-is-file"),
    case(lambda e: [*prepare(d := e.data(), e)[:4], str(d), *prepare(d, e)[5:]], "holds this command's input", "out-is-input"),
    case(lambda e: [*prepare(e.data(), e)[:4], str(write_chain_dataset(e.tmp / "other")), *prepare(e.data(), e)[5:], "--force"],
         "not empty: it holds a dataset (user_sequence.txt, items.jsonl)", "out-is-other-data"),
    case(lambda e: [*prepare(d := e.data(), e)[:4], str(d.parent), *prepare(d, e)[5:], "--force"], "holds this command's input",
         "out-holds-input-force"),
    case(lambda e: [*prepare(e.data(), e)[:4], str(e.copy_prepared()), *prepare(e.data(), e)[5:]],
         "already holds a prepared dataset; pass --force", "out-prepared"),
    case(lambda e: [*prepare(e.data(), e)[:4], str(e.copy_run()), *prepare(e.data(), e)[5:], "--force"],
         "holds a trained run, not a prepared dataset", "out-is-run"),
    case(lambda e: [*prepare(e.data(), e)[:4], str(stray(e)), *prepare(e.data(), e)[5:], "--force"],
         "holds other files", "out-other"),
    # ---------------------------------------------------------------- train: options
    case(lambda e: train(e) + ["--epochs", "0"], "--epochs: must be at least 1, got 0", "epochs-0"),
    case(lambda e: train(e) + ["--epochs", "two"], "--epochs: expected a whole number", "epochs-text"),
    case(lambda e: train(e) + ["--max-steps", "0"], "--max-steps: must be at least 1", "max-steps-0"),
    case(lambda e: train(e) + ["--max-minutes", "-3"], "--max-minutes: must be a positive number", "max-minutes"),
    case(lambda e: train(e) + ["--max-minutes", "nan"], "--max-minutes: must be a positive number", "max-minutes-nan"),
    case(lambda e: train(e) + ["--label-smoothing", "1.5"], "--label-smoothing: must be at least 0 and below 1", "smoothing"),
    case(lambda e: train(e) + ["--input-dropout", "-0.1"], "--input-dropout: must be at least 0", "input-dropout"),
    case(lambda e: train(e) + ["--min-history", "0"], "--min-history: must be at least 1", "min-history-0"),
    case(lambda e: train(e) + ["--model", "gpt"], "invalid choice", "model-unknown"),
    case(lambda e: train(e) + ["--precision", "int8"], "invalid choice", "precision-unknown"),
    # ---------------------------------------------------------------- train: data folders
    case(lambda e: train(e, e.tmp / "nowhere"), "is not a folder", "data-missing"),
    case(lambda e: train(e, e.data()), "is not a prepared dataset (missing catalogue.safetensors)", "data-raw"),
    case(lambda e: train(e, damage(e.copy_prepared(), "catalogue.safetensors", truncate)), "catalogue.safetensors is damaged",
         "catalogue-truncated"),
    case(lambda e: train(e, damage(e.copy_prepared(), "tokenizer_report.json", truncate)), ("tokenizer_report.json:", "not valid JSON"),
         "report-truncated"),
    case(lambda e: train(e, damage(e.copy_prepared(), "tokenizer_report.json", lambda p: edit_json(p, lambda r: r.pop("codebook_size")))),
         "lacks 'codebook_size'", "report-key"),
    case(lambda e: train(e, damage(e.copy_prepared(), "splits/train.tsv", lambda p: append(p, "U1\t1 2\n"))),
         "expected 'user<TAB>history<TAB>target'", "split-row"),
    case(lambda e: train(e, damage(e.copy_prepared(), "splits/valid.tsv", lambda p: append(p, "U1\t1 2\t999\n"))),
         "item index outside", "split-index"),
    case(lambda e: train(e, damage(e.copy_prepared(), "items.jsonl", lambda p: drop_last_line(p))), "the folder is inconsistent",
         "items-short"),
    case(lambda e: train(e, damage(e.copy_prepared(), "items.jsonl", lambda p: p.write_bytes(p.read_text().encode("utf-16")))),
         "items.jsonl is encoded as UTF-16", "prepared-utf16"),
    # ---------------------------------------------------------------- train: --out
    case(lambda e: train(e, out=e.copy_run()), "already holds a trained run; pass --force", "out-finished-run"),
    case(lambda e: train(e, e.copy_prepared(), out=e.tmp / "prepared"), "holds this command's input", "out-is-data"),
    case(lambda e: train(e, out=touch(e.tmp / "x")), "is a file", "train-out-file"),
    case(lambda e: train(e, out=stray(e)) + ["--force"], "holds other files", "train-out-other"),
    case(lambda e: train(e, out=unfinished_run(e, "3")), "holds an unfinished run with other settings", "out-unfinished-other"),
    case(lambda e: train(e, out=damage(unfinished_run(e, "2"), "resume.safetensors", truncate)),
         "resume state of", "resume-damaged"),
    # ---------------------------------------------------------------- evaluate / recommend: runs
    case(lambda e: evaluate(e.tmp / "nowhere"), "holds no checkpoint", "run-missing"),
    case(lambda e: evaluate(damage(e.copy_run(), "model.safetensors", truncate)), "model.safetensors is damaged", "weights-truncated"),
    case(lambda e: evaluate(damage(e.copy_run(), "model.safetensors", lambda p: p.write_bytes(b"\x00" * 64))),
         "model.safetensors is damaged", "weights-zeros"),
    case(lambda e: evaluate(damage(e.copy_run(), "config.json", lambda p: edit_json(p, lambda m: m["model"].update(d_model=96)))),
         "does not match", "config-other-size"),
    case(lambda e: evaluate(damage(e.copy_run(), "config.json", lambda p: edit_json(p, lambda m: m["model"].update(d_model="wide")))),
         "the model settings are damaged", "config-bad-type"),
    case(lambda e: evaluate(damage(e.copy_run(), "config.json", truncate)), ("config.json:", "not valid JSON"), "config-truncated"),
    case(lambda e: evaluate(damage(e.copy_run(), "config.json", lambda p: p.write_text("[1]"))), "expected a JSON object", "config-list"),
    case(lambda e: evaluate(damage(e.copy_run(), "config.json", lambda p: edit_json(p, lambda m: m.pop("fingerprint")))),
         "lacks 'fingerprint'", "config-key"),
    case(lambda e: evaluate(damage(e.copy_run(), "config.json", lambda p: edit_json(p, lambda m: m.update(data=str(e.tmp / "gone"))))),
         "is not on this machine; pass --data", "data-gone"),
    case(lambda e: evaluate(e.run, "--data", str(e.tmp / "nowhere")), "no data at", "data-nowhere"),
    case(lambda e: evaluate(e.run, "--data", str(write_folder_dataset(e.tmp / "other-items"))),
         "not in this run's catalogue (e.g. 'I100')", "data-other-items"),
    case(lambda e: evaluate(legacy(e.copy_run()), "--data", str(other_catalogue(e))), "trained on another catalogue",
         "legacy-other-catalogue"),
    case(lambda e: evaluate(damage(e.copy_run(), "catalogue/catalogue.safetensors", flip_last_byte)),
         "catalogue.safetensors is damaged", "run-catalogue-flipped"),
    case(lambda e: evaluate(damage(e.copy_run(), "catalogue/items.jsonl", drop_last_line)), "the folder is inconsistent",
         "run-catalogue-short"),
    case(lambda e: evaluate(damage(e.copy_run(), "config.json", lambda p: edit_json(p, lambda m: m.update(fingerprint="0" * 16)))),
         "holds another catalogue", "run-catalogue-other"),
    case(lambda e: evaluate(damage(e.copy_run(), "config.json", lambda p: edit_json(p, lambda m: m["model"].update(d_modle=64)))),
         ("config.json 'model': unknown key 'd_modle' in ModelConfig",), "config-unknown-key"),
    case(lambda e: evaluate(damage(e.copy_run(), "config.json", lambda p: edit_json(p, lambda m: m["train"].update(ocn_views=-2)))),
         "the training settings are damaged (ocn_views must be between 0 and 16, got -2)", "config-bad-train-value"),
    case(lambda e: evaluate(e.run, "--beam", "5"), "must be at least K", "beam-below-k"),
    case(lambda e: evaluate(e.run, "--users", "-1"), "--users: must be at least 0", "users-negative"),
    case(lambda e: evaluate(e.run, "--split", "train"), "invalid choice", "split-unknown"),
    case(lambda e: ["recommend", str(e.run), "--user", "nobody"], "user 'nobody' is not in", "user-unknown"),
    case(lambda e: ["recommend", str(e.run), "--user", "U0", "--k", "0"], "--k: must be at least 1", "k-0"),
    case(lambda e: ["recommend", str(e.run), "--user", "U0", "--trace", str(e.tmp / "no" / "t.csv")], "--trace", "trace-folder"),
    case(lambda e: ["recommend", str(e.run), "--user", "U0", "--trace", str(e.tmp / "t.txt")], "--trace", "trace-suffix"),
    # ---------------------------------------------------------------- SASRec runs: the same checks
    case(lambda e: evaluate(damage(e.copy_sasrec(), "model.safetensors", truncate)), "model.safetensors is damaged",
         "sasrec-weights-truncated"),
    case(lambda e: evaluate(damage(e.copy_sasrec(), "model.safetensors", flip_last_byte)),
         "model.safetensors is damaged: its sha256 differs", "sasrec-weights-flipped"),
    case(lambda e: evaluate(remove(e.copy_sasrec(), "model.safetensors")), "holds no checkpoint", "sasrec-weights-missing"),
    case(lambda e: evaluate(damage(e.copy_sasrec(), "config.json", lambda p: edit_json(p, lambda m: m["model"].update(d_model=48)))),
         "does not match", "sasrec-config-other-size"),
    case(lambda e: evaluate(damage(e.copy_sasrec(), "config.json", lambda p: edit_json(p, lambda m: m["train"].update(warp=9)))),
         "config.json 'train': unknown key 'warp' in TrainConfig", "sasrec-config-unknown-key"),
    case(lambda e: evaluate(damage(e.copy_sasrec(), "config.json", lambda p: edit_json(p, lambda m: m.update(fingerprint="0" * 16)))),
         "holds another catalogue", "sasrec-other-catalogue"),
    case(lambda e: evaluate(damage(e.copy_sasrec(), "catalogue/catalogue.safetensors", flip_last_byte)),
         "catalogue.safetensors is damaged", "sasrec-catalogue-flipped"),
    case(lambda e: evaluate(older_sasrec(e, other_catalogue(e))), "trained on another catalogue", "sasrec-older-other-catalogue"),
    case(lambda e: evaluate(e.sasrec, "--passes", "2"), "--passes applies to DiffGRM runs", "sasrec-passes"),
    case(lambda e: ["recommend", str(e.sasrec), "--user", "U0"], "is a SASRec run", "sasrec-recommend"),
    case(lambda e: train(e) + ["--model", "sasrec", "--select", "sid"], "chosen at item level", "sasrec-select-sid"),
    case(lambda e: train(e) + ["--lr", "-1"], "--lr: must be a positive number, got -1", "train-lr"),
    # ---------------------------------------------------------------- app, fetch
    case(lambda e: ["app", str(e.tmp), "--dry-run"], "holds no checkpoint", "app-no-run"),
    case(lambda e: ["app", str(e.run), "--port", "0", "--dry-run"], "--port: must be between 1 and 65535", "app-port"),
    case(lambda e: ["app", str(e.run), "--data", str(e.tmp / "nowhere"), "--dry-run"], "no data at", "app-data-nowhere"),
    case(lambda e: ["app", str(damage(e.copy_run(), "config.json", lambda p: edit_json(p, lambda m: m.update(
        data=str(e.tmp / "gone"))))), "--dry-run"], "is not on this machine; pass --data", "app-data-gone"),
    # ---------------------------------------------------------------- pack, unpack
    case(lambda e: ["pack", str(e.tmp / "nowhere"), "--out", str(e.tmp / "x.zip")], "is not a run folder", "pack-no-run"),
    case(lambda e: ["pack", str(e.run), "--out", str(e.tmp)], "is a folder", "pack-out-folder"),
    case(lambda e: ["pack", str(legacy(e.copy_run())), "--out", str(e.tmp / "x.zip")], "another diffgrm version",
         "pack-legacy"),
    case(lambda e: ["unpack", str(touch(e.tmp / "x.zip")), "--out", str(e.tmp / "out")], "is not a zip file", "unpack-not-zip"),
    case(lambda e: ["unpack", str(zipped(e.tmp / "x.zip", {"run/config.json": b"{}"})), "--out", str(e.tmp / "out")],
         "not a diffgrm pack", "unpack-no-manifest"),
    case(lambda e: ["unpack", str(packed(e, lambda m, blobs: blobs.update({"run/history.jsonl": b"{}"}))), "--out",
                    str(e.tmp / "out")], "history.jsonl is damaged", "unpack-damaged"),
    case(lambda e: ["unpack", str(packed(e, escape)), "--out", str(e.tmp / "out")], "refusing the member", "unpack-escape"),
    case(lambda e: ["unpack", str(packed(e, lambda m, blobs: m.update(version=99))), "--out", str(e.tmp / "out")],
         "this diffgrm reads format 1", "unpack-newer"),
    case(lambda e: ["unpack", str(packed(e)), "--out", str(e.copy_run())], "already holds a trained run", "unpack-over-run"),
    case(lambda e: ["unpack", str(packed(e)), "--out", str(stray(e))], "holds other files", "unpack-over-other"),
    case(lambda e: ["fetch", "netflix-prize"], "nothing to fetch", "fetch-unknown"),
]


def latin1(env: Env) -> Path:
    data = env.data()
    lines = (data / "items.jsonl").read_bytes().split(b"\n")
    lines[2] = b'{"item_id": "I2", "title": "Cr\xe8me br\xfbl\xe9e"}'
    (data / "items.jsonl").write_bytes(b"\n".join(lines))
    return data


def seq_append(env: Env, text: str) -> Path:
    data = env.data()
    append(data / "user_sequence.txt", text)
    return data


def seq_replace(env: Env, text: str) -> Path:
    data = env.data()
    (data / "user_sequence.txt").write_text(text)
    return data


def seq_replace_bytes(env: Env, raw: bytes) -> Path:
    data = env.data()
    (data / "user_sequence.txt").write_bytes(raw)
    return data


def append(path: Path, text: str) -> None:
    with open(path, "a") as fh:
        fh.write(text)


def drop_last_line(path: Path) -> None:
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")


def remove(folder: Path, *names: str) -> Path:
    for n in names:
        (folder / n).unlink()
    return folder


def damage(folder: Path, name: str, how: Callable[[Path], object]) -> Path:
    how(folder / name)
    return folder


def touch(path: Path) -> Path:
    path.write_text("not a folder\n")
    return path


def stray(env: Env) -> Path:
    folder = env.tmp / "notes"
    folder.mkdir()
    (folder / "thesis.tex").write_text("\\section{Keep me}\n")
    return folder


@pytest.mark.parametrize("setup, expect", CASES)
def test_bad_input_is_one_error_line_and_changes_nothing(setup, expect, chain_prepared, chain_run, chain_sasrec_run,
                                                         tmp_path, capsys):
    env = Env(tmp=tmp_path / "case", prepared=chain_prepared, run=chain_run, sasrec=chain_sasrec_run)
    env.tmp.mkdir()
    argv = setup(env)
    capsys.readouterr()
    before = snapshot(env.tmp, chain_prepared, chain_run, chain_sasrec_run)
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (argv, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for part in (expect,) if isinstance(expect, str) else expect:
        assert part in lines[0], lines[0]
    assert "Traceback" not in err
    assert snapshot(env.tmp, chain_prepared, chain_run, chain_sasrec_run) == before, "a file was written, changed or removed"

