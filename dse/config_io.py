"""YAML files and ``--set key=value`` overrides -> validated config objects.

The one path from text to a config: ``yaml.safe_load`` only, then the pydantic schema,
with every failure reported as ``file: key.path: problem`` on one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from dse.errors import ConfigError, DseError, config_error

Model = TypeVar("Model", bound=pydantic.BaseModel)


def read_text(path: Path, error: type[DseError] = ConfigError) -> str:
    """The file's UTF-8 text; unreadable or non-text files raise ``error`` with one line."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise error(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
                    "save it as UTF-8") from None
    if "\x00" in text:
        raise error(f"{path}: not a text file (it contains NUL bytes)")
    return text


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    text = read_text(path, ConfigError)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: {where}invalid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def set_dotted(data: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with ``{"model.sr": 0.25}`` written into its nested mappings.

    A mapping written where a mapping already is merges into it, so one swept value can
    set linked fields together and keep the rest of the base:

    >>> set_dotted({"model": {"sr": 0.25, "base_e": 32}}, {"model": {"num_fires": 4, "base_e": 13}})
    {'model': {'sr': 0.25, 'base_e': 13, 'num_fires': 4}}
    """
    data = dict(data)
    for key, value in values.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        current = node.get(parts[-1])
        if isinstance(value, dict) and isinstance(current, dict):
            value = set_dotted(current, value)
        node[parts[-1]] = value
    return data


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> one mapping by dotted key (the inverse of :func:`set_dotted`).

    >>> flatten({"model": {"sr": 0.25}, "epochs": 3})
    {'model.sr': 0.25, 'epochs': 3}
    """
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_keys(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """``"key old -> new"`` for every dotted key whose value differs between two nested mappings.

    >>> changed_keys({"epochs": 12, "optim": {"lr": 0.1}}, {"epochs": 30, "optim": {"lr": 0.1}})
    ['epochs 12 -> 30']
    """
    old, new = flatten(before), flatten(after)
    missing = "(unset)"
    return [f"{key} {old.get(key, missing)} -> {new.get(key, missing)}" for key in sorted(old.keys() | new.keys())
            if old.get(key, missing) != new.get(key, missing)]


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["model.sr=0.25", "epochs=3"]`` -> ``{"model.sr": 0.25, "epochs": 3}``; values parse as YAML."""
    parsed = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        parsed[key] = yaml.safe_load(raw)
    return parsed


def parse(model: type[Model], data: dict[str, Any], source: str) -> Model:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as err:
        raise config_error(err, source) from None


def load(model: type[Model], path: str | Path | None, overrides: list[str] = ()) -> Model:
    """Read ``path`` (or start from defaults), apply overrides, validate against ``model``."""
    data = read_yaml(path) if path else {}
    return parse(model, set_dotted(data, parse_overrides(list(overrides))), str(path or "--set"))
