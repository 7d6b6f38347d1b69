"""What every ``raysym`` command shares: messages on stderr, and the one way a command turns a stage's
config into flags and back.

A config flag is declared by its config field and a help text (:func:`config_flag`): the flag's name,
its argparse type and the default in its help come from the dataclass, so a flag and its YAML key never
disagree and no type or default is typed twice. :func:`config_from` builds the config: the ``--config``
YAML (or the command's YAML argument) first, then the config flags given on the command line on top, read
by the same strict loader as every YAML (raysym.strict).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any

from raysym.config import from_dict, load_yaml

_FLAG_TYPES = (int, float, str, bool)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _field_type(cls: type, name: str) -> type:
    """int, float, str or bool: the field's type, ``X | None`` read as X."""
    tp = typing.get_type_hints(cls)[name]
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if tp not in _FLAG_TYPES:
        raise TypeError(f"{cls.__name__}.{name} ({tp}) cannot be a flag: set it in a --config YAML")
    return tp


def _default_of(cls: type, name: str) -> Any:
    field = cls.__dataclass_fields__[name]
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def config_flag(p: argparse.ArgumentParser, cls: type, name: str, help: str, *, default: str | None = None) -> None:
    """``--name`` (underscores as dashes) for the config field ``name`` of ``cls``. ``default`` words the
    default when the value alone says too little (e.g. "the system's")."""
    tp = _field_type(cls, name)
    shown = default if default is not None else _default_of(cls, name)
    kwargs: dict[str, Any] = {"action": argparse.BooleanOptionalAction} if tp is bool else {"type": tp}
    p.add_argument(
        "--" + name.replace("_", "-"),
        dest=name,
        default=argparse.SUPPRESS,  # only flags actually given override the YAML and the defaults
        help=f"{help} (default {shown})",
        **kwargs,
    )


def load_config(path: str | Path, cls: type, what: str):
    """A config from a YAML file alone (the sweep, the report's sweep YAML)."""
    return from_dict(cls, load_yaml(path), where=f"{what} ({path})")


def config_from(args: argparse.Namespace, cls: type, what: str, **fixed: Any):
    """A stage's config: the optional --config YAML, then the config flags given on the command line, then
    ``fixed`` (values the command sets itself)."""
    given = vars(args)
    data = load_yaml(given["config"]) if given.get("config") else {}
    data.update({k: v for k, v in given.items() if k in cls.__dataclass_fields__})
    data.update(fixed)
    return from_dict(cls, data, where=f"{what} ({given.get('config') or 'flags'})")


def _positive_int(text: str) -> int:
    """argparse type: a whole number of 1 or more (argparse turns the ValueError into exit 2 and usage)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value} (none would wait for ever)")
    return value
