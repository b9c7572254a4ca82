"""Listening sockets: binding the Unix socket safely, adopting ones systemd passed, and
unlinking or closing them at exit (`Listeners`).

Everything here runs once at start (or on reload) and at stop; connection handling is
`connections`'s.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import socket as stdsocket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from logd.config import MAX_SOCKET_PATH_BYTES, Config
from logd.config.units import is_loopback_host
from logd.index.states import Transport

# These lines came from the server before `Listeners` moved here; they keep its name.
log = logging.getLogger("logd.ingest")

SUN_PATH_MAX = MAX_SOCKET_PATH_BYTES


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create {path.parent}: {exc.strerror}") from exc
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


class Listeners:
    """The daemon's listening sockets: bound here, or passed by systemd.

    Socket activation (`logd.systemd.listen_fds`): inherited sockets replace binding,
    are never unlinked, and are closed at exit; the control socket waits for its user.

    Args:
        inherited: sockets by name; "ingest" and "control" are used, others ignored.

    Resource handling: `close()` unlinks the sockets bound here and closes our copies of
    inherited ones; each listener returned is closed by whoever accepts on it.
    """

    def __init__(self, inherited: dict[str, list[stdsocket.socket]] | None = None) -> None:
        inherited = dict(inherited or {})
        self._inherited_ingest = inherited.pop("ingest", [])
        controls = inherited.pop("control", [])
        self._inherited_control: stdsocket.socket | None = controls[0] if controls else None
        self._inherited_unused = controls[1:] + [s for ss in inherited.values() for s in ss]
        self._made_sockets: list[Path] = []

    @property
    def ingest_inherited(self) -> bool:
        """Whether systemd passed the ingest sockets (then nothing is bound for ingest)."""
        return bool(self._inherited_ingest)

    async def check_free(self, config: Config) -> None:
        """Fail early when another daemon serves our socket paths, before touching anything.

        Raises:
            StartupError: a socket path is in use or unusable.
        """
        if not self._inherited_ingest:
            await refuse_if_in_use(config.listen.socket)
        if self._inherited_control is None:
            await refuse_if_in_use(config.listen.control)

    async def open_ingest(
        self, config: Config
    ) -> tuple[list[tuple[trio.abc.Listener[Any], Transport]], Listening]:
        """The ingest listeners, and where they listen.

        Raises:
            StartupError: a socket cannot be bound, or an inherited one is unusable.
        """
        listen = config.listen
        listeners: list[tuple[trio.abc.Listener[Any], Transport]] = []
        if self._inherited_ingest:
            listening = Listening(socket=None)
            try:
                for inherited in self._inherited_ingest:
                    listeners.append(adopt_inherited(inherited, listening, config))
            except StartupError:
                self.close_inherited()
                raise
        else:
            sock = await self._bind_unix(listen.socket, listen.socket_group)
            listeners.append((trio.SocketListener(sock), "unix"))
            listening = Listening(socket=listen.socket)
        for unused in self._inherited_unused:
            log.warning("ignoring an inherited socket logd has no use for: %s", name_of(unused))
        if listen.tcp is not None:
            host, port = listen.tcp
            try:
                tcp_listeners = await trio.open_tcp_listeners(port, host=host)
            except OSError as exc:
                raise StartupError(f"cannot listen on tcp {host}:{port}: {exc.strerror}") from exc
            for tcp in tcp_listeners:
                name = tcp.socket.getsockname()
                listening.tcp.append((name[0], name[1]))
                listeners.append((tcp, "tcp"))
        return listeners, listening

    async def open_control(self, config: Config) -> tuple[trio.SocketListener, str]:
        """The control socket, inherited or bound next to the ingest one, and its name."""
        if self._inherited_control is not None:
            sock = trio.socket.from_stdlib_socket(self._inherited_control)
            self._inherited_control = None
            name = sock.getsockname()
        else:
            path = config.listen.control
            sock = await self._bind_unix(path, config.listen.socket_group)
            name = os.fspath(path)
        return trio.SocketListener(sock), f"control unix:{name}"

    async def _bind_unix(self, path: Path, group: str | None) -> trio.socket.SocketType:
        sock = await bind_unix(path, group)
        self._made_sockets.append(path)
        return sock

    def close_inherited(self) -> None:
        # Our duplicates only: the service manager keeps the socket for the next start.
        for sock in [*self._inherited_ingest, *self._inherited_unused]:
            sock.close()
        if self._inherited_control is not None:
            self._inherited_control.close()

    def close(self) -> None:
        """Unlink the sockets bound here; close our copies of inherited ones."""
        for path in self._made_sockets:
            unlink_quietly(path)
        self.close_inherited()
