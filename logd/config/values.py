"""Checking one raw config value (from TOML, a flag or a variable): converters, and the
one-line `ConfigError` a bad value becomes.

Pure: no I/O. A converter returns the typed value or raises `BadValue` with the
problem; the caller adds the file and key (`config_error`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from logd.config.units import parse_duration_s, parse_hostport, parse_size

__all__ = [
    "BadValue",
    "ConfigError",
    "Converters",
    "as_table",
    "config_error",
    "convert_table",
    "known_names",
    "show_value",
    "to_bool",
    "to_bytes",
    "to_hostport",
    "to_int",
    "to_name",
    "to_number",
    "to_path",
]


class ConfigError(Exception):
    """A bad configuration; ``str()`` is one line naming the file, key and bad value."""


class BadValue(Exception):
    """A converter's complaint; the caller adds where it came from."""


Converters = Mapping[str, Callable[[Any], Any]]


def show_value(value: Any) -> str:
    """A value as TOML-ish text on one line, cut short if long."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, dict):
        text = "{...}"
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except ValueError:  # nan/inf are valid TOML floats but json may refuse in future
            text = str(value)
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= 80 else text[:77] + "..."


def config_error(source: str, key: str, value: Any, problem: str) -> ConfigError:
    return ConfigError(f"{source}: {key} = {show_value(value)}: {problem}")


def known_names(names: Any) -> str:
    return f"(known: {', '.join(sorted(names))})"


def as_table(source: str, label: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise config_error(source, label, value, "must be a table")
    return value


def convert_table(
    source: str, section: str, table: Mapping[str, Any], converters: Converters
) -> dict[str, Any]:
    """Validated values of one ``[section]``, keyed like the dataclass fields."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        convert = converters.get(key)
        if convert is None:
            raise ConfigError(f"{source}: [{section}] {key}: unknown key {known_names(converters)}")
        try:
            out[key] = convert(value)
        except BadValue as exc:
            raise config_error(source, f"[{section}] {key}", value, str(exc)) from None
    return out


# --------------------------------------------------------------------------- converters


def to_bytes(minimum: int) -> Callable[[Any], int]:
    range_problem = "must be a positive integer" if minimum > 0 else "must be an integer >= 0"

    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise BadValue(f'{range_problem} (bytes) or a size like "10 MiB"')
        if isinstance(value, str):
            try:
                number = parse_size(value)
            except ValueError:
                raise BadValue(f'{range_problem} (bytes) or a size like "10 MiB"') from None
        else:
            number = value
        if number < minimum:
            raise BadValue(range_problem)
        return number

    return convert


def to_int(minimum: int) -> Callable[[Any], int]:
    problem = "must be a positive integer" if minimum > 0 else "must be an integer >= 0"

    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise BadValue(problem)
        return value

    return convert


def to_number(*, unit_s: float, positive: bool) -> Callable[[Any], float]:
    """A number of ``unit_s``-second units, or a duration string like ``"12h"``."""
    unit = "days" if unit_s == 86400 else "seconds"
    problem = f"must be a number of {unit} {'> 0' if positive else '>= 0'}"
    problem += ' or a duration like "12h"'

    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise BadValue(problem)
        if isinstance(value, str):
            try:
                number = parse_duration_s(value) / unit_s
            except ValueError:
                raise BadValue(problem) from None
        else:
            number = float(value)
        if not math.isfinite(number) or number < 0 or (positive and number == 0):
            raise BadValue(problem)
        return number

    return convert


def to_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadValue("must be true or false")
    return value


def to_path(value: Any) -> Path:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise BadValue("must be a non-empty path")
    return Path(value)


def to_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadValue("must be a non-empty string")
    return value


def to_patterns(value: Any) -> tuple[str, ...]:
    """A list of event type patterns (`conversation:turn`, `debug:*`)."""
    if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
        raise BadValue('must be a list of event type patterns, like ["conversation:turn"]')
    return tuple(p.strip() for p in value)


def to_hostport(value: Any) -> tuple[str, int]:
    if not isinstance(value, str):
        raise BadValue('must be a string HOST:PORT like "127.0.0.1:24224"')
    try:
        return parse_hostport(value)
    except ValueError as exc:
        raise BadValue(str(exc)) from None
