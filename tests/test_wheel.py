"""diffgrm installs as a package: the built wheel holds every module and the app, and a fresh
virtual environment with only that wheel (no editable install, no clone on sys.path) runs the CLI
and ``diffgrm app``."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # a wheel build and a virtual environment: ~15 s, plus the shared chain_run (~10-30 s)

SKIP = {".git", ".venv", "runs", "build", "dist", "__pycache__", "test-artifacts", ".pytest_cache", ".cache",
        ".ipynb_checkpoints"}


def source_files() -> list[str]:
    """The repository's files as a clean clone plus uncommitted new files has them (what git does not ignore)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True).stdout.decode()
        return sorted(f for f in out.split("\0") if f and (ROOT / f).is_file())
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: all but the usual outputs
        files = []
        for folder, dirs, names in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in SKIP and not d.endswith(".egg-info")]
            files += [str((Path(folder) / n).relative_to(ROOT)) for n in names]
        return sorted(files)


def package_modules(files: list[str]) -> set[str]:
    """Where each module of the package must sit in the wheel: diffgrm/** as is, app/** as diffgrm/app/**."""
    wanted = set()
    for f in files:
        if f.endswith(".py") and f.startswith("diffgrm/"):
            wanted.add(f)
        elif f.endswith(".py") and f.startswith("app/"):
            wanted.add("diffgrm/" + f)
    return wanted


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    return {**env, "PYTHONNOUSERSITE": "1", **extra}


def sh(*cmd, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or clean_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, list[str]]:
    """A copy of the repository to build from, so that setuptools' build/ and *.egg-info (stale
    modules included) stay out of the working tree."""
    files = source_files()
    src = tmp_path_factory.mktemp("wheel") / "src"
    for f in files:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)
    return src, files


@pytest.fixture(scope="module")
def wheel(source) -> Path:
    src, _ = source
    dist = src.parent / "dist"
    base = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, "."]
    try:  # as a user builds it: setuptools fetched into an isolated build environment
        sh(*base, cwd=src)
    except AssertionError:  # no index reachable: the setuptools of this environment
        sh(*base, "--no-build-isolation", cwd=src)
    wheels = list(dist.glob("diffgrm-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def fresh(wheel) -> Path:
    """A new virtual environment with the wheel installed and no editable diffgrm.

    Its dependencies (torch, streamlit, ...) come from this environment's site-packages, listed in
    a .pth file: a folder named there joins sys.path, but the .pth files inside it (the editable
    install's import hook among them) are not run, so `import diffgrm` can only find the wheel's copy.
    """
    venv = wheel.parent.parent / "fresh"
    sh(sys.executable, "-m", "venv", "--without-pip", venv, cwd=wheel.parent)
    python = venv / "bin" / "python"
    site = Path(sh(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=venv).strip())
    assert site.is_relative_to(venv)
    (site / "zz-diffgrm-test-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # --ignore-installed: pip (from this environment) also sees the editable diffgrm on sys.path and
    # must neither skip the wheel as "already satisfied" nor try to uninstall that one.
    sh(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--ignore-installed", wheel, cwd=venv)
    return venv


def test_the_wheel_holds_every_module_the_app_and_the_entry_point(wheel, source):
    _, files = source
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = zf.read(info).decode()
    wanted = package_modules(files)
    assert {"diffgrm/__init__.py", "diffgrm/cli.py", "diffgrm/viz/__init__.py", "diffgrm/app/__init__.py",
            "diffgrm/app/streamlit_app.py"} <= wanted
    shipped = {n for n in names if n.endswith(".py")}
    assert not wanted - shipped, f"modules the packaging config leaves out: {sorted(wanted - shipped)}"
    assert not shipped - wanted, f"files in the wheel that the repository does not have: {sorted(shipped - wanted)}"
    scripts = configparser.ConfigParser()
    scripts.read_string(entry_points)
    assert scripts["console_scripts"]["diffgrm"].strip() == "diffgrm.cli:main"


def test_the_wheel_carries_the_shipped_demo_runs(wheel, source):
    src, files = source
    runs = sorted(f for f in files if f.startswith("diffgrm/demo_runs/"))
    from diffgrm.demo import KINDS, SHIPPED_FILES

    assert {f"diffgrm/demo_runs/{kind}/{name}" for kind in KINDS for name in SHIPPED_FILES} <= set(runs)
    with zipfile.ZipFile(wheel) as zf:
        carried = {i.filename: i.file_size for i in zf.infolist() if i.filename.startswith("diffgrm/demo_runs/")}
    assert carried == {f: (src / f).stat().st_size for f in runs}, "package data left out of (or added to) the wheel"
    assert sum(carried.values()) <= 5e6


def test_the_fresh_install_imports_itself_and_runs_the_cli(fresh, tmp_path):
    python, cli = fresh / "bin" / "python", fresh / "bin" / "diffgrm"
    where = Path(sh(python, "-c", "import diffgrm, diffgrm.app; print(diffgrm.__file__)", cwd=tmp_path).strip())
    assert where.is_relative_to(fresh) and not where.resolve().is_relative_to(ROOT), where
    assert sh(cli, "--version", cwd=tmp_path).strip() == "diffgrm 0.1.0"
    assert "prepare" in sh(cli, "--help", cwd=tmp_path)
    shown = sh(cli, "demo", cwd=tmp_path)  # the shipped demo runs, read from the installed package
    assert f"shipped demo runs in {where.parent / 'demo_runs'}" in shown and "x popularity" in shown


def test_the_fresh_install_serves_the_app(fresh, chain_run, tmp_path):
    cli = fresh / "bin" / "diffgrm"
    env = clean_env(DIFFGRM_PROJECTION="pca")
    tokens = sh(cli, "app", chain_run, "--dry-run", cwd=tmp_path, env=env).split()
    assert tokens[1:4] == ["-m", "streamlit", "run"]
    assert Path(tokens[0]).is_relative_to(fresh)
    script = Path(tokens[4])
    assert script.name == "streamlit_app.py" and script.is_file()
    assert script.is_relative_to(fresh) and not script.resolve().is_relative_to(ROOT), script
    # The installed script renders a user with the installed package (streamlit's AppTest, headless).
    check = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        "at = AppTest.from_file(sys.argv[1], default_timeout=120)\n"
        "at.run()\n"
        "assert not at.exception, at.exception\n"
        "print(at.title[0].value)\n"
        "print(sys.modules['diffgrm'].__file__)\n"
    )
    out = sh(fresh / "bin" / "python", "-c", check, script, cwd=tmp_path, env={**env, "DIFFGRM_RUN": str(chain_run)})
    title, module = out.strip().splitlines()[-2:]
    assert title == "User U0: what comes next?"
    assert Path(module).is_relative_to(fresh), module


def test_a_missing_app_script_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from importlib import resources

    from diffgrm.cli import main

    monkeypatch.setattr(resources, "files", lambda package: tmp_path)  # diffgrm.app without streamlit_app.py
    assert main(["app", str(tmp_path), "--dry-run"]) == 2
    assert "the explorer app is missing" in capsys.readouterr().err
