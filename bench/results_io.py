"""Where a benchmark's table and numbers go: ``OUT.md`` (the table people read) and ``OUT.json``,
and the table made again from the JSON alone (no run folder, no training)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType


def write_results(out: str | Path, text: str, payload: object) -> None:
    """Write ``OUT.md`` and ``OUT.json`` beside each other (``out`` without a suffix)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2))


def publish(out: str | Path, payload: dict, render: Callable[[dict], str],
            figures: Callable[[dict], dict[str, str]] | None = None, write: bool = True) -> str:
    """A benchmark's results: the table ``render`` makes of ``payload`` printed and, unless ``write`` is
    false (smoke runs), written to ``OUT.md`` with ``OUT.json`` and the ``figures`` beside them."""
    text = render(payload)
    print(text)
    if write:
        write_results(out, text, payload)
        for name, figure in (figures(payload) if figures else {}).items():
            Path(out).with_name(name).write_text(figure)
    return text


def read_results(out: str | Path) -> dict:
    return json.loads(Path(out).with_suffix(".json").read_text())


def write_table(module: ModuleType, source: str | Path, dest: str | Path | None = None) -> list[Path]:
    """``DEST.md`` rendered by ``module.render`` from ``SOURCE.json`` (DEST defaults to SOURCE), and the
    figures ``module.figures`` draws from it beside it; the paths written."""
    source = Path(source)
    dest = Path(dest) if dest is not None else source
    payload = read_results(source)
    dest.parent.mkdir(parents=True, exist_ok=True)
    md = dest.with_suffix(".md")
    md.write_text(module.render(payload) + "\n")
    written = [md]
    for name, text in getattr(module, "figures", lambda _: {})(payload).items():
        written.append(dest.with_name(name))
        written[-1].write_text(text)
    return written
