"""Configuration: frozen dataclasses, and the only place human strings become numbers.

:func:`parse_config` is pure (a parsed TOML mapping over a base config).
:func:`default_config`, :func:`find_config_file` and :func:`load_config` add the
environment, platformdirs and the file system, in the precedence of SPEC §10.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import re
import string
import tomllib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, cast

import platformdirs

__all__ = [
    "Config",
    "ConfigError",
    "Forward",
    "ForwardMatch",
    "Layout",
    "Limits",
    "Listen",
    "Retention",
    "Rotation",
    "RotationPolicy",
    "config_search_path",
    "default_config",
    "find_config_file",
    "is_loopback_host",
    "load_config",
    "parse_config",
    "parse_hostport",
]

MiB = 1024 * 1024
FsyncMode = Literal["none", "batch", "always"]
FSYNC_MODES: tuple[FsyncMode, ...] = ("none", "batch", "always")
APP_NAME = "logd"
CONFIG_NAME = "logd.toml"
SYSTEM_CONFIG = Path("/etc/logd/logd.toml")
# sun_path is 108 bytes on Linux, one of them the terminating NUL (unix(7)).
MAX_SOCKET_PATH_BYTES = 107


class ConfigError(Exception):
    """A bad configuration; ``str()`` is one line naming the file, key and bad value."""


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    """When one kind of file rotates, and what happens to the rotated copies."""

    max_bytes: int = 10 * MiB
    backups: int = 3
    compress: bool = True


@dataclass(frozen=True, slots=True)
class Rotation:
    """Rotation per file kind. For events, ``backups = 0`` means "archives are kept by
    ``retention.events_days``" (they are dated, not numbered)."""

    run: RotationPolicy = field(default_factory=RotationPolicy)
    session: RotationPolicy = field(default_factory=RotationPolicy)
    call: RotationPolicy = field(default_factory=RotationPolicy)
    events: RotationPolicy = field(
        default_factory=lambda: RotationPolicy(max_bytes=100 * MiB, backups=0, compress=True)
    )


@dataclass(frozen=True, slots=True)
class Retention:
    """How long ended units are kept; ages in (possibly fractional) days."""

    runs_days: float = 30
    runs_keep: int = 20
    calls_days: float = 30
    sessions_days: float = 7
    events_days: float = 90
    max_total_bytes: int = 0  # 0 = no cap
    interval_s: float = 3600


@dataclass(frozen=True, slots=True)
class Layout:
    """Text layout options that routing reads."""

    utc: bool = False
    component_files: bool = True


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection and per-daemon bounds."""

    max_message_bytes: int = 16 * MiB
    max_records: int = 100_000
    max_connections: int = 1024
    idle_timeout_s: float = 300
    session_idle_s: float = 3600
    open_files: int = 256


@dataclass(frozen=True, slots=True)
class Listen:
    """Where the daemon listens. ``tcp`` is ``(host, port)`` with IPv6 hosts unbracketed."""

    socket: Path
    control: Path
    tcp: tuple[str, int] | None = None
    shared_key: str | None = None
    socket_group: str | None = None


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


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the daemon is told; built once at start and on reload."""

    root: Path
    listen: Listen
    rotation: Rotation = field(default_factory=Rotation)
    retention: Retention = field(default_factory=Retention)
    layout: Layout = field(default_factory=Layout)
    limits: Limits = field(default_factory=Limits)
    fsync: FsyncMode = "batch"
    config_file: Path | None = None
    forward: tuple[Forward, ...] = ()
    # Output buffers live in <state_dir>/forward/<name>/; None: platformdirs' user_state_dir.
    state_dir: Path | None = None


# --------------------------------------------------------------------------- values


class _Bad(Exception):
    """A converter's complaint; the caller adds where it came from."""


def _show(value: Any) -> str:
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


def _error(source: str, key: str, value: Any, problem: str) -> ConfigError:
    return ConfigError(f"{source}: {key} = {_show(value)}: {problem}")


_SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}
_DURATION_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*")
_DURATION_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    """Bytes in ``"10 MiB"``, ``"100MB"``, ``"512k"`` (k/M/G/T alone are binary).

    Raises:
        ValueError: not a size.
    """
    m = _SIZE_RE.fullmatch(text)
    unit = _SIZE_UNITS.get(m.group(2).lower()) if m else None
    if m is None or unit is None:
        raise ValueError(f"not a size: {text!r}")
    return int(Fraction(m.group(1)) * unit)


def parse_duration_s(text: str) -> float:
    """Seconds in ``"90s"``, ``"30m"``, ``"12h"``, ``"1.5d"``, ``"2w"``.

    Raises:
        ValueError: not a duration.
    """
    m = _DURATION_RE.fullmatch(text)
    unit = _DURATION_S.get(m.group(2)) if m else None
    if m is None or unit is None:
        raise ValueError(f"not a duration: {text!r}")
    return float(Fraction(m.group(1)) * unit)


def _int_bytes(minimum: int) -> Callable[[Any], int]:
    range_problem = "must be a positive integer" if minimum > 0 else "must be an integer >= 0"

    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _Bad(f'{range_problem} (bytes) or a size like "10 MiB"')
        if isinstance(value, str):
            try:
                number = parse_size(value)
            except ValueError:
                raise _Bad(f'{range_problem} (bytes) or a size like "10 MiB"') from None
        else:
            number = value
        if number < minimum:
            raise _Bad(range_problem)
        return number

    return convert


def _int(minimum: int) -> Callable[[Any], int]:
    problem = "must be a positive integer" if minimum > 0 else "must be an integer >= 0"

    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _Bad(problem)
        return value

    return convert


def _number(*, unit_s: float, positive: bool) -> Callable[[Any], float]:
    """A number of ``unit_s``-second units, or a duration string like ``"12h"``."""
    unit = "days" if unit_s == 86400 else "seconds"
    problem = f"must be a number of {unit} {'> 0' if positive else '>= 0'}"
    problem += ' or a duration like "12h"'

    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _Bad(problem)
        if isinstance(value, str):
            try:
                number = parse_duration_s(value) / unit_s
            except ValueError:
                raise _Bad(problem) from None
        else:
            number = float(value)
        if not math.isfinite(number) or number < 0 or (positive and number == 0):
            raise _Bad(problem)
        return number

    return convert


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad("must be true or false")
    return value


def _path(value: Any) -> Path:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise _Bad("must be a non-empty path")
    return Path(value)


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad("must be a non-empty string")
    return value


def _fsync(value: Any) -> FsyncMode:
    if value not in FSYNC_MODES:
        raise _Bad('must be "none", "batch" or "always"')
    return cast(FsyncMode, value)


def parse_hostport(text: str) -> tuple[str, int]:
    """``"127.0.0.1:24224"``, ``"localhost:24224"`` or ``"[::1]:24224"`` -> (host, port).

    Port 0 is allowed: the OS picks one (tests use it).

    Raises:
        ValueError: with a short reason.
    """
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep or not host:
            raise ValueError('must be HOST:PORT, an IPv6 host in brackets like "[::1]:24224"')
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or any(c.isspace() for c in host):
            raise ValueError('must be HOST:PORT like "127.0.0.1:24224"')
        if ":" in host:
            raise ValueError('an IPv6 host must be in brackets, like "[::1]:24224"')
    if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError("the port must be a number from 0 to 65535")
    return host, int(port_text)


def _tcp(value: Any) -> tuple[str, int]:
    if not isinstance(value, str):
        raise _Bad('must be a string HOST:PORT like "127.0.0.1:24224"')
    try:
        return parse_hostport(value)
    except ValueError as exc:
        raise _Bad(str(exc)) from None


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; any other name counts as remote."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


# --------------------------------------------------------------------------- parse_config

_Converters = Mapping[str, Callable[[Any], Any]]

_ROTATION_KEYS: _Converters = {
    "max_bytes": _int_bytes(1),
    "backups": _int(0),
    "compress": _bool,
}
_SECTIONS: dict[str, _Converters] = {
    "listen": {
        "socket": _path,
        "control": _path,
        "tcp": _tcp,
        "shared_key": _name,
        "socket_group": _name,
    },
    "retention": {
        "runs_days": _number(unit_s=86400, positive=False),
        "runs_keep": _int(0),
        "calls_days": _number(unit_s=86400, positive=False),
        "sessions_days": _number(unit_s=86400, positive=False),
        "events_days": _number(unit_s=86400, positive=False),
        "max_total_bytes": _int_bytes(0),
        "interval_s": _number(unit_s=1, positive=True),
    },
    "layout": {"utc": _bool, "component_files": _bool},
    "limits": {
        "max_message_bytes": _int_bytes(1),
        "max_records": _int(1),
        "max_connections": _int(1),
        "idle_timeout_s": _number(unit_s=1, positive=True),
        "session_idle_s": _number(unit_s=1, positive=True),
        "open_files": _int(1),
    },
    "durability": {"fsync": _fsync},
}
_ROTATION_KINDS = ("run", "session", "call", "events")
_TOP_LEVEL = (
    "root",
    "state_dir",
    "listen",
    "rotation",
    "retention",
    "layout",
    "limits",
    "durability",
    "forward",
)


def _known(names: Any) -> str:
    return f"(known: {', '.join(sorted(names))})"


def _table(source: str, label: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _error(source, label, value, "must be a table")
    return value


def _convert_table(
    source: str, section: str, table: Mapping[str, Any], converters: _Converters
) -> dict[str, Any]:
    """Validated values of one ``[section]``, keyed like the dataclass fields."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        convert = converters.get(key)
        if convert is None:
            raise ConfigError(f"{source}: [{section}] {key}: unknown key {_known(converters)}")
        try:
            out[key] = convert(value)
        except _Bad as exc:
            raise _error(source, f"[{section}] {key}", value, str(exc)) from None
    return out


def parse_config(data: Mapping[str, Any], *, source: str, base: Config) -> Config:
    """Validate a parsed TOML mapping and lay it over ``base``; pure.

    Args:
        data: what ``tomllib`` returned (any mapping of the same shape).
        source: names the origin in error messages, usually the file path.
        base: values for every key ``data`` leaves out.

    Raises:
        ConfigError: unknown section or key, wrong type or out-of-range value.
    """
    for key, value in data.items():
        if key not in _TOP_LEVEL:
            what = "unknown section" if isinstance(value, Mapping) else "unknown key"
            label = f"[{key}]" if isinstance(value, Mapping) else key
            raise ConfigError(f"{source}: {label}: {what} {_known(_TOP_LEVEL)}")
    config = base
    if "root" in data:
        try:
            config = dataclasses.replace(config, root=_path(data["root"]))
        except _Bad as exc:
            raise _error(source, "root", data["root"], str(exc)) from None
    if "state_dir" in data:
        try:
            config = dataclasses.replace(config, state_dir=_path(data["state_dir"]))
        except _Bad as exc:
            raise _error(source, "state_dir", data["state_dir"], str(exc)) from None
    if "forward" in data:
        config = dataclasses.replace(config, forward=_parse_forward(source, data["forward"]))
    if "rotation" in data:
        rotation = _table(source, "rotation", data["rotation"])
        policies: dict[str, RotationPolicy] = {}
        for kind, sub in rotation.items():
            if kind not in _ROTATION_KINDS:
                label = f"[rotation.{kind}]" if isinstance(sub, Mapping) else f"[rotation] {kind}"
                what = "unknown section" if isinstance(sub, Mapping) else "unknown key"
                raise ConfigError(f"{source}: {label}: {what} {_known(_ROTATION_KINDS)}")
            values = _convert_table(
                source, f"rotation.{kind}", _table(source, f"rotation.{kind}", sub), _ROTATION_KEYS
            )
            policies[kind] = dataclasses.replace(getattr(config.rotation, kind), **values)
        config = dataclasses.replace(
            config, rotation=dataclasses.replace(config.rotation, **policies)
        )
    for section, converters in _SECTIONS.items():
        if section not in data:
            continue
        values = _convert_table(source, section, _table(source, section, data[section]), converters)
        if section == "durability":
            if "fsync" in values:
                config = dataclasses.replace(config, fsync=values["fsync"])
        else:
            current = getattr(config, section)
            config = dataclasses.replace(
                config, **{section: dataclasses.replace(current, **values)}
            )
    return config


# --------------------------------------------------------------------------- [[forward]]

_FORWARD_NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
_DEFAULT_PORTS: dict[str, int] = {"fluent": 24224, "syslog": 514}
_MATCH_KEYS = ("events_only", "min_level", "apps")


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _Bad("must be a port number from 1 to 65535")
    return value


def _host(value: Any) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise _Bad('must be a host name or address like "logs.example.com" or "10.0.0.5"')
    return value.removeprefix("[").removesuffix("]")


def _forward_name(value: Any) -> str:
    if not isinstance(value, str) or not _FORWARD_NAME_RE.fullmatch(value):
        raise _Bad("must be 1-64 letters, digits, '.', '_' or '-' (it names a folder)")
    return value


def _tag_template(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad("must be a non-empty string")
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise _Bad(f"not a template: {exc}") from None
    for _, name, spec, conversion in parts:
        if name is not None and (name not in TAG_FIELDS or spec or conversion):
            fields = ", ".join("{" + f + "}" for f in TAG_FIELDS)
            raise _Bad(f"placeholders are {fields}")
    return value


def _facility(value: Any) -> int:
    if value not in SYSLOG_FACILITIES:
        raise _Bad('must be a syslog facility name like "user" or "local0"')
    return SYSLOG_FACILITIES[value]


def _level(value: Any) -> int:
    from logd.records import LEVELS  # records -> events -> sqlite3: only when needed

    if isinstance(value, str) and value.upper() == "NOTSET":
        return 0
    if isinstance(value, str) and value.upper() in LEVELS:
        return LEVELS[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _Bad('must be a level name like "WARNING" or a level number')


def _apps(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Bad('must be a list of app names like ["billing", "voice"]')
    return tuple(value)


_FORWARD_COMMON: _Converters = {
    "name": _forward_name,
    "host": _host,
    "port": _port,
    "buffer_max_bytes": _int_bytes(4096),
    "batch_records": _int(1),
    "retry_max_s": _number(unit_s=1, positive=True),
    "timeout_s": _number(unit_s=1, positive=True),
}
_FORWARD_TYPED: dict[str, _Converters] = {
    "fluent": {"tag": _tag_template, "shared_key": _name, "compress": _bool},
    "syslog": {
        "facility": _facility,
        "utf8_bom": _bool,
        "confirm_s": _number(unit_s=1, positive=False),
    },
}
_MATCH_CONVERTERS: _Converters = {"events_only": _bool, "min_level": _level, "apps": _apps}


def _parse_forward(source: str, value: Any) -> tuple[Forward, ...]:
    """``[[forward]]`` tables, in file order; names are unique and default to type+index."""
    if not isinstance(value, list):
        raise _error(source, "forward", value, "must be an array of tables, [[forward]]")
    outputs: list[Forward] = []
    for index, table in enumerate(value, 1):
        label = f"[[forward]] #{index}"
        if not isinstance(table, Mapping):
            raise _error(source, label, table, "must be a table")
        kind = table.get("type")
        if kind not in _FORWARD_TYPED:
            raise _error(source, f"{label} type", kind, 'must be "fluent" or "syslog"')
        converters = {**_FORWARD_COMMON, **_FORWARD_TYPED[kind]}
        values: dict[str, Any] = {}
        match: dict[str, Any] = {}
        for key, raw in table.items():
            if key == "type":
                continue
            if key == "match":
                sub = _table(source, f"{label} match", raw)
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
                raise ConfigError(f"{source}: {label} {key}: unknown key {_known(known)}")
            values[key] = _convert_one(source, f"{label} {key}", raw, convert)
        if "host" not in values:
            raise ConfigError(f"{source}: {label} host: missing (where to send)")
        values.setdefault("name", f"{kind}{index}")
        values.setdefault("port", _DEFAULT_PORTS[kind])
        if "min_level" in match:
            match["min_levelno"] = match.pop("min_level")
        if any(o.name == values["name"] for o in outputs):
            raise _error(source, f"{label} name", values["name"], "another output has that name")
        outputs.append(Forward(type=kind, match=ForwardMatch(**match), **values))
    return tuple(outputs)


def _convert_one(source: str, label: str, value: Any, convert: Callable[[Any], Any] | None) -> Any:
    if convert is None:
        raise ConfigError(f"{source}: {label}: unknown key {_known(_MATCH_KEYS)}")
    try:
        return convert(value)
    except _Bad as exc:
        raise _error(source, label, value, str(exc)) from None


# --------------------------------------------------------------------------- environment

# Newer platformdirs warns when $XDG_RUNTIME_DIR is missing and it falls back; we only
# need the path, and pytest (filterwarnings=error) would turn the warning into a crash.
_RUNTIME_DIR_WARNING: type[Warning] = getattr(platformdirs, "RuntimeDirWarning", UserWarning)


def _first_dir(environ: Mapping[str, str], name: str) -> Path | None:
    """systemd joins several ``*_DIRECTORY`` entries with ":"; the first is ours."""
    value = environ.get(name, "")
    first = value.split(":", 1)[0]
    return Path(first) if first else None


def _user_runtime_dir() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _RUNTIME_DIR_WARNING)
        return Path(platformdirs.user_runtime_dir(APP_NAME))


def default_config(environ: Mapping[str, str]) -> Config:
    """The config with no file, flags or ``LOGD_*`` variables.

    Root: ``$LOGS_DIRECTORY`` (systemd) else platformdirs ``user_log_dir("logd")``.
    State (output buffers): ``$STATE_DIRECTORY`` else platformdirs ``user_state_dir("logd")``.
    Sockets ``logd.sock`` and ``ctl.sock`` in ``$RUNTIME_DIRECTORY`` else platformdirs
    ``user_runtime_dir("logd")``. platformdirs reads the process environment itself.
    """
    root = _first_dir(environ, "LOGS_DIRECTORY") or Path(platformdirs.user_log_dir(APP_NAME))
    run_dir = _first_dir(environ, "RUNTIME_DIRECTORY") or _user_runtime_dir()
    state_dir = _first_dir(environ, "STATE_DIRECTORY") or Path(
        platformdirs.user_state_dir(APP_NAME)
    )
    return Config(
        root=root,
        listen=Listen(socket=run_dir / "logd.sock", control=run_dir / "ctl.sock"),
        state_dir=state_dir,
    )


def config_search_path(environ: Mapping[str, str]) -> list[Path]:
    """Where a config file is looked for when none is named, first match wins."""
    candidates = []
    systemd_dir = _first_dir(environ, "CONFIGURATION_DIRECTORY")
    if systemd_dir is not None:
        candidates.append(systemd_dir / CONFIG_NAME)
    candidates.append(Path(platformdirs.user_config_dir(APP_NAME)) / CONFIG_NAME)
    candidates.append(SYSTEM_CONFIG)
    return candidates


def find_config_file(flag: str | None, environ: Mapping[str, str]) -> Path | None:
    """The config file to read: ``--config``, ``$LOGD_CONFIG``, else the search path.

    Raises:
        ConfigError: a file named by the flag or the variable does not exist.
    """
    for origin, named in (("--config", flag), ("LOGD_CONFIG", environ.get("LOGD_CONFIG"))):
        if named:
            path = Path(named)
            if not path.is_file():
                problem = "is not a file" if path.exists() else "no such file"
                raise ConfigError(f"{origin} {named}: {problem}")
            return path
    for path in config_search_path(environ):
        if path.is_file():
            return path
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 ({exc.reason})") from None


_ENV_NAMES = ("LOGD_ROOT", "LOGD_SOCKET", "LOGD_CONTROL")
_OVERRIDE_KEYS = {
    "LOGD_ROOT": "root",
    "LOGD_SOCKET": "socket",
    "LOGD_CONTROL": "control",
    "--root": "root",
    "--socket": "socket",
    "--control": "control",
    "--tcp": "tcp",
}


def load_config(
    *,
    config: str | None = None,
    root: str | None = None,
    socket: str | None = None,
    control: str | None = None,
    tcp: str | None = None,
    environ: Mapping[str, str],
) -> Config:
    """The daemon's config: flags, then ``LOGD_ROOT``/``LOGD_SOCKET``/``LOGD_CONTROL``,
    then the file, then systemd's directories, then platformdirs.

    Args:
        config, root, socket, control, tcp: the command-line flags (None when absent).
        environ: the environment to read (``os.environ`` in the daemon).

    Raises:
        ConfigError: one line naming the file or flag, the key and the bad value. Also
            for a TCP listener off loopback without ``shared_key``, and socket paths too
            long for ``sun_path``.
    """
    cfg = default_config(environ)
    # Where socket/control/tcp came from, as the prefix of an error message about them.
    origin = {
        "socket": "default socket path",
        "control": "default control socket path",
        "tcp": "tcp",
    }
    path = find_config_file(config, environ)
    if path is not None:
        data = _read_toml(path)
        cfg = parse_config(data, source=str(path), base=cfg)
        cfg = dataclasses.replace(cfg, config_file=path)
        for key in origin:
            if key in data.get("listen", {}):
                origin[key] = f"{path}: [listen] {key} ="

    # Later sources win: the LOGD_* variables, then the flags. An empty variable counts
    # as unset, because shells make that easy to do by accident.
    sources = [(f"{name} =", environ.get(name) or None) for name in _ENV_NAMES]
    sources += [("--root", root), ("--socket", socket), ("--control", control), ("--tcp", tcp)]
    for label, value in sources:
        if value is None:
            continue
        key = _OVERRIDE_KEYS[label.split()[0]]
        try:
            if key == "root":
                cfg = dataclasses.replace(cfg, root=_path(value))
                continue
            listen = cfg.listen
            if key == "tcp":
                listen = dataclasses.replace(listen, tcp=_tcp(value))
            elif key == "socket":
                listen = dataclasses.replace(listen, socket=_path(value))
            else:
                listen = dataclasses.replace(listen, control=_path(value))
        except _Bad as exc:
            raise ConfigError(f"{label} {_show(value)}: {exc}") from None
        cfg = dataclasses.replace(cfg, listen=listen)
        origin[key] = label
    _check_listen(cfg.listen, origin)
    return cfg


def _check_listen(listen: Listen, origin: Mapping[str, str]) -> None:
    """Refusals that depend on the final merged values, not on one source alone."""
    for key in ("socket", "control"):
        size = len(os.fsencode(getattr(listen, key)))
        if size > MAX_SOCKET_PATH_BYTES:
            raise ConfigError(
                f"{origin[key]} {_show(str(getattr(listen, key)))}: {size} bytes, longer than "
                f"the {MAX_SOCKET_PATH_BYTES} a Unix socket path can hold"
            )
    if listen.tcp is not None and listen.shared_key is None:
        host, port = listen.tcp
        if not is_loopback_host(host):
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise ConfigError(
                f"{origin['tcp']} {_show(shown)}: logd refuses to listen off loopback "
                "without shared_key (set [listen] shared_key)"
            )
