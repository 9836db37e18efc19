"""How the command line reads its options: typed numbers with their bounds, and the flags that
several subcommands share, so each is written once."""

from __future__ import annotations

import argparse
import sys


def _int(low: int, high: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


class _DeprecatedSteps(argparse.Action):
    """``--steps`` read as ``--passes``, with one line saying so: a step is one fill of a trace."""

    def __call__(self, parser, namespace, values, option_string=None):
        print("note: --steps is deprecated; it means network passes: use --passes", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _passes_option(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--passes", type=_int(1), default=None, metavar="S", help=help)
    p.add_argument("--steps", type=_int(1), dest="passes", action=_DeprecatedSteps, metavar="S",
                   help="deprecated alias of --passes")
