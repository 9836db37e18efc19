"""Where a benchmark's table and numbers go: ``OUT.md`` (the table people read) and ``OUT.json``."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(out: str | Path, text: str, payload: object) -> None:
    """Write ``OUT.md`` and ``OUT.json`` beside each other (``out`` without a suffix)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2))
