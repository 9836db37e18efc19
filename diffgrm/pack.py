"""A run as one file: ``diffgrm pack RUN --out FILE``, ``diffgrm unpack FILE --out DIR``.

A pack is a zip of a run folder (weights, configs, history, metrics, codebook map and its own
catalogue: :mod:`diffgrm.portable`), optionally with its AR companion, and ``pack.json``, which
lists every file with its sha256. Unpacking checks every byte against that list and writes
nothing until all of it checks out, so a colleague's ``diffgrm app FILE`` opens exactly the run
that was packed. The users' interactions are not packed: the run reads them from its data
(MovieLens-100K from the fetched copy; a folder of your own with ``--data``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import zipfile
from pathlib import Path, PurePosixPath

from diffgrm import __version__
from diffgrm.errors import DiffGRMError
from diffgrm.portable import verify_run
from diffgrm.safeio import atomic_write, check_output, read_json, staged_folder, write_json

MANIFEST = "pack.json"
PACK_FORMAT = 1
ROLES = ("run", "ar")
"""A pack's folders: the run, and its AR companion (unpacked beside it as ``OUT-ar``)."""
LEFT_OUT = ("resume.json", "resume.safetensors", MANIFEST)
"""Files of a run folder that a pack leaves out: an unfinished run's state, an unpacked run's list."""
STAMP = (1980, 1, 1, 0, 0, 0)
"""Every member's date: the same run packs into the same bytes."""


def pack(run: str | Path, out: str | Path, ar: str | Path | None = None) -> Path:
    """Write ``out``, one zip of ``run`` (and of ``ar``, its AR companion, when given)."""
    folders = {"run": Path(run)} | ({"ar": Path(ar)} if ar is not None else {})
    for folder in folders.values():
        if not folder.is_dir():
            raise DiffGRMError(f"{folder} is not a run folder")
        verify_run(folder)
    out = Path(out)
    if out.is_dir():
        raise DiffGRMError(f"--out {out} is a folder; give a file name such as {out / folders['run'].name}.zip")
    members: dict[str, bytes] = {}  # each file read once: hashed for the manifest, then written
    for role, folder in folders.items():
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if path.is_file() and path.name not in LEFT_OUT and not any(p.startswith(".") for p in rel.parts):
                members[f"{role}/{rel.as_posix()}"] = path.read_bytes()
    manifest = {"format": "diffgrm-pack", "version": PACK_FORMAT, "diffgrm_version": __version__,
                "runs": {role: folder.name for role, folder in folders.items()},
                "files": {name: _sha256(blob) for name, blob in members.items()}}

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(zipfile.ZipInfo(MANIFEST, STAMP), json.dumps(manifest, indent=1), zipfile.ZIP_DEFLATED)
            for name, blob in members.items():
                zf.writestr(zipfile.ZipInfo(name, STAMP), blob, zipfile.ZIP_DEFLATED)

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, write)
    return out


def read_manifest(file: str | Path) -> dict:
    """A pack's ``pack.json``, checked: one clear error for anything that is not a diffgrm pack."""
    file = Path(file)
    if not file.is_file():
        raise DiffGRMError(f"no file {file}; give a file written by `diffgrm pack`")
    try:
        with zipfile.ZipFile(file) as zf:
            manifest = json.loads(zf.read(MANIFEST))
            names = {i.filename for i in zf.infolist() if not i.is_dir()}
    except (zipfile.BadZipFile, OSError) as exc:
        raise DiffGRMError(f"{file} is not a zip file ({exc}); give a file written by `diffgrm pack`") from None
    except KeyError:
        raise DiffGRMError(f"{file} holds no {MANIFEST}: it is a zip, but not a diffgrm pack") from None
    except ValueError:
        raise DiffGRMError(f"{file}: {MANIFEST} is not valid JSON; the pack is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "diffgrm-pack":
        raise DiffGRMError(f"{file}: {MANIFEST} does not describe a diffgrm pack")
    if manifest.get("version") != PACK_FORMAT:
        raise DiffGRMError(f"{file} is a pack of format {manifest.get('version')}; this diffgrm reads format "
                           f"{PACK_FORMAT} (upgrade diffgrm)")
    files = manifest.get("files")
    if not isinstance(files, dict) or "run" not in manifest.get("runs", {}):
        raise DiffGRMError(f"{file}: {MANIFEST} lacks its file list; the pack is damaged")
    for name in files:
        parts = PurePosixPath(name).parts
        if PurePosixPath(name).is_absolute() or ".." in parts or len(parts) < 2 or parts[0] not in ROLES:
            raise DiffGRMError(f"{file}: refusing the member {name!r} (outside the run's folders)")
    if names != set(files) | {MANIFEST}:
        odd = sorted(names ^ (set(files) | {MANIFEST}))
        raise DiffGRMError(f"{file} does not hold exactly the files {MANIFEST} lists (e.g. {odd[0]!r}); "
                           "the pack is damaged")
    return manifest


def unpack(file: str | Path, out: str | Path, *, data: str | Path | None = None,
           force: bool = False) -> dict[str, Path]:
    """Unpack ``file`` into ``out`` (and its AR companion into ``out``-ar): every file checked
    against the pack's sha256 list, nothing written unless all of it checks out. ``data`` is where
    the unpacked runs read their users from, when not where they were trained."""
    manifest = read_manifest(file)
    folders = {role: Path(out) if role == "run" else Path(f"{out}-ar") for role in manifest["runs"]}
    for folder in folders.values():
        check_output(folder, "run", force=force)
    with zipfile.ZipFile(file) as zf, contextlib.ExitStack() as stack:  # each folder swapped in when all is checked
        stages = {role: stack.enter_context(staged_folder(folder)) for role, folder in folders.items()}
        for name, digest in manifest["files"].items():
            blob = zf.read(name)
            if _sha256(blob) != digest:
                raise DiffGRMError(f"{file}: {name} is damaged (its sha256 differs from {MANIFEST}'s)")
            role, rel = name.split("/", 1)
            dest = stages[role] / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(blob)
        for stage in stages.values():
            if data is not None:
                write_json(stage / "config.json", {**read_json(stage / "config.json"), "data": str(data)})
            verify_run(stage)
            write_json(stage / MANIFEST, manifest)  # which pack this folder came from (`diffgrm app FILE`)
    return folders


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def unpacked_here(file: str | Path, out: str | Path) -> bool:
    """Whether ``out`` already holds this very pack, unpacked (``diffgrm app FILE`` then reuses it)."""
    recorded = Path(out) / MANIFEST
    return recorded.is_file() and read_json(recorded) == read_manifest(file)
