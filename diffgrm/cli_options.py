"""How the command line reads its options: typed numbers with their bounds, the flags several
subcommands share, and the flags made from the config dataclasses, so each is written once.

A config field becomes a flag here (:func:`add_config_options`): its name with dashes (or the
``flag`` its :func:`diffgrm.config.setting` names), its help, its bounds (in the words the config's
own check uses) and its choices (the package's named constants). Every such flag defaults to
``None``, "not given", and :func:`config_overrides` hands on only the given ones, so a flag left
out keeps the preset's value; the help says what each preset sets.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import MISSING, Field, fields
from typing import Any

from diffgrm.config import NOT_ON_THE_COMMAND_LINE, bound_words, within


DATA_HELP = ("where the run's users come from: a prepared folder, a dataset folder or a dataset name (default: the "
             "data the run recorded)")


def _bounded(convert: type, meta: dict):
    """An argparse type: a number (``int`` or ``float``) within the bounds ``meta`` declares."""
    words = bound_words(meta)

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            what = "a whole number" if convert is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if words and not within(meta, value):
            raise argparse.ArgumentTypeError(f"must be {words}, got {value if convert is int else text}")
        return value

    return parse


def _int(low: int, high: int | None = None):
    return _bounded(int, {"low": low, "high": high} if high is not None else {"low": low})


def _power_of_two(text: str) -> int:
    value = _int(2, 65536)(text)
    if value & (value - 1):
        raise argparse.ArgumentTypeError(f"must be a power of two (2, 4, ..., 256, ...), got {value}")
    return value


class _DeprecatedSteps(argparse.Action):
    """``--steps`` read as ``--passes``, with one line saying so: a step is one fill of a trace."""

    def __call__(self, parser, namespace, values, option_string=None):
        print("note: --steps is deprecated; it means network passes: use --passes", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _passes_option(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--passes", type=_int(1), default=None, metavar="S", help=help)
    p.add_argument("--steps", type=_int(1), dest="passes", action=_DeprecatedSteps, metavar="S",
                   help="deprecated alias of --passes")


# --------------------------------------------------------------------------- flags from the configs


def choices_of(meta: dict) -> tuple | None:
    """A field's choices: its tuple, or the constant its dotted name points to (``diffgrm.ocn.STRATEGIES``)."""
    choices = meta.get("choices")
    if isinstance(choices, str):
        module, _, name = choices.rpartition(".")
        choices = tuple(getattr(importlib.import_module(module), name))
    return choices


def flag_of(f: Field) -> str:
    """The flag a config field is set with: ``--max-steps``, ``--no-repair`` (a switch on by default)."""
    name = f.metadata.get("flag", f.name.replace("_", "-"))
    return f"--no-{name}" if f.type == "bool" and f.default is True and "flag" not in f.metadata else f"--{name}"


def on_the_command_line(cls: type) -> list[Field]:
    """The fields of a config dataclass that have a flag: all but :data:`NOT_ON_THE_COMMAND_LINE`."""
    return [f for f in fields(cls) if f"{cls.__name__}.{f.name}" not in NOT_ON_THE_COMMAND_LINE]


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _default_words(f: Field, presets: dict[str, Any], preset_flag: str) -> str:
    """What a flag left out means: the one default, or each preset's value when they differ."""
    values = {name: getattr(cfg, f.name) for name, cfg in presets.items()}
    if f.type == "bool":
        on = [name for name, v in values.items() if v != f.default]
        return f" (the {', '.join(on)} {preset_flag[2:]} turns it on)" if on and f.default is False else ""
    if len(set(map(repr, values.values()))) == 1:
        return f" (default {_shown(next(iter(values.values())))})"
    return f" (default by {preset_flag}: " + ", ".join(f"{n} {_shown(v)}" for n, v in values.items()) + ")"


def add_config_options(p: argparse.ArgumentParser, cls: type, presets: dict[str, Any],
                       preset_flag: str = "--preset") -> None:
    """A flag for every field of ``cls`` that has one; ``presets`` (name -> an instance of ``cls``)
    give the defaults the help shows."""
    group = p.add_argument_group(f"{cls.__name__} settings (a flag left out keeps the preset's value)")
    for f in on_the_command_line(cls):
        meta = f.metadata
        if "help" not in meta or f.default is MISSING:
            raise TypeError(f"{cls.__name__}.{f.name} has no help: declare it with diffgrm.config.setting")
        kwargs: dict[str, Any] = {"dest": f.name, "default": None,
                                  "help": meta["help"] + _default_words(f, presets, preset_flag)}
        if f.type == "bool":
            group.add_argument(flag_of(f), action="store_false" if f.default else "store_true", **kwargs)
            continue
        choices = choices_of(meta)
        if choices:
            kwargs["choices"] = choices
        elif meta.get("power_of_two"):
            kwargs["type"] = _power_of_two
        elif f.type in ("int", "float"):
            bounds = {**meta, "low": meta["cli_low"]} if "cli_low" in meta else meta
            kwargs["type"] = _bounded(int if f.type == "int" else float, bounds)
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        group.add_argument(flag_of(f), **kwargs)


def config_overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` the command line set (a flag left out is ``None``: the preset's value)."""
    return {f.name: getattr(args, f.name) for f in on_the_command_line(cls) if getattr(args, f.name, None) is not None}
