"""The peer producers' side of the peer benchmark: RFC 5424 lines over a Unix stream socket.

rsyslog and syslog-ng receive what logd's own syslog output writes: one RFC 5424 message a
line, the ids in the `[logd@32473 …]` structured-data element. Two ways to send them:
stdlib `SysLogHandler` (one `send()` per record, what an app would configure), and a
batched handler that formats the same lines and writes them 64 KiB at a time (the best a
careful app could do without a client library).
"""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
import os
import socket
import time

from logd.forward.syslog import SD_ID

SESSION: contextvars.ContextVar[str] = contextvars.ContextVar("bench_session", default="-")
RUN_ID = "bench-run"
_HOST = socket.gethostname() or "-"


class Rfc5424Formatter(logging.Formatter):
    """`1 TIMESTAMP HOST APP PROCID - [logd@32473 …] MSG` (the `<PRI>` comes from the handler)."""

    def __init__(self, app: str) -> None:
        super().__init__()
        self._prefix = f' {_HOST} {app} {os.getpid()} - [{SD_ID} run_id="{RUN_ID}" session_id="'
        self._second = -1
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        """The message after `<PRI>`, newline-terminated (the framing both peers read)."""
        seconds = int(record.created)
        if seconds != self._second:  # the same per-second cache logd's renderer has
            self._second = seconds
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        micros = int((record.created - seconds) * 1e6)
        return (
            f'1 {self._second_text}.{micros:06d}Z{self._prefix}{SESSION.get()}" '
            f'logger="{record.name}" level="{record.levelname}"] {record.getMessage()}\n'
        )


def syslog_handler(path: str, app: str) -> logging.Handler:
    """stdlib `SysLogHandler` on a Unix stream socket, newline framing, RFC 5424 lines."""
    handler = logging.handlers.SysLogHandler(address=path, socktype=socket.SOCK_STREAM)
    handler.append_nul = False
    handler.setFormatter(Rfc5424Formatter(app))
    return handler


class BatchedHandler(logging.Handler):
    """The same lines as `syslog_handler()`, written with one `sendall()` per 64 KiB."""

    def __init__(self, path: str, app: str, limit: int = 65536) -> None:
        super().__init__()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(path)
        self._fmt = Rfc5424Formatter(app)
        self._parts: list[bytes] = []
        self._size = 0
        self._limit = limit
        self._pri: dict[str, bytes] = {}  # levelname -> "<PRI>" bytes, user facility

    def emit(self, record: logging.LogRecord) -> None:
        """Format and buffer one record; send when the buffer passes the limit."""
        pri = self._pri.get(record.levelname)
        if pri is None:
            sev = logging.handlers.SysLogHandler.priority_map.get(record.levelname, "warning")
            code = logging.handlers.SysLogHandler.priority_names[sev]
            pri = self._pri[record.levelname] = f"<{8 + code}>".encode()
        data = pri + self._fmt.format(record).encode()
        self._parts.append(data)
        self._size += len(data)
        if self._size >= self._limit:
            self.flush()

    def flush(self) -> None:
        """Send what is buffered."""
        if self._parts:
            self._sock.sendall(b"".join(self._parts))
            self._parts.clear()
            self._size = 0

    def close(self) -> None:
        """Send the rest and close the socket."""
        try:
            self.flush()
            self._sock.close()
        finally:
            super().close()
