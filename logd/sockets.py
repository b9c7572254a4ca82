"""Listening sockets: binding the Unix socket safely, and adopting ones systemd passed.

Everything here runs once at start (or on reload); connection handling is `server`'s.
"""

from __future__ import annotations

import contextlib
import grp
import os
import socket as stdsocket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from logd.config import Config, is_loopback_host
from logd.registry import Transport

SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes including the NUL


class StartupError(Exception):
    """The daemon cannot start as configured (socket in use, path too long, ...)."""


@dataclass(slots=True)
class Listening:
    """Where the daemon listens, reported through `task_status.started()`."""

    socket: Path | None
    tcp: list[tuple[str, int]] = field(default_factory=list)


async def refuse_if_in_use(path: Path) -> None:
    """Fail early when another daemon serves this socket, before touching anything."""
    if _existing_socket(path) and await _someone_listens(path):
        raise StartupError(f"another daemon is already listening on {path}")


async def bind_unix(path: Path, group: str | None) -> trio.socket.SocketType:
    """Bind and listen on a Unix socket, replacing a stale one, refusing a live one.

    Created 0600 (0660 for `group`): the socket's permissions are what stands between a
    local user and the daemon.

    Raises:
        StartupError: the path is too long, not a socket, in use, or cannot be bound.
    """
    if _existing_socket(path):
        if await _someone_listens(path):
            raise StartupError(f"another daemon is already listening on {path}")
        unlink_quietly(path)
    sock = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        await sock.bind(os.fspath(path))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot bind {path}: {exc.strerror}") from exc
    finally:
        os.umask(old_umask)
    try:
        _set_socket_access(path, group)
    except StartupError:
        sock.close()
        unlink_quietly(path)
        raise
    sock.listen(stdsocket.SOMAXCONN)
    return sock


async def _someone_listens(path: Path) -> bool:
    probe = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        with trio.move_on_after(1):
            await probe.connect(os.fspath(path))
            return True
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _existing_socket(path: Path) -> bool:
    """Check the socket path is usable; True when a (maybe stale) socket is already there."""
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        raise StartupError(f"socket path is longer than {SUN_PATH_MAX} bytes: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (path.exists() or path.is_symlink()):
        return False
    if not path.is_socket():
        raise StartupError(f"{path} exists and is not a socket")
    return True


def _set_socket_access(path: Path, group: str | None) -> None:
    """0600, or 0660 owned by `group` so other services in that group can connect."""
    if group is None:
        os.chmod(path, 0o600)
        return
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise StartupError(f"socket_group {group!r} does not exist") from exc
    try:
        os.chown(path, -1, gid)
    except OSError as exc:
        raise StartupError(f"cannot give {path} to group {group}: {exc.strerror}") from exc
    os.chmod(path, 0o660)


def adopt_inherited(
    sock: stdsocket.socket, listening: Listening, config: Config
) -> tuple[trio.abc.Listener[Any], Transport]:
    """Use a socket systemd passed as an ingest listener: Unix or TCP, as the unit says."""
    name = name_of(sock)
    if sock.type != stdsocket.SOCK_STREAM or not sock.getsockopt(
        stdsocket.SOL_SOCKET, stdsocket.SO_ACCEPTCONN
    ):
        raise StartupError(f"inherited ingest socket {name} is not a listening stream socket")
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    if sock.family == stdsocket.AF_UNIX:
        address = sock.getsockname()
        if listening.socket is None and isinstance(address, str) and address:
            listening.socket = Path(address)
        return listener, "unix"
    if sock.family in (stdsocket.AF_INET, stdsocket.AF_INET6):
        host, port = sock.getsockname()[:2]
        if not config.listen.shared_key and not is_loopback_host(host):
            raise StartupError(
                f"inherited ingest socket {name} is off loopback; set [listen] shared_key"
            )
        listening.tcp.append((host, port))
        return listener, "tcp"
    raise StartupError(f"inherited ingest socket {name} is neither Unix nor TCP")


def name_of(sock: stdsocket.socket) -> str:
    try:
        return repr(sock.getsockname())
    except OSError:
        return f"fd {sock.fileno()}"


def unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def describe(listening: Listening) -> str:
    parts = [f"unix:{listening.socket}"] if listening.socket else []
    parts += [f"tcp://{host}:{port}" for host, port in listening.tcp]
    return ", ".join(parts)
