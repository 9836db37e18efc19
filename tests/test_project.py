"""Project files that must agree with each other."""

import ast
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
    """Scripts the README runs (`python X.py`, `bash X.sh`), benchmarks (`python -m bench NAME STAGE`) and
    notebooks it names are in the repository."""
    from bench.registry import ENTRIES, load, stages

    readme = (ROOT / "README.md").read_text()
    scripts = re.findall(r"(?:python|bash) ((?:bench|notebooks)/\S+\.(?:py|sh))", readme)
    benches = re.findall(r"python -m bench ([\w-]+) ([\w-]+)", readme)
    notebooks = re.findall(r"`(\d\d_\w+\.ipynb)`", readme)
    assert (scripts or benches) and len(notebooks) == 6
    for path in scripts:
        assert (ROOT / path).is_file(), path
    for name, stage in benches:
        assert name in ENTRIES and stage in stages(load(name)), f"python -m bench {name} {stage}"
    for name in notebooks:
        assert (ROOT / "notebooks" / name).is_file(), name


# --------------------------------------------------------------------------- structure

MAX_LINES = 460
"""No module under diffgrm/, app/ or bench/ is longer than this: each is one concept a reader can follow."""

OVER_MAX_LINES: set[str] = set()
"""Modules allowed over the limit for now (none): a module that grows past it is split, not listed."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _diffgrm_imports(path: Path, modules: set[str]) -> set[str]:
    """The ``diffgrm`` modules that ``path`` imports anywhere in its body (at module level, in a
    function, under ``if TYPE_CHECKING``), each resolved to the module it names."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .x import y
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from diffgrm.viz import codebook` imports the submodule; `from diffgrm.data import load_dataset` the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import diffgrm.viz.codebook.x` -> the deepest module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as ``[a, b, ..., a]``, or None: a depth-first search."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    """Imports inside diffgrm flow one way: no module reaches itself through its ``diffgrm`` imports,
    function-level imports included (a lazy import still ties the two modules together)."""
    files = sorted((ROOT / "diffgrm").rglob("*.py"))
    modules = {_module_name(p) for p in files}
    graph = {_module_name(p): _diffgrm_imports(p, modules) for p in files}
    assert sum(map(len, graph.values())) > 50, "no imports found: the parser is broken"
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the checker finds one
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_benchmarks_have_no_import_cycle():
    """bench/ is a package too: its modules import one way (function-level imports included)."""
    files = sorted((ROOT / "bench").rglob("*.py"))
    modules = {_module_name(p) for p in files}
    graph = {_module_name(p): _diffgrm_imports(p, modules) for p in files}
    assert sum(map(len, graph.values())) > 20, "no imports found: the parser is broken"
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_is_over_the_line_limit():
    files = sorted([*(ROOT / "diffgrm").rglob("*.py"), *(ROOT / "bench").rglob("*.py"), *(ROOT / "app").rglob("*.py")])
    lengths = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in files}
    over = {path: n for path, n in lengths.items() if n > MAX_LINES and path not in OVER_MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines (split them along their concepts): {over}"
    assert OVER_MAX_LINES <= set(lengths), "an allowance names a file that is gone: drop it"
