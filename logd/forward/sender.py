"""The trio side of one output: connect, send from its buffer, back off, report.

Subclasses speak the protocol (`fluent`, `syslog_output`). This module owns the retry
loop with exponential backoff and jitter, the counters `logd-ctl status` shows, and the
two socket checks both protocols use. Buffer reads and acks run in worker threads, so
the event loop never waits on the disk.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import random
import select
import struct
import termios
import time
from collections.abc import Callable
from typing import Any

import trio
from logd_client import wire

from logd.forward.buffer import DiskBuffer
from logd.forward.hub import OutputBuffer

log = logging.getLogger("logd.forward")

FIRST_RETRY_S = 0.5
# While idle, how often a connection is checked for a peer that went away, so status
# tells the truth and the next batch does not go into a dead socket.
IDLE_CHECK_S = 1.0
# A connection that lived this long before the upstream closed it while idle was fine.
STABLE_S = 5.0
_INT = struct.Struct("i")


class UpstreamError(Exception):
    """The upstream failed in a way that ends this connection; `str()` is the last_error."""


def backoff_s(attempt: int, retry_max_s: float, jitter: float) -> float:
    """Seconds to wait before reconnect `attempt` (0 first): 0.5 s doubling up to
    `retry_max_s`, scaled by `0.5 + jitter / 2` (jitter in [0, 1]) so a fleet that lost
    its aggregator at once does not come back in lockstep."""
    ceiling = min(retry_max_s, FIRST_RETRY_S * 2.0 ** min(attempt, 32))
    return ceiling * (0.5 + 0.5 * jitter)


def peer_closed(stream: trio.SocketStream) -> bool:
    """Whether the peer closed or reset the connection (poll(2) POLLRDHUP, no read)."""
    poller = select.poll()
    poller.register(stream.socket.fileno(), select.POLLRDHUP)
    return bool(poller.poll(0))


def unacked_bytes(stream: trio.SocketStream) -> int:
    """Bytes the peer's TCP has not acknowledged yet (SIOCOUTQ, tcp(7))."""
    raw = fcntl.ioctl(stream.socket.fileno(), termios.TIOCOUTQ, _INT.pack(0))
    value: int = _INT.unpack(raw)[0]
    return value


def _describe(exc: BaseException) -> str:
    """Short and specific: `Connection refused (ECONNREFUSED)`, not trio's summary."""
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return f"{os.strerror(exc.errno)} ({name})"
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        cause = cause.exceptions[0]  # open_tcp_stream: one error per address tried
    if isinstance(cause, OSError):
        return _describe(cause)
    return str(exc) or type(exc).__name__


class Sender:
    """One output's connection loop; `run()` never returns (cancel it to stop).

    At stop nothing is lost: what was not acknowledged stays in the buffer and is sent
    again, first, by the next start.
    """

    type_name = "?"

    def __init__(self, output: OutputBuffer, hostname: str) -> None:
        self.settings = output.settings
        self.buffer: DiskBuffer = output.buffer
        self.hostname = hostname
        self.connected = False
        self.sent = 0
        self.acked = 0
        self.retried = 0
        self.last_error: str | None = None
        self.last_error_time: float | None = None
        self._wake = trio.Event()
        self._sent_high = self.buffer.acked_seq
        self._progress = False
        self._random: Callable[[], float] = random.random

    @property
    def target(self) -> str:
        host = self.settings.host
        return f"[{host}]:{self.settings.port}" if ":" in host else f"{host}:{self.settings.port}"

    def notify(self) -> None:
        """New records are in the buffer (called by the server after a writer batch)."""
        self._wake.set()

    def status(self) -> dict[str, Any]:
        """This output for `logd-ctl status`."""
        return {
            "name": self.settings.name,
            "type": self.type_name,
            "target": self.target,
            "connected": self.connected,
            "buffered_records": self.buffer.records,
            "buffered_bytes": self.buffer.bytes,
            "sent": self.sent,
            "acked": self.acked,
            "retried": self.retried,
            "dropped": dict(self.buffer.dropped),
            "last_error": self.last_error,
            "last_error_time": self.last_error_time,
        }

    async def run(self) -> None:
        attempt = 0
        while True:
            self._progress = False
            try:
                with trio.fail_after(self.settings.timeout_s):
                    stream = await trio.open_tcp_stream(self.settings.host, self.settings.port)
            except (OSError, trio.TooSlowError) as exc:
                self._fail(f"cannot connect to {self.target}: {_describe(exc)}")
            else:
                began = trio.current_time()
                try:
                    await self._session(stream)
                    # The upstream closed an idle connection (logd does after
                    # idle_timeout_s): not a failure, unless it does so at once.
                    log.debug("output %s: idle connection closed by upstream", self.settings.name)
                    self._progress |= trio.current_time() - began >= STABLE_S
                except UpstreamError as exc:
                    self._fail(str(exc))
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self._fail(f"connection to {self.target} lost: {_describe(exc)}")
                except wire.RemoteProtocolError as exc:
                    self._fail(f"{self.target} sent bad data ({exc.code}): {exc}")
                finally:
                    self.connected = False
                    with trio.CancelScope(shield=True):
                        await stream.aclose()
            if self._progress:
                attempt = 0
            await trio.sleep(backoff_s(attempt, self.settings.retry_max_s, self._random()))
            attempt += 1

    async def _session(self, stream: trio.SocketStream) -> None:
        """Send until the connection fails, and raise why; return if the upstream closed
        it while nothing was in flight. Subclasses implement it."""
        raise NotImplementedError

    # --- helpers for the protocols ---------------------------------------------------

    def _up(self) -> None:
        """The connection is ready for data (after the handshake, if any)."""
        self.connected = True
        if self.last_error is not None:
            log.info("output %s: connected to %s", self.settings.name, self.target)

    def _fail(self, message: str) -> None:
        if message != self.last_error:
            log.warning("output %s: %s", self.settings.name, message)
        self.last_error = message
        self.last_error_time = time.time()

    def _fresh_wake(self) -> None:
        # Called at the top of each round, before looking at the buffer: a notify()
        # after this point wakes the coming wait, so none is lost.
        self._wake = trio.Event()

    async def _wait(self, deadline: float) -> None:
        with trio.move_on_at(deadline):
            await self._wake.wait()

    async def _send(self, stream: trio.SocketStream, data: bytes) -> None:
        with trio.move_on_after(self.settings.timeout_s) as scope:
            await stream.send_all(data)
        if scope.cancelled_caught:
            raise UpstreamError(
                f"{self.target} stopped reading: could not send for {self.settings.timeout_s:g}s"
            )

    def _count_sent(self, seq: int, records: int) -> None:
        if seq <= self._sent_high:
            self.retried += records
        else:
            self.sent += records
            self._sent_high = seq

    async def _ack(self, seq: int, records: int) -> None:
        await trio.to_thread.run_sync(self._ack_sync, seq, records)
        self._progress = True

    def _ack_sync(self, seq: int, records: int) -> None:
        # Counted with the buffer's change, so a status taken meanwhile adds up.
        self.buffer.ack(seq)
        self.acked += records
