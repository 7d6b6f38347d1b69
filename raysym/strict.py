"""Strict loading of dataclasses from dicts and YAML files: the machinery under raysym.config.

An unknown key is an error that suggests the closest valid key; a value of the wrong type is an error
that names the field, the expected type and the value received; a dataclass with a ``validate()`` method
has it called once built. Every error is a :class:`~raysym.errors.UserError` (one paragraph, exit code 2).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from raysym.errors import UserError

T = TypeVar("T")


def closest(name: str, choices: typing.Iterable[str]) -> str | None:
    """The valid name closest to ``name`` (for "did you mean" hints), or None."""
    matches = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, choices: typing.Iterable[str]) -> str:
    choices = list(choices)
    guess = closest(name, choices)
    hint = f" Did you mean '{guess}'?" if guess else ""
    return f"{hint} Valid choices: {', '.join(sorted(choices))}."


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        members = [arg for arg in args if arg is not type(None)]
        if len(members) == 1:  # X | None: X's own error says more (e.g. an unknown key inside a section)
            return _coerce(value, members[0], where)
        for arg in members:
            try:
                return _coerce(value, arg, where)
            except UserError:
                pass
        raise UserError(f"{where} has the wrong type: expected {_type_name(tp)}, got {value!r}.")
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where} has the wrong type: expected a mapping, got {value!r}.")
        key_tp, item_tp = args or (Any, Any)
        return {_coerce(k, key_tp, f"{where} key"): _coerce(v, item_tp, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"{where} has the wrong type: expected a list, got {value!r}.")
        (item_tp,) = args or (Any,)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{where} has the wrong type: expected a mapping, got {value!r}.")
        return from_dict(tp, value, where=where)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise UserError(f"{where} has the wrong type: expected {_type_name(tp)}, got {value!r}.")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``: unknown keys and wrong types raise UserError."""
    if not isinstance(data, dict):
        raise UserError(f"{where} must be a mapping of keys to values, got {data!r}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise UserError(
                f"{where} has an unknown key '{key}'.{did_you_mean(key, fields)} Fix the spelling or remove the key."
            )
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


class DuplicateKeyError(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice in one mapping is an error (PyYAML keeps the
    last, so a second `trials:` section would silently replace the first)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not None:
                raise DuplicateKeyError(f"gives the key '{key}' twice (lines {first} and {line})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning unreadable or malformed files into UserError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"Cannot read the config file {path}: {exc.strerror}. Check the path.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(
            f"The config file {path} is not UTF-8 text (byte {raw[exc.start]:#04x} on line {line}). "
            "Save it as UTF-8 (or plain ASCII)."
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except DuplicateKeyError as exc:
        raise UserError(f"The config file {path} {exc}. Keep one of them: YAML would silently use the last.") from None
    except yaml.YAMLError as exc:
        where = " ".join(str(exc).split())  # one line: YAML's messages span several
        raise UserError(f"The config file {path} is not valid YAML ({where}). Fix the syntax.") from None
    if data is None:
        raise UserError(
            f"The config file {path} is empty. Start from one of tune_configs/*.yaml (e.g. quickstart.yaml)."
        )
    if not isinstance(data, dict):
        raise UserError(f"The config file {path} must hold a mapping of keys to values, not {type(data).__name__}.")
    return data


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)
