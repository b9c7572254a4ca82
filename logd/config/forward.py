"""The ``[[forward]]`` outputs: their frozen dataclasses and how a TOML array of tables
becomes them.

Pure: no I/O. Errors are one-line `ConfigError`s naming the output (``[[forward]] #2``),
the key and the bad value.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from logd.config.units import MiB
from logd.config.values import (
    BadValue,
    ConfigError,
    Converters,
    as_table,
    config_error,
    known_names,
    to_bool,
    to_bytes,
    to_int,
    to_name,
    to_number,
)
from logd.index.levels import LEVELS

__all__ = [
    "SYSLOG_FACILITIES",
    "TAG_FIELDS",
    "Forward",
    "ForwardMatch",
    "ForwardType",
    "parse_forward",
]

ForwardType = Literal["fluent", "syslog"]
SYSLOG_FACILITIES: dict[str, int] = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}
TAG_FIELDS = ("app", "kind", "logger")


@dataclass(frozen=True, slots=True)
class ForwardMatch:
    """Which records an output sends; the defaults send every record."""

    events_only: bool = False
    min_levelno: int = 0
    apps: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Forward:
    """One ``[[forward]]`` output: where records go upstream and how they are buffered.

    ``tag``, ``shared_key`` and ``compress`` are for ``type = "fluent"``; ``facility``,
    ``utf8_bom`` and ``confirm_s`` for ``type = "syslog"``.
    """

    name: str
    type: ForwardType
    host: str
    port: int
    tag: str = "logd.{app}.{kind}"
    shared_key: str | None = None
    compress: bool = False
    facility: int = SYSLOG_FACILITIES["user"]
    utf8_bom: bool = False
    match: ForwardMatch = field(default_factory=ForwardMatch)
    buffer_max_bytes: int = 256 * MiB
    batch_records: int = 1000
    retry_max_s: float = 60
    timeout_s: float = 30
    confirm_s: float = 1.0


_FORWARD_NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
_DEFAULT_PORTS: dict[str, int] = {"fluent": 24224, "syslog": 514}
_MATCH_KEYS = ("events_only", "min_level", "apps")


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise BadValue("must be a port number from 1 to 65535")
    return value


def _host(value: Any) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise BadValue('must be a host name or address like "logs.example.com" or "10.0.0.5"')
    return value.removeprefix("[").removesuffix("]")


def _forward_name(value: Any) -> str:
    if not isinstance(value, str) or not _FORWARD_NAME_RE.fullmatch(value):
        raise BadValue("must be 1-64 letters, digits, '.', '_' or '-' (it names a folder)")
    return value


def _tag_template(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BadValue("must be a non-empty string")
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise BadValue(f"not a template: {exc}") from None
    for _, name, spec, conversion in parts:
        if name is not None and (name not in TAG_FIELDS or spec or conversion):
            fields = ", ".join("{" + f + "}" for f in TAG_FIELDS)
            raise BadValue(f"placeholders are {fields}")
    return value


def _facility(value: Any) -> int:
    if value not in SYSLOG_FACILITIES:
        raise BadValue('must be a syslog facility name like "user" or "local0"')
    return SYSLOG_FACILITIES[value]


def _level(value: Any) -> int:
    if isinstance(value, str) and value.upper() == "NOTSET":
        return 0
    if isinstance(value, str) and value.upper() in LEVELS:
        return LEVELS[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise BadValue('must be a level name like "WARNING" or a level number')


def _apps(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadValue('must be a list of app names like ["billing", "voice"]')
    return tuple(value)


_FORWARD_COMMON: Converters = {
    "name": _forward_name,
    "host": _host,
    "port": _port,
    "buffer_max_bytes": to_bytes(4096),
    "batch_records": to_int(1),
    "retry_max_s": to_number(unit_s=1, positive=True),
    "timeout_s": to_number(unit_s=1, positive=True),
}
_FORWARD_TYPED: dict[str, Converters] = {
    "fluent": {"tag": _tag_template, "shared_key": to_name, "compress": to_bool},
    "syslog": {
        "facility": _facility,
        "utf8_bom": to_bool,
        "confirm_s": to_number(unit_s=1, positive=False),
    },
}
_MATCH_CONVERTERS: Converters = {"events_only": to_bool, "min_level": _level, "apps": _apps}


def parse_forward(source: str, value: Any) -> tuple[Forward, ...]:
    """``[[forward]]`` tables, in file order; names are unique and default to type+index."""
    if not isinstance(value, list):
        raise config_error(source, "forward", value, "must be an array of tables, [[forward]]")
    outputs: list[Forward] = []
    for index, table in enumerate(value, 1):
        label = f"[[forward]] #{index}"
        if not isinstance(table, Mapping):
            raise config_error(source, label, table, "must be a table")
        kind = table.get("type")
        if kind not in _FORWARD_TYPED:
            raise config_error(source, f"{label} type", kind, 'must be "fluent" or "syslog"')
        converters = {**_FORWARD_COMMON, **_FORWARD_TYPED[kind]}
        values: dict[str, Any] = {}
        match: dict[str, Any] = {}
        for key, raw in table.items():
            if key == "type":
                continue
            if key == "match":
                sub = as_table(source, f"{label} match", raw)
                for sub_key, sub_raw in sub.items():
                    if sub_key in match:
                        raise ConfigError(f"{source}: {label} match.{sub_key}: given twice")
                    match[sub_key] = _convert_one(
                        source, f"{label} match.{sub_key}", sub_raw, _MATCH_CONVERTERS.get(sub_key)
                    )
                continue
            if key in _MATCH_KEYS:
                if key in match:
                    raise ConfigError(f"{source}: {label} {key}: given twice")
                match[key] = _convert_one(source, f"{label} {key}", raw, _MATCH_CONVERTERS[key])
                continue
            convert = converters.get(key)
            if convert is None:
                other = [t for t, keys in _FORWARD_TYPED.items() if key in keys]
                if other:
                    raise ConfigError(f'{source}: {label} {key}: only for type = "{other[0]}"')
                known = [*converters, *_MATCH_KEYS, "match", "type"]
                raise ConfigError(f"{source}: {label} {key}: unknown key {known_names(known)}")
            values[key] = _convert_one(source, f"{label} {key}", raw, convert)
        if "host" not in values:
            raise ConfigError(f"{source}: {label} host: missing (where to send)")
        values.setdefault("name", f"{kind}{index}")
        values.setdefault("port", _DEFAULT_PORTS[kind])
        if "min_level" in match:
            match["min_levelno"] = match.pop("min_level")
        if any(o.name == values["name"] for o in outputs):
            raise config_error(
                source, f"{label} name", values["name"], "another output has that name"
            )
        outputs.append(Forward(type=kind, match=ForwardMatch(**match), **values))
    return tuple(outputs)


def _convert_one(source: str, label: str, value: Any, convert: Callable[[Any], Any] | None) -> Any:
    if convert is None:
        raise ConfigError(f"{source}: {label}: unknown key {known_names(_MATCH_KEYS)}")
    try:
        return convert(value)
    except BadValue as exc:
        raise config_error(source, label, value, str(exc)) from None
