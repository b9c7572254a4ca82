"""Delivery of records to the daemon: bounded queue, sender thread, acks, reconnects.

`Transport.enqueue()` is the only part on the app's hot path: it appends to a deque
under a lock and never does I/O. One daemon thread per transport connects, batches,
encodes with `wire`, keeps a window of unacknowledged messages, and resends them in
order after a reconnect. Nothing here raises into the app; failures are counted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import select
import socket
import sys
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from . import wire
from .address import Address, UnixAddress, default_address

_INFO: Final = 20
_WARNING: Final = 30
# Rough per-record msgpack overhead beyond msg/exc (keys, ids, pid, thread...): only
# used to cap a batch near max_batch_bytes without encoding twice.
_RECORD_OVERHEAD_BYTES: Final = 256
_SEND_FLAGS: Final = getattr(socket, "MSG_NOSIGNAL", 0)
_RECV_BYTES: Final = 65536
_DONT_SLEEP: Final = -1.0

# (seq, tag, time_ns, record, levelno). A plain tuple: this is built once per log call.
_Item = tuple[int, str, int, dict[str, Any], int]

_all_transports: weakref.WeakSet[Transport] = weakref.WeakSet()


@dataclass(frozen=True)
class TransportStatistics:
    """A snapshot of one transport's counters.

    Attributes:
        producer_id: the random id that prefixes this transport's chunk ids.
        connected: whether a connection to the daemon is open.
        connections: connections opened so far.
        enqueued_records: records accepted by `enqueue()` (drop reports included).
        queued_records: records waiting to be sent.
        inflight_records: records sent and not yet acknowledged.
        inflight_messages: Forward messages sent and not yet acknowledged.
        acked_records: records the daemon acknowledged.
        dropped_records: records lost (queue full, unencodable, closed transport).
    """

    producer_id: str
    connected: bool
    connections: int
    enqueued_records: int
    queued_records: int
    inflight_records: int
    inflight_messages: int
    acked_records: int
    dropped_records: int


@dataclass(eq=False)
class _Batch:
    # One Forward message, kept encoded until acked so a resend is byte-identical
    # (same chunk id: a daemon may recognise the duplicate).
    chunk: str
    payload: bytes
    first_seq: int
    count: int
    sent_at: float = 0.0


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    decoder: wire.ResponseDecoder
    out: deque[memoryview] = field(default_factory=deque)


class Transport:
    """A buffered, acknowledged Forward-protocol connection to one daemon address.

    Records wait in memory in one order: sent-but-unacknowledged messages first (oldest
    first), then queued records. A reconnect resends the former before any of the latter,
    and a future disk spool can take both in that order.

    Args:
        address: where to connect; None means `default_address()`, looked up again at
            every connection attempt.
        max_queue_records: records held in memory (queued plus unacknowledged) before
            records are dropped.
        max_batch_records: records per Forward message at most.
        max_batch_bytes: approximate encoded size per Forward message at most.
        max_message_bytes: a message that encodes larger is split, and a single record
            that alone is larger is dropped, since the daemon would refuse it forever.
        window: unacknowledged messages allowed in flight.
        ack_timeout_s: a message unacknowledged this long counts as a broken connection.
        backoff_initial_s: first reconnect delay; it doubles after each failure.
        backoff_max_s: longest reconnect delay.
        connect_timeout_s: how long one connection attempt may take.

    Resource handling:
        The transport owns its socket, a wake-up pipe and a daemon thread, all created
        on the first `enqueue()`. `close()` releases them. After `fork()` the child's
        copy starts empty and owns nothing of the parent's.
    """

    def __init__(
        self,
        address: Address | None = None,
        *,
        max_queue_records: int = 100_000,
        max_batch_records: int = 1000,
        max_batch_bytes: int = 1 << 20,
        max_message_bytes: int = 8 << 20,
        window: int = 8,
        ack_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        connect_timeout_s: float = 2.0,
    ) -> None:
        if max_queue_records < 1 or max_batch_records < 1 or window < 1:
            raise ValueError("max_queue_records, max_batch_records and window must be >= 1")
        self.address = address
        self._max_queue_records = max_queue_records
        self._max_batch_records = max_batch_records
        self._max_batch_bytes = max_batch_bytes
        self._max_message_bytes = max_message_bytes
        self._window = window
        self._ack_timeout_s = ack_timeout_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._connect_timeout_s = connect_timeout_s
        self._closed = False
        self._init_state()
        _all_transports.add(self)

    def _init_state(self) -> None:
        # Everything a forked child must not share with its parent. Reentrant, as
        # logging's own handler locks are: a signal handler that logs while this thread
        # is inside enqueue() must not deadlock.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self.producer_id = secrets.token_hex(8)
        self._pending: deque[_Item] = deque()
        self._inflight: deque[_Batch] = deque()
        self._inflight_records = 0
        # Records taken from _pending and being encoded, outside the lock.
        self._building_seq: int | None = None
        self._building_count = 0
        self._seq = 0
        self._chunk_seq = 0
        self._acked_records = 0
        self._dropped = 0
        self._connections = 0
        self._connected = False
        self._drop_report: dict[str, Any] | None = None
        self._warned: set[str] = set()
        self._flush_waiters = 0
        self._thread: threading.Thread | None = None
        self._closing = False
        self._sleeping = False
        self._wake_r = -1
        self._wake_w = -1
        self._sock: socket.socket | None = None

    # ----------------------------------------------------------------- app side

    def enqueue(self, tag: str, time_ns: int, record: dict[str, Any], levelno: int) -> None:
        """Queue one record for delivery; never blocks on I/O.

        Args:
            tag: the Forward tag (the app name).
            time_ns: the record's time, in ns since the epoch.
            record: the record map; the transport owns it from now on.
            levelno: the logging level, used to choose what to drop when full.

        Error handling:
            Over `max_queue_records` a DEBUG/INFO record is dropped, and a higher one
            takes the place of the oldest queued record. Drops are counted, warned about
            once on stderr and reported to the daemon as a `logd:dropped` event.
        """
        warn = False
        with self._lock:
            if self._closed:
                self._dropped += 1
                return
            held = len(self._pending) + self._inflight_records + self._building_count
            accepted = held < self._max_queue_records
            if not accepted:
                warn = "overflow" not in self._warned
                self._warned.add("overflow")
                accepted = self._make_room(tag, record, levelno)
            if accepted:
                self._seq += 1
                self._pending.append((self._seq, tag, time_ns, record, levelno))
                if self._sleeping:
                    self._sleeping = False
                    self._wake()
                if self._thread is None:
                    self._start()
        if warn:
            self._warn_overflow()

    def count_failure(self) -> None:
        """Count a record the caller could not even build (it is lost)."""
        with self._lock:
            self._dropped += 1

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record enqueued before this call is acknowledged.

        Args:
            timeout: seconds to wait at most.

        Returns:
            True iff nothing enqueued before the call is still waiting; records that
            were dropped do not hold it up (their `logd:dropped` report does).
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            target = self._seq
            self._flush_waiters += 1
            try:
                while self._oldest_outstanding() <= target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._closed:
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._flush_waiters -= 1

    def close(self, timeout: float = 1.0) -> None:
        """Stop the sender thread and close the connection; idempotent.

        Records not yet acknowledged are discarded: call `flush()` first.

        Args:
            timeout: how long to wait for the thread to stop.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._closing = True
            thread = self._thread
            if thread is not None:
                self._wake()
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                # Stuck in connect(); it is a daemon thread and exits at its next step.
                return
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closed

    def statistics(self) -> TransportStatistics:
        """Return a consistent snapshot of the counters."""
        with self._lock:
            return TransportStatistics(
                producer_id=self.producer_id,
                connected=self._connected,
                connections=self._connections,
                enqueued_records=self._seq,
                queued_records=len(self._pending),
                inflight_records=self._inflight_records,
                inflight_messages=len(self._inflight),
                acked_records=self._acked_records,
                dropped_records=self._dropped,
            )

    def pending_records(self) -> list[tuple[str, int, dict[str, Any]]]:
        """Return (tag, time_ns, record) of the records not yet sent, oldest first.

        For diagnostics and tests; the records are the transport's own objects.
        """
        with self._lock:
            return [(tag, t, rec) for _, tag, t, rec, _ in self._pending]

    # ----------------------------------------------------------------- under the lock

    def _make_room(self, tag: str, record: dict[str, Any], levelno: int) -> bool:
        if levelno <= _INFO or not self._pending:
            self._note_drop(tag, record)
            return False
        first = self._pending.popleft()
        if first[3] is self._drop_report:
            # Keep the open drop report: it carries the count of everything dropped.
            if not self._pending:
                self._pending.appendleft(first)
                self._note_drop(tag, record)
                return False
            victim = self._pending.popleft()
            self._pending.appendleft(first)
        else:
            victim = first
        self._note_drop(victim[1], victim[3])
        if self._flush_waiters:
            self._cond.notify_all()
        return True

    def _note_drop(self, tag: str, like: dict[str, Any]) -> None:
        # One report record collects the count until the sender takes it; it rides in
        # the queue (one over the bound at most), so flush() also waits for it.
        self._dropped += 1
        report = self._drop_report
        if report is None:
            report = {
                "msg": "",
                "level": "WARNING",
                "logger": "logd_client",
                "event_type": "logd:dropped",
                "kv": {"count": 0},
            }
            for key in ("app", "run_id", "pid"):
                if key in like:
                    report[key] = like[key]
            self._seq += 1
            self._pending.append((self._seq, tag, time.time_ns(), report, _WARNING))
            self._drop_report = report
            if self._sleeping:
                self._sleeping = False
                self._wake()
            if self._thread is None and not self._closed:
                self._start()
        report["kv"]["count"] += 1

    def _oldest_outstanding(self) -> int:
        oldest = sys.maxsize
        if self._inflight:
            oldest = self._inflight[0].first_seq
        if self._building_seq is not None:
            oldest = min(oldest, self._building_seq)
        if self._pending:
            oldest = min(oldest, self._pending[0][0])
        return oldest

    def _start(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._wake_r, self._wake_w = wake_r, wake_w
        thread = threading.Thread(
            target=self._run, name=f"logd-sender-{self.producer_id}", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:
            # "can't create new thread at interpreter shutdown": the records stay queued
            # and are lost with the process; nothing else can be done from here.
            os.close(wake_r)
            os.close(wake_w)
            self._wake_r = self._wake_w = -1
            return
        self._thread = thread

    def _wake(self) -> None:
        # A full pipe already means "wake up".
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def _warn_overflow(self) -> None:
        self._warn(
            f"logd_client: {self._max_queue_records} records waiting for the daemon at "
            f"{self.address or 'the default socket'}; dropping records from now on. "
            "The count is reported as a logd:dropped event when the daemon is reachable."
        )

    @staticmethod
    def _warn(text: str) -> None:
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except Exception:  # stderr closed or broken: nowhere left to say it
            pass

    def _warn_once(self, key: str, text: str) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        self._warn(text)

    # ----------------------------------------------------------------- sender thread

    def _run(self) -> None:
        conn: _Connection | None = None
        backoff = self._backoff_initial_s
        next_connect_at = 0.0
        while True:
            try:
                now = time.monotonic()
                with self._lock:
                    self._sleeping = False
                    if self._closing:
                        break
                    has_work = bool(self._pending or self._inflight)
                if conn is None and has_work and now >= next_connect_at:
                    try:
                        conn = self._open_connection(now)
                    except OSError:
                        next_connect_at = now + backoff
                        backoff = min(backoff * 2, self._backoff_max_s)
                if conn is not None:
                    self._fill_window(conn)
                    if self._ack_overdue(now):
                        self._drop_connection(conn)
                        conn = None
                        next_connect_at = now + backoff
                        backoff = min(backoff * 2, self._backoff_max_s)
                        continue
                timeout = self._poll_timeout(conn, has_work, now, next_connect_at)
                if timeout == _DONT_SLEEP:
                    continue  # records arrived while deciding to sleep
                poller = select.poll()
                poller.register(self._wake_r, select.POLLIN)
                if conn is not None:
                    mask = select.POLLIN | (select.POLLOUT if conn.out else 0)
                    poller.register(conn.sock, mask)
                acked_before = self._acked_records  # only this thread changes it
                ready = poller.poll(None if timeout is None else int(timeout * 1000) + 1)
                for fd, mask in ready:
                    if fd == self._wake_r:
                        self._drain_wake()
                    elif conn is not None and not self._service(conn, mask):
                        self._drop_connection(conn)
                        conn = None
                        next_connect_at = time.monotonic() + backoff
                        backoff = min(backoff * 2, self._backoff_max_s)
                if self._acked_records > acked_before:
                    # The daemon is making progress: the next failure retries quickly.
                    backoff = self._backoff_initial_s
            except Exception as exc:
                # A bug must not kill delivery for the rest of the process, nor spin.
                self._warn_once("sender", f"logd_client: sender error: {exc!r}; reconnecting")
                if conn is not None:
                    self._drop_connection(conn)
                    conn = None
                next_connect_at = time.monotonic() + backoff
                backoff = min(backoff * 2, self._backoff_max_s)
        if conn is not None:
            self._drop_connection(conn)

    def _open_connection(self, now: float) -> _Connection:
        address = self.address or default_address()
        if isinstance(address, UnixAddress):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self._connect_timeout_s)
                sock.connect(address.path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection(
                (address.host, address.port), timeout=self._connect_timeout_s
            )
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = _Connection(sock, wire.ResponseDecoder())
        with self._lock:
            self._sock = sock
            self._connected = True
            self._connections += 1
            # Everything sent on the old connection and not acknowledged goes first,
            # in its original order.
            for batch in self._inflight:
                batch.sent_at = now
                conn.out.append(memoryview(batch.payload))
        return conn

    def _drop_connection(self, conn: _Connection) -> None:
        with self._lock:
            self._sock = None
            self._connected = False
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _ack_overdue(self, now: float) -> bool:
        with self._lock:
            return bool(self._inflight) and now - self._inflight[0].sent_at > self._ack_timeout_s

    def _poll_timeout(
        self, conn: _Connection | None, has_work: bool, now: float, next_connect_at: float
    ) -> float | None:
        # Seconds to sleep, None for "until woken", _DONT_SLEEP when records are waiting
        # to be sent. Asks enqueue() for a wake-up only when a new record could be sent
        # at once: not while backing off, not while the window is full.
        with self._lock:
            if conn is None:
                if has_work:
                    return max(0.0, next_connect_at - now)
                if self._pending:
                    return _DONT_SLEEP
                self._sleeping = True
                return None
            timeout: float | None = None
            if self._inflight:
                timeout = max(0.0, self._inflight[0].sent_at + self._ack_timeout_s - now)
            if len(self._inflight) < self._window:
                if self._pending:
                    return _DONT_SLEEP
                self._sleeping = True
            return timeout

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except OSError:
            pass

    def _fill_window(self, conn: _Connection) -> None:
        while True:
            with self._lock:
                if len(self._inflight) >= self._window or not self._pending:
                    return
                tag, items = self._take_batch()
            batches = self._encode(tag, items)
            now = time.monotonic()
            with self._lock:
                self._building_seq = None
                self._building_count = 0
                for batch in batches:
                    batch.sent_at = now
                    self._inflight.append(batch)
                    self._inflight_records += batch.count
                    conn.out.append(memoryview(batch.payload))
                if self._flush_waiters:
                    self._cond.notify_all()  # unencodable records may have been dropped

    def _take_batch(self) -> tuple[str, list[_Item]]:
        pending = self._pending
        tag = pending[0][1]
        items: list[_Item] = []
        size = 0
        while (
            pending
            and len(items) < self._max_batch_records
            and size < self._max_batch_bytes
            and pending[0][1] == tag
        ):
            item = pending.popleft()
            record = item[3]
            if record is self._drop_report:
                count = record["kv"]["count"]
                record["msg"] = f"logd_client dropped {count} records: its queue was full"
                self._drop_report = None
            items.append(item)
            size += (
                _RECORD_OVERHEAD_BYTES + _text_len(record.get("msg")) + _text_len(record.get("exc"))
            )
        self._building_seq = items[0][0]
        # Still held in memory while encoding: counted against the bound.
        self._building_count = len(items)
        return tag, items

    def _encode(self, tag: str, items: list[_Item]) -> list[_Batch]:
        self._chunk_seq += 1
        chunk = f"{self.producer_id}:{self._chunk_seq}"
        try:
            payload = wire.encode_forward(tag, [(it[2], it[3]) for it in items], chunk=chunk)
        except Exception:  # wire falls back on odd values; anything left is a lost record
            payload = None
        if payload is not None and len(payload) <= self._max_message_bytes:
            return [_Batch(chunk, payload, items[0][0], len(items))]
        if len(items) == 1:
            # Cannot be encoded, or too large even alone: the daemon would never take it.
            with self._lock:
                self._note_drop(tag, items[0][3])
            return []
        half = len(items) // 2
        return self._encode(tag, items[:half]) + self._encode(tag, items[half:])

    def _service(self, conn: _Connection, mask: int) -> bool:
        """Handle one poll result for the connection; False when it must be dropped."""
        if mask & (select.POLLIN | select.POLLHUP | select.POLLERR) and not self._receive(conn):
            return False
        if mask & select.POLLOUT:
            return self._send(conn)
        return True

    def _send(self, conn: _Connection) -> bool:
        while conn.out:
            view = conn.out[0]
            try:
                sent = conn.sock.send(view, _SEND_FLAGS)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if sent < len(view):
                conn.out[0] = view[sent:]
                return True
            conn.out.popleft()
        return True

    def _receive(self, conn: _Connection) -> bool:
        decoder = conn.decoder
        try:
            while True:
                try:
                    data = conn.sock.recv(_RECV_BYTES)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EINTR:
                        continue
                    return False
                if not data:
                    decoder.receive_eof()
                    break
                decoder.receive_data(data)
            while True:
                event = decoder.next_event()
                if event is None:
                    return True
                if isinstance(event, wire.Ack):
                    self._on_ack(event.chunk)
                elif isinstance(event, wire.Closed):
                    return False
                elif isinstance(event, wire.Helo):
                    self._warn_once(
                        "helo",
                        "logd_client: the daemon asks for shared-key authentication, "
                        "which logd_client does not support; use the Unix socket",
                    )
                    return False
        except wire.ProtocolError:
            return False

    def _on_ack(self, chunk: str | bytes) -> None:
        if isinstance(chunk, bytes):
            chunk = chunk.decode("utf-8", "replace")
        with self._lock:
            for index, batch in enumerate(self._inflight):
                if batch.chunk == chunk:
                    del self._inflight[index]
                    self._inflight_records -= batch.count
                    self._acked_records += batch.count
                    self._cond.notify_all()
                    return

    # ----------------------------------------------------------------- fork

    def _after_fork_in_child(self) -> None:
        # The parent still owns its queue, its connection and its thread: the child's
        # copies are discarded (never resent) and their descriptors closed. The lock may
        # have been held by the parent's sender at fork time, so it is replaced unused.
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._init_state()


def _text_len(value: object) -> int:
    return len(value) if isinstance(value, str) else 0


# ----------------------------------------------------------------- shared transports

_shared_lock = threading.Lock()
_shared: dict[Address | None, Transport] = {}


def shared_transport(address: Address | None) -> Transport:
    """Return the process's transport for `address`, creating it on first use.

    Handlers and the event API of one process share one connection per address.
    """
    with _shared_lock:
        transport = _shared.get(address)
        if transport is None or transport.closed:
            transport = _shared[address] = Transport(address)
        return transport


def shared_transports() -> list[Transport]:
    """Return every shared transport of the process."""
    with _shared_lock:
        return list(_shared.values())


def forget_shared_transports() -> None:
    """Close and forget the shared transports (used by tests and at exit)."""
    with _shared_lock:
        transports = list(_shared.values())
        _shared.clear()
    for transport in transports:
        transport.close(timeout=0.5)


def _after_fork_in_child() -> None:
    global _shared_lock
    _shared_lock = threading.Lock()
    for transport in list(_all_transports):
        transport._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
