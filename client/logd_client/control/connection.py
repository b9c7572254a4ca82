"""Finding the control socket, and one blocking conversation with the daemon through it.

Shared by the client's readers (`read_events`, `follow`...) and `logd-ctl`, so both find
the socket the same way (SPEC §10). Request maps out, reply maps in, in the ingest framing
(`logd_client.wire`). Stdlib + msgpack only. Failures become `Unavailable` (no daemon to
talk to; `NoPermission` when the socket refuses this user) or `DaemonError` (it said no,
or the conversation broke off).
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import wire
from ..address import user_runtime_dir
from .protocol import DaemonError, reply_ok, reply_result

__all__ = [
    "CONTROL_ENV",
    "REPLY_TIMEOUT_S",
    "SYSTEM_CONTROL",
    "ControlConnection",
    "DaemonError",
    "NoPermission",
    "Unavailable",
    "connect",
    "control_candidates",
    "control_path",
    "reply_ok",
    "reply_result",
]

SYSTEM_CONTROL = "/run/logd/ctl.sock"
CONTROL_ENV = "LOGD_CONTROL"
REPLY_TIMEOUT_S = 60.0
# The daemon is trusted and `events --limit 1000000` is a legitimate, large reply.
MAX_REPLY_BYTES = 1 << 30
_READ_BYTES = 1 << 16
_ACCESS_HINT = (
    "(the control socket needs SocketMode=0660 in logd-control.socket, "
    "or [listen] socket_group for a daemon without systemd)"
)


def _user_runtime_dir() -> str | None:
    try:
        return user_runtime_dir()
    except OSError:  # platformdirs' /tmp fallback is unusable: then there is no user daemon
        return None


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def control_path(
    explicit: str | None,
    environ: Mapping[str, str],
    *,
    runtime_dir: Callable[[], str | None] = _user_runtime_dir,
    is_socket: Callable[[str], bool] = _is_socket,
) -> str:
    """Which control socket to use (SPEC §10).

    Returns:
        `explicit`, else `$LOGD_CONTROL`, else `user_runtime_dir("logd")/ctl.sock` when
        a socket is there, else the system-wide `/run/logd/ctl.sock`.
    """
    candidates = control_candidates(explicit, environ, runtime_dir=runtime_dir)
    return next((path for path in candidates[:-1] if is_socket(path)), candidates[-1])


def control_candidates(
    explicit: str | None,
    environ: Mapping[str, str],
    *,
    runtime_dir: Callable[[], str | None] = _user_runtime_dir,
) -> list[str]:
    """Every control socket to try, in order (SPEC §10): `explicit` or `$LOGD_CONTROL`
    alone; else the user's runtime dir, then the system-wide `/run/logd/ctl.sock`."""
    if explicit:
        return [explicit]
    if environ.get(CONTROL_ENV):
        return [environ[CONTROL_ENV]]
    user_dir = runtime_dir()
    user = [os.path.join(user_dir, "ctl.sock")] if user_dir is not None else []
    return [*user, SYSTEM_CONTROL]


class Unavailable(ConnectionError):
    """The daemon cannot be reached: no socket, nobody listening, or no permission."""


class NoPermission(PermissionError, Unavailable):
    """The control socket exists but this user may not connect to it."""


class ControlConnection:
    """One blocking conversation with the daemon: request maps out, reply maps in.

    Args:
        path: The control socket.
        timeout: Seconds a connect or read may take; None waits forever (`tail -f`).

    Raises:
        Unavailable: nothing to talk to at `path`.

    Resource handling: owns its socket; use as a context manager or call `close()`.
    """

    def __init__(self, path: str, timeout: float | None = REPLY_TIMEOUT_S) -> None:
        self.path = path
        self._timeout = timeout
        self._decoder = wire.MapDecoder(max_message_bytes=MAX_REPLY_BYTES)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
        except OSError as exc:
            self._sock.close()
            raise unavailable_error([(path, exc)]) from exc

    def __enter__(self) -> ControlConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def set_timeout(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._sock.settimeout(timeout)

    def send(self, payload: Mapping[str, Any]) -> None:
        try:
            self._sock.sendall(wire.encode_map(payload))
        except OSError as exc:
            raise DaemonError("disconnected", f"lost the connection to logd: {exc}") from None

    def receive(self) -> dict[str, Any] | None:
        """The next map from the daemon, or None when it closed the connection.

        Raises:
            DaemonError: garbage on the socket, a timeout or a reset.
        """
        try:
            while True:
                event = self._decoder.next_event()
                if isinstance(event, wire.Closed):
                    return None
                if event is not None:
                    return event
                data = self._sock.recv(min(self._decoder.read_size, _READ_BYTES))
                if data:
                    self._decoder.receive_data(data)
                else:
                    self._decoder.receive_eof()
        except wire.RemoteProtocolError as exc:
            raise DaemonError(exc.code, f"bad reply from logd: {exc}") from None
        except TimeoutError:
            raise DaemonError("timeout", f"no reply from logd within {self._timeout:g} s") from None
        except OSError as exc:
            raise DaemonError("disconnected", f"lost the connection to logd: {exc}") from None

    def call(self, payload: Mapping[str, Any]) -> Any:
        """Send one request and return the `result` of its reply.

        Raises:
            DaemonError: an error reply (its code and message), or no reply at all.
        """
        self.send(payload)
        return reply_result(self.receive())


def connect(paths: Sequence[str], timeout: float | None = REPLY_TIMEOUT_S) -> ControlConnection:
    """A conversation with the first of `paths` where a daemon answers.

    Raises:
        Unavailable: none of them; the message names every path and why.
    """
    failures: list[tuple[str, OSError]] = []
    for path in paths:
        try:
            return ControlConnection(path, timeout)
        except Unavailable as exc:
            cause = exc.__cause__
            failures.append((path, cause if isinstance(cause, OSError) else OSError(str(exc))))
    raise unavailable_error(failures)


def unavailable_error(failures: Sequence[tuple[str, OSError]]) -> Unavailable:
    """The error for failed connection attempts (path, why): `NoPermission` when a socket
    refused this user, else `Unavailable`; the message names every path and why."""
    if any(isinstance(exc, PermissionError) for _, exc in failures):
        return NoPermission(_unavailable(failures))
    return Unavailable(_unavailable(failures))


def _reason(path: str, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return f"no control socket at {path}"
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing listens on {path}"
    if isinstance(exc, PermissionError):
        return f"permission denied on {path}"
    return f"{path}: {exc.strerror or exc}"


def _unavailable(failures: Sequence[tuple[str, OSError]]) -> str:
    if len(failures) == 1:
        path, exc = failures[0]
        if isinstance(exc, PermissionError):
            return f"permission denied: {path}, are you in the logd group? {_ACCESS_HINT}"
        if isinstance(exc, FileNotFoundError | NotADirectoryError | ConnectionRefusedError):
            return f"logd is not running ({_reason(path, exc)})"
        return f"cannot reach logd at {path}: {exc.strerror or exc}"
    reasons = "; ".join(_reason(path, exc) for path, exc in failures)
    if any(isinstance(exc, PermissionError) for _, exc in failures):
        return f"cannot reach logd ({reasons}): are you in the logd group? {_ACCESS_HINT}"
    return f"logd is not running ({reasons})"
