"""Configuration: the frozen dataclasses, and how one is built from its sources. Every
other stage reads a `Config`; nothing here opens a socket or touches the log tree.

:func:`parse_config` is pure (a parsed TOML mapping over a base config).
:func:`default_config` and :func:`load_config` add the environment, platformdirs and
the file system (`locations`), in the precedence of SPEC §10. Single values are
checked in `values`, ``[[forward]]`` in `forward`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import platformdirs
from logd_client.wire import DEFAULT_MAX_MESSAGE_BYTES

from logd.config.forward import Forward, parse_forward
from logd.config.locations import APP_NAME, find_config_file, first_dir, read_toml, user_runtime_dir
from logd.config.units import MiB, is_loopback_host
from logd.config.values import (
    BadValue,
    ConfigError,
    Converters,
    as_table,
    config_error,
    convert_table,
    known_names,
    show_value,
    to_bool,
    to_bytes,
    to_hostport,
    to_int,
    to_name,
    to_number,
    to_path,
    to_patterns,
)

__all__ = [
    "Config",
    "ConfigError",
    "Events",
    "Layout",
    "Limits",
    "Listen",
    "Retention",
    "Rotation",
    "RotationPolicy",
    "default_config",
    "load_config",
    "parse_config",
]

FsyncMode = Literal["none", "batch", "always"]
FSYNC_MODES: tuple[FsyncMode, ...] = ("none", "batch", "always")
# sun_path is 108 bytes on Linux, one of them the terminating NUL (unix(7)).
MAX_SOCKET_PATH_BYTES = 107


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
class Events:
    """Events switched off: their records are written as usual, but not to `events.log`
    nor the index (the event-log design keeps per-turn events off unless enabled)."""

    off: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection and per-daemon bounds."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES  # what logd's client keeps within
    # Messages are bounded by bytes, as Fluentd and Fluent Bit bound them; 0 = no count limit.
    max_records: int = 0
    max_connections: int = 1024
    idle_timeout_s: float = 300
    session_idle_s: float = 3600
    open_files: int = 4096
    # Bytes a connection reads on while the writer has its previous messages; 0 = off.
    # About two of logd's client's messages: the writer takes both in one batch.
    read_ahead_bytes: int = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Listen:
    """Where the daemon listens. ``tcp`` is ``(host, port)`` with IPv6 hosts unbracketed."""

    socket: Path
    control: Path
    tcp: tuple[str, int] | None = None
    shared_key: str | None = None
    socket_group: str | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the daemon is told; built once at start and on reload."""

    root: Path
    listen: Listen
    rotation: Rotation = field(default_factory=Rotation)
    retention: Retention = field(default_factory=Retention)
    layout: Layout = field(default_factory=Layout)
    limits: Limits = field(default_factory=Limits)
    events: Events = field(default_factory=Events)
    fsync: FsyncMode = "batch"
    config_file: Path | None = None
    forward: tuple[Forward, ...] = ()
    # Output buffers live in <state_dir>/forward/<name>/; None: platformdirs' user_state_dir.
    state_dir: Path | None = None


# --------------------------------------------------------------------------- parse_config


def _fsync(value: Any) -> FsyncMode:
    if value not in FSYNC_MODES:
        raise BadValue('must be "none", "batch" or "always"')
    return cast(FsyncMode, value)


_ROTATION_KEYS: Converters = {
    "max_bytes": to_bytes(1),
    "backups": to_int(0),
    "compress": to_bool,
}
_SECTIONS: dict[str, Converters] = {
    "listen": {
        "socket": to_path,
        "control": to_path,
        "tcp": to_hostport,
        "shared_key": to_name,
        "socket_group": to_name,
    },
    "retention": {
        "runs_days": to_number(unit_s=86400, positive=False),
        "runs_keep": to_int(0),
        "calls_days": to_number(unit_s=86400, positive=False),
        "sessions_days": to_number(unit_s=86400, positive=False),
        "events_days": to_number(unit_s=86400, positive=False),
        "max_total_bytes": to_bytes(0),
        "interval_s": to_number(unit_s=1, positive=True),
    },
    "layout": {"utc": to_bool, "component_files": to_bool},
    "limits": {
        "max_message_bytes": to_bytes(1),
        "max_records": to_int(0),
        "max_connections": to_int(1),
        "idle_timeout_s": to_number(unit_s=1, positive=True),
        "session_idle_s": to_number(unit_s=1, positive=True),
        "open_files": to_int(1),
        "read_ahead_bytes": to_bytes(0),
    },
    "events": {"off": to_patterns},
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
    "events",
    "durability",
    "forward",
)


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
            raise ConfigError(f"{source}: {label}: {what} {known_names(_TOP_LEVEL)}")
    config = base
    if "root" in data:
        try:
            config = dataclasses.replace(config, root=to_path(data["root"]))
        except BadValue as exc:
            raise config_error(source, "root", data["root"], str(exc)) from None
    if "state_dir" in data:
        try:
            config = dataclasses.replace(config, state_dir=to_path(data["state_dir"]))
        except BadValue as exc:
            raise config_error(source, "state_dir", data["state_dir"], str(exc)) from None
    if "forward" in data:
        config = dataclasses.replace(config, forward=parse_forward(source, data["forward"]))
    if "rotation" in data:
        rotation = as_table(source, "rotation", data["rotation"])
        policies: dict[str, RotationPolicy] = {}
        for kind, sub in rotation.items():
            if kind not in _ROTATION_KINDS:
                label = f"[rotation.{kind}]" if isinstance(sub, Mapping) else f"[rotation] {kind}"
                what = "unknown section" if isinstance(sub, Mapping) else "unknown key"
                raise ConfigError(f"{source}: {label}: {what} {known_names(_ROTATION_KINDS)}")
            values = convert_table(
                source,
                f"rotation.{kind}",
                as_table(source, f"rotation.{kind}", sub),
                _ROTATION_KEYS,
            )
            policies[kind] = dataclasses.replace(getattr(config.rotation, kind), **values)
        config = dataclasses.replace(
            config, rotation=dataclasses.replace(config.rotation, **policies)
        )
    for section, converters in _SECTIONS.items():
        if section not in data:
            continue
        values = convert_table(
            source, section, as_table(source, section, data[section]), converters
        )
        if section == "durability":
            if "fsync" in values:
                config = dataclasses.replace(config, fsync=values["fsync"])
        else:
            current = getattr(config, section)
            config = dataclasses.replace(
                config, **{section: dataclasses.replace(current, **values)}
            )
    return config


# --------------------------------------------------------------------------- environment


def default_config(environ: Mapping[str, str]) -> Config:
    """The config with no file, flags or ``LOGD_*`` variables.

    Root: ``$LOGS_DIRECTORY`` (systemd) else platformdirs ``user_log_dir("logd")``.
    State (output buffers): ``$STATE_DIRECTORY`` else platformdirs ``user_state_dir("logd")``.
    Sockets ``logd.sock`` and ``ctl.sock`` in ``$RUNTIME_DIRECTORY`` else platformdirs
    ``user_runtime_dir("logd")``. platformdirs reads the process environment itself.
    """
    root = first_dir(environ, "LOGS_DIRECTORY") or Path(platformdirs.user_log_dir(APP_NAME))
    run_dir = first_dir(environ, "RUNTIME_DIRECTORY") or user_runtime_dir()
    state_dir = first_dir(environ, "STATE_DIRECTORY") or Path(platformdirs.user_state_dir(APP_NAME))
    return Config(
        root=root,
        listen=Listen(socket=run_dir / "logd.sock", control=run_dir / "ctl.sock"),
        state_dir=state_dir,
    )


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
        data = read_toml(path)
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
                cfg = dataclasses.replace(cfg, root=to_path(value))
                continue
            listen = cfg.listen
            if key == "tcp":
                listen = dataclasses.replace(listen, tcp=to_hostport(value))
            elif key == "socket":
                listen = dataclasses.replace(listen, socket=to_path(value))
            else:
                listen = dataclasses.replace(listen, control=to_path(value))
        except BadValue as exc:
            raise ConfigError(f"{label} {show_value(value)}: {exc}") from None
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
                f"{origin[key]} {show_value(str(getattr(listen, key)))}: {size} bytes, longer than "
                f"the {MAX_SOCKET_PATH_BYTES} a Unix socket path can hold"
            )
    if listen.tcp is not None and listen.shared_key is None:
        host, port = listen.tcp
        if not is_loopback_host(host):
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise ConfigError(
                f"{origin['tcp']} {show_value(shown)}: logd refuses to listen off loopback "
                "without shared_key (set [listen] shared_key)"
            )
