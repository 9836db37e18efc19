"""Files in and out: every bad file becomes one clear error, and nothing is ever half-written.

Reading: :func:`read_text` decodes UTF-8 (a byte-order mark is dropped, not glued to the first
user id) and names the file and what to do when it is UTF-16 or not text at all; :func:`read_json`
and :func:`load_tensors` do the same for JSON and safetensors files.

Writing: :func:`atomic_write` writes a temporary file beside the target and renames it, so an
interrupt leaves either the old complete file or the new one; :func:`staged_folder` does the same
for a whole folder. :func:`check_output` decides whether a command may write into ``--out``: a
new or empty folder always, a previous result of the same kind only with ``--force``, and never
a folder that holds the input or anything else. :func:`output_lock` keeps two commands from
writing the same ``--out`` at once.

Checking: :func:`file_checksums` records the sha256 of the weights a folder holds (in its
``config.json``), and :func:`verify_checksums` compares them on load, so a flipped byte is an
error naming the file instead of silently different recommendations.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from diffgrm.errors import DiffGRMError

_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


# --------------------------------------------------------------------------- reading


def read_text(path: str | Path) -> str:
    """The text of a UTF-8 file (a leading byte-order mark removed); a clear error otherwise."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise DiffGRMError(f"{path} is a folder, expected a file") from None
    except OSError as exc:
        raise DiffGRMError(f"cannot read {path}: {exc.strerror or exc}") from None
    for bom, name in _BOMS.items():
        if raw.startswith(bom):
            raise DiffGRMError(f"{path} is encoded as {name}; save it as UTF-8 and try again")
    nul = raw.find(b"\x00")  # valid UTF-8 for ASCII-only UTF-16, but never in a text file
    if nul >= 0:
        line = raw[:nul].count(b"\n") + 1
        raise DiffGRMError(f"{path}:{line}: not UTF-8 text (it holds NUL bytes; it looks like UTF-16 or a binary "
                           "file); save it as UTF-8 and try again")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DiffGRMError(f"{path}:{line}: not UTF-8 text; save it as UTF-8 and try again") from None


JSON_KINDS = {dict: "object", list: "list"}


def parse_json(text: str, path: str | Path, kind: type = dict, line: int | None = None, note: str = "") -> Any:
    """``text`` (read from ``path``, or its line ``line``) as JSON holding one ``kind``: one clear error
    naming the file and line otherwise (``note`` is added to a syntax error, e.g. how to fix it)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DiffGRMError(f"{path}:{line or exc.lineno}: not valid JSON ({exc.msg}){note}") from None
    if not isinstance(value, kind):
        where = f"{path}:{line}" if line else str(path)
        raise DiffGRMError(f"{where}: expected a JSON {JSON_KINDS.get(kind, kind.__name__)}, found {type(value).__name__}")
    return value


def read_json(path: str | Path, kind: type = dict) -> Any:
    """A JSON file holding one ``kind`` (a dict unless said otherwise)."""
    return parse_json(read_text(path), path, kind, note="; the file is damaged")


def load_tensors(path: str | Path, framework: str = "numpy", device: str = "cpu") -> dict:
    """The arrays of a safetensors file; a truncated or foreign file is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise DiffGRMError(f"missing file {path}")
    try:
        if framework == "numpy":
            from safetensors.numpy import load_file

            return load_file(str(path))
        from safetensors.torch import load_file as load_torch

        return load_torch(str(path), device=device)
    except Exception as exc:  # safetensors raises its own error types (and OSError, ValueError)
        raise DiffGRMError(f"{path} is damaged or not a safetensors file ({_first_line(exc)})") from None


def require_keys(mapping: dict, keys: list[str], path: str | Path) -> None:
    missing = [k for k in keys if k not in mapping]
    if missing:
        raise DiffGRMError(f"{path} lacks {', '.join(map(repr, missing))}; the file is damaged or from another tool")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_checksums(folder: str | Path, names: tuple[str, ...]) -> dict[str, str]:
    """``{name: sha256}`` of the files ``names`` in ``folder``, to record beside them."""
    return {name: file_sha256(Path(folder) / name) for name in names}


def verify_checksums(folder: str | Path, recorded: object, where: str | Path, fix: str) -> None:
    """Refuse a file whose sha256 differs from the one ``where`` recorded; folders written before
    checksums were recorded (``recorded`` is None) load as before."""
    if recorded is None:
        return
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        raise DiffGRMError(f"{where}: 'sha256' should map file names to checksums; the file is damaged")
    for name, digest in recorded.items():
        path = Path(folder) / name
        if path.is_file() and file_sha256(path) != digest:
            raise DiffGRMError(f"{path} is damaged: its sha256 differs from the one recorded in {where}"
                               + (f"; {fix}" if fix else ""))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


# --------------------------------------------------------------------------- writing


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` for a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, value: Any, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(value, indent=indent) + "\n")


# --------------------------------------------------------------------------- output folders

RUN_FILES = ("config.json", "model.safetensors", "resume.json", "resume.safetensors", "history.jsonl")
PREPARED_FILES = ("tokenizer_report.json", "catalogue.safetensors", "splits")
DATA_FILES = ("user_sequence.txt", "items.jsonl")
KIND_NAMES = {"run": "a trained run", "prepared": "a prepared dataset", "data": "a dataset (user_sequence.txt, items.jsonl)",
              "export": "a diffgrm export"}
EXPORT_FILES = ("export.json",)  # what `diffgrm export` writes last (diffgrm.export.MARKER)


def folder_kind(path: str | Path) -> str:
    """What a would-be output path holds: missing, empty, file, run, prepared, data, export or other."""
    path = Path(path)
    if not path.exists():
        return "missing"
    if not path.is_dir():
        return "file"
    names = {p.name for p in path.iterdir()}
    if not names:
        return "empty"
    if names & set(EXPORT_FILES):
        return "export"
    if names & set(PREPARED_FILES):  # a prepared folder also has items.jsonl: check it first
        return "prepared"
    if names & set(RUN_FILES):
        return "run"
    if names & set(DATA_FILES):
        return "data"
    return "other"


def check_output(out: str | Path, kind: str, *, force: bool = False, inputs: tuple[str | Path, ...] = ()) -> str:
    """Refuse an ``--out`` that would lose data; returns what the folder holds now.

    ``kind`` is what the command writes (``run`` or ``prepared``). A folder of the same kind is
    replaced only with ``force``; the command's inputs, and folders of another kind or holding
    anything else, are never written into.
    """
    out = Path(out)
    found = folder_kind(out)
    if found == "file":
        raise DiffGRMError(f"--out {out} is a file, not a folder; choose a folder path")
    resolved = out.resolve()
    for src in inputs:
        src = Path(src).resolve()
        if resolved == src or resolved in src.parents:
            raise DiffGRMError(f"--out {out} holds this command's input ({src}); choose another folder")
    if found in ("missing", "empty"):
        return found
    if found != kind:
        what = KIND_NAMES.get(found, "other files")
        raise DiffGRMError(f"--out {out} is not empty: it holds {what}, not {KIND_NAMES[kind]}; "
                           "choose a new or empty folder (--force only replaces a previous result of this command)")
    if not force and not (kind == "run" and not (out / "config.json").is_file()):  # unfinished runs resume
        raise DiffGRMError(f"--out {out} already holds {KIND_NAMES[kind]}; pass --force to replace it, "
                           "or choose another folder")
    return found


@contextlib.contextmanager
def staged_folder(out: str | Path) -> Iterator[Path]:
    """Write a folder beside ``out`` and swap it in only when complete.

    On an error or an interrupt the partial folder is removed and ``out`` is as it was (absent,
    empty or the previous complete result).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.with_name(f".{out.name}.partial{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    swap_in(stage, out)


def swap_in(stage: str | Path, out: str | Path) -> None:
    """Put the complete folder ``stage`` at ``out``, replacing what was there, by two renames."""
    stage, out = Path(stage), Path(out)
    old = out.with_name(f".{out.name}.old{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- one writer per --out

_HELD: dict[Path, int] = {}  # lock files this process holds -> nesting depth (a caller may lock around train())


def lock_path(out: str | Path) -> Path:
    """The lock file of an output folder: beside it, so the folder itself stays a clean result."""
    out = Path(out).resolve()
    return out.with_name(f".{out.name}.lock")


@contextlib.contextmanager
def output_lock(out: str | Path) -> Iterator[None]:
    """Hold ``--out``'s lock while writing it: a second command gets a clear error, not a mixed folder.

    The lock is an ``flock`` on ``.OUT.lock`` beside ``out``; the kernel drops it when its process
    dies, so a lock file left by a killed command blocks nothing. The file is removed on release.
    """
    path = lock_path(out)
    if path in _HELD:  # already ours: nested in the same command
        _HELD[path] += 1
        try:
            yield
        finally:
            _HELD[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, out)
    _HELD[path] = 1
    try:
        yield
    finally:
        del _HELD[path]
        path.unlink(missing_ok=True)  # before unlocking: a command that opened it meanwhile sees it gone
        os.close(fd)


def _acquire(path: Path, out: str | Path) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {pid})" if pid.isdigit() else ""
            raise DiffGRMError(f"--out {out} is being written by another diffgrm command{who}; "
                               "wait for it to finish, or choose another folder") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)  # its holder released and removed it as we locked: lock the new file
