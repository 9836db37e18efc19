"""``python -m bench NAME STAGE [options]``: one entry point for every benchmark (see bench.registry)."""

from __future__ import annotations

import sys

from bench.registry import run, usage


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    result = run(argv[0], argv[1:])
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
