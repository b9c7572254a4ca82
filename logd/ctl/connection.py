"""`logd-ctl`'s side of the control socket: one blocking conversation with the daemon.

Request maps out, reply maps in, in the ingest framing (`logd_client.wire`). Stdlib +
msgpack only (no trio), so `logd-ctl` starts fast. Failures become `Unavailable` (no
daemon to talk to) or `DaemonError` (it said no, or the conversation broke off).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from logd_client import wire

__all__ = ["REPLY_TIMEOUT_S", "ControlConnection", "DaemonError", "Unavailable", "reply_result"]

REPLY_TIMEOUT_S = 60.0
# The daemon is trusted and `events --limit 1000000` is a legitimate, large reply.
MAX_REPLY_BYTES = 1 << 30
_READ_BYTES = 1 << 16


class Unavailable(Exception):
    """The daemon cannot be reached: no socket, nobody listening, or no permission."""


class DaemonError(Exception):
    """The daemon replied with a coded error, or the conversation broke off."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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
            raise Unavailable(_unavailable(path, exc)) from None

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


def _unavailable(path: str, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return f"logd is not running (no control socket at {path})"
    if isinstance(exc, ConnectionRefusedError):
        return f"logd is not running (nothing listens on {path})"
    if isinstance(exc, PermissionError):
        return f"permission denied: {path}, are you in the logd group?"
    return f"cannot reach logd at {path}: {exc.strerror or exc}"


def reply_result(reply: Mapping[str, Any] | None) -> Any:
    """The `result` of an ok reply.

    Raises:
        DaemonError: an error reply (its code and message), an unexpected one, or None
            (the daemon closed the connection).
    """
    if reply is None:
        raise DaemonError("disconnected", "logd closed the connection without replying")
    if reply.get("ok") is True:
        return reply.get("result")
    error = reply.get("error")
    if isinstance(error, Mapping):
        code, message = str(error.get("code", "error")), str(error.get("message", ""))
        raise DaemonError(code, message or code)
    raise DaemonError("bad-reply", f"unexpected reply from logd: {str(reply)[:200]}")
