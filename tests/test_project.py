"""Project files that must agree with each other."""

import re
from pathlib import Path

import tomllib
import yaml

from diffgrm.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra, reqs in project["optional-dependencies"].items():
        wanted += [r for r in reqs if not r.startswith("diffgrm")]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = [r for r in pip if not r.startswith("-e")]
    assert sorted(listed) == sorted(wanted)
    assert '-e ".[all]"' in pip or "-e .[all]" in pip


def test_readme_diffgrm_commands_parse():
    """Every `diffgrm ...` line in the README is accepted by the argument parser."""
    parser = build_parser()
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^diffgrm (.+?)(?:\s+#.*)?$", readme, flags=re.M)
    assert commands
    for cmd in commands:
        parser.parse_args(cmd.split())


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make app" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert [ln for ln in ci.splitlines() if ln and not ln.startswith("#") and not ln.startswith(("set ", "cd "))] == ["make test"]


def test_readme_scripts_and_folders_exist():
    """Scripts the README runs (`python X.py`, `bash X.sh`) and notebooks it names are in the repository."""
    readme = (ROOT / "README.md").read_text()
    scripts = re.findall(r"(?:python|bash) ((?:bench|notebooks)/\S+\.(?:py|sh))", readme)
    notebooks = re.findall(r"`(\d\d_\w+\.ipynb)`", readme)
    assert scripts and len(notebooks) == 5
    for path in scripts:
        assert (ROOT / path).is_file(), path
    for name in notebooks:
        assert (ROOT / "notebooks" / name).is_file(), name
