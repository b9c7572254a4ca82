"""The body of a transport's sender thread: connect, feed, retire acks, back off.

One `Sender` per started transport. Its loop connects with backoff, hands the connection
the outbox's next messages (a reconnect resends what was in flight, in order), retires what
the daemon acks, and spools when the outbox asks. The app's threads reach it only through
`wake()`. Nothing here raises into the app; failures are warned about once.
"""

from __future__ import annotations

import contextlib
import os
import select
import time

from .address import Address, default_address
from .connection import Broken, Connection
from .outbox import DONT_SLEEP, Outbox


class Sender:
    """The sender thread's state and loop (`run()`), for one transport's outbox.

    Args:
        outbox: what to deliver; its lock also guards `conn` and `connections`.
        address: where to connect; None looks `default_address()` up at every attempt.

    Raises:
        OSError: the wake-up pipe cannot be made (out of descriptors).
    """

    def __init__(
        self,
        outbox: Outbox,
        address: Address | None,
        *,
        ack_timeout_s: float,
        backoff_initial_s: float,
        backoff_max_s: float,
        connect_timeout_s: float,
    ) -> None:
        self._outbox = outbox
        self._address = address
        self._ack_timeout_s = ack_timeout_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._connect_timeout_s = connect_timeout_s
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.conn: Connection | None = None
        self.connections = 0
        # Whether the latest connection attempt failed: the exit hook stops waiting then.
        self.last_connect_failed = False
        self._stopping = self._discard = False

    def wake(self) -> None:
        """Make the loop look at the outbox again; never blocks."""
        # A full pipe already means "wake up".
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def stop(self, *, discard: bool) -> None:
        """Ask the loop to end, then spool (or, with `discard`, drop) what is left."""
        self._stopping, self._discard = True, discard
        self.wake()

    def close_pipe(self) -> None:
        """Release the wake-up pipe, once the thread has ended (or never started)."""
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1

    def abandon(self) -> None:
        """In a forked child: close the parent's pipe and connection, send nothing more."""
        self.close_pipe()
        if self.conn is not None:
            self.conn.close()

    def run(self) -> None:
        """The thread's body: deliver until `stop()`, then shut the outbox down."""
        box = self._outbox
        backoff = self._backoff_initial_s
        next_connect_at = 0.0
        while not self._stopping:
            conn = self.conn
            try:
                now = time.monotonic()
                spool_due, has_work = box.next_step(now)
                if spool_due:
                    box.spool_some()
                    continue
                if conn is None and has_work and now >= next_connect_at:
                    try:
                        conn = self._connect(now)
                    except OSError:
                        next_connect_at = now + backoff
                        backoff = min(backoff * 2, self._backoff_max_s)
                        with box.cond:
                            self.last_connect_failed = True
                            box.cond.notify_all()  # a flush that waits while reachable
                if conn is not None:
                    box.fill_window(conn.queue, self._ack_timeout_s)
                    if box.ack_overdue(now):
                        self._disconnect()
                        next_connect_at = now + backoff
                        backoff = min(backoff * 2, self._backoff_max_s)
                        continue
                timeout = box.sleep_for(conn is not None, has_work, now, next_connect_at)
                if timeout == DONT_SLEEP:
                    continue
                poller = select.poll()
                poller.register(self._wake_r, select.POLLIN)
                if conn is not None:
                    mask = select.POLLIN | (select.POLLOUT if conn.wants_write else 0)
                    poller.register(conn.sock, mask)
                ready = poller.poll(None if timeout is None else int(timeout * 1000) + 1)
                for fd, mask in ready:
                    if fd == self._wake_r:
                        self._drain_wake()
                    elif conn is not None:
                        acked = self._service(conn, mask)
                        if acked:
                            # The daemon is making progress: a failure retries quickly.
                            backoff = self._backoff_initial_s
                        elif acked is None:
                            self._disconnect()
                            next_connect_at = time.monotonic() + backoff
                            backoff = min(backoff * 2, self._backoff_max_s)
            except Exception as exc:
                # A bug must not kill delivery for the rest of the process, nor spin.
                box.warn_once("sender", f"logd_client: sender error: {exc!r}; reconnecting")
                self._disconnect()
                next_connect_at = time.monotonic() + backoff
                backoff = min(backoff * 2, self._backoff_max_s)
        self._disconnect()
        box.shut_down(discard=self._discard)

    def _connect(self, now: float) -> Connection:
        conn = Connection.open(self._address or default_address(), self._connect_timeout_s)
        # Everything sent on the old connection and not acknowledged goes first, in its
        # original order.
        for payload in self._outbox.resend(now, self._ack_timeout_s):
            conn.queue(payload)
        with self._outbox.lock:
            self.conn = conn
            self.connections += 1
            self.last_connect_failed = False
        self._outbox.spooler.scan_due = True  # a client that connects delivers orphans
        return conn

    def _disconnect(self) -> None:
        with self._outbox.lock:
            conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except OSError:
            pass

    def _service(self, conn: Connection, mask: int) -> int | None:
        # Handle one poll result: how many records were acked, None when the connection
        # must be dropped.
        acked = 0
        try:
            if mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
                acked = self._outbox.acked(conn.receive_acks())
            if mask & select.POLLOUT:
                conn.send_some()
        except Broken as exc:
            self._outbox.acked(exc.acks)
            if exc.reason == "helo":
                self._outbox.warn_once(
                    "helo",
                    "logd_client: the daemon asks for shared-key authentication, "
                    "which logd_client does not support; use the Unix socket",
                )
            return None
        return acked
