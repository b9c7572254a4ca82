"""The public Transport: records in, delivered to the daemon by a thread of its own.

`Transport.enqueue()` is the only part on the app's hot path: it appends to a deque under
a lock and never does I/O. The first record starts the sender thread (`sender`), which
connects with backoff, feeds the connection from the `outbox` (spooled messages, orphans of
exited processes included, before newer records), retires what the daemon acks and resends
the rest in order after a reconnect. Also here: closing at exit and a clean slate after
`fork()`; the process's shared transports are `shared`'s. Nothing raises into the app;
failures are counted and warned about once.
"""

from __future__ import annotations

import atexit
import os
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import spool, wire
from .address import Address
from .batch import record_map
from .outbox import Outbox
from .sender import Sender
from .spooler import Spooler

_all_transports: weakref.WeakSet[Transport] = weakref.WeakSet()
# How long `flush(while_reachable=True)` waits for the next acknowledgement. The daemon
# acks a batch once it is written and fsynced: milliseconds, unless it is stopped or its
# disk is full, and then what is left is better spooled than waited for.
EXIT_STALL_S = 1.0


@dataclass(frozen=True)
class TransportStatistics:
    """A snapshot of one transport's counters.

    Attributes:
        producer_id: the random id that prefixes this transport's chunk ids.
        connected: whether a connection to the daemon is open.
        connections: connections opened so far.
        enqueued_records: records accepted by `enqueue()` (drop reports included).
        queued_records: records waiting in memory to be sent or spooled.
        queued_bytes: their estimated size.
        inflight_records: records sent and not yet acknowledged.
        inflight_messages: Forward messages sent and not yet acknowledged.
        acked_records: records of this transport the daemon acknowledged.
        dropped_records: records lost (bounds full, unencodable, damaged spool, closed).
        truncated_records: records cut down to fit in a message, then sent.
        spooled_records: records written to this transport's spool files so far.
        spool_bytes: bytes of the spool files this transport holds now.
        orphan_records: records of exited processes' spools delivered by this transport.
        events_off: events not sent because their type is switched off
            (`install(events_off=...)`, `LOGD_EVENTS_OFF`).
    """

    producer_id: str
    connected: bool
    connections: int
    enqueued_records: int
    queued_records: int
    queued_bytes: int
    inflight_records: int
    inflight_messages: int
    acked_records: int
    dropped_records: int
    truncated_records: int
    spooled_records: int
    spool_bytes: int
    orphan_records: int
    events_off: int = 0


class Transport:
    """A buffered, acknowledged Forward-protocol connection to one daemon address.

    Records wait in one order: sent-but-unacknowledged messages (oldest first), spooled
    messages not sent yet, then records queued in memory. A reconnect resends the first,
    and nothing newer goes out before everything older.

    Args:
        address: where to connect; None means `default_address()`, looked up again at
            every connection attempt.
        max_queue_records: records held in memory (queued plus unacknowledged) before
            records are dropped. Spooling starts at 3/4 of it, or of `max_queue_bytes`.
        max_queue_bytes: estimated bytes held in memory, likewise.
        max_batch_records: records per Forward message at most. The default is far above
            what fits in `max_batch_bytes`: messages are bounded by bytes, as Fluent Bit's
            chunks are. A large message carries more records of each session, and the
            daemon's cost per file and batch is shared by all of them.
        max_batch_bytes: estimated size per Forward message at most, counted as
            `max_queue_bytes` counts (about twice the encoded size).
        max_message_bytes: a message that encodes larger is split, and a single record
            that alone is larger is cut down to fit (its message first, marked
            ``… [truncated 3.1 MiB]``), since the daemon would refuse it forever. The
            default is the daemon's default limit.
        window: unacknowledged messages allowed in flight. While one is, fewer than a
            quarter of `max_batch_records` (and of `max_batch_bytes`) queued records wait
            for its ack and then go out as one message.
        ack_timeout_s: a message unacknowledged this long counts as a broken connection.
        backoff_initial_s: first reconnect delay; it doubles after each failure.
        backoff_max_s: longest reconnect delay.
        connect_timeout_s: how long one connection attempt may take.
        use_spool: spool to disk and deliver orphans; False keeps records in memory only.
        spool_dir: the spool directory; default `spool.default_directory()`.
        max_spool_bytes: bound on all spool files of the directory together.

    Resource handling:
        The transport owns its socket, a wake-up pipe, a daemon thread and its spool files,
        all created when first needed. `close()` releases them. After `fork()` the child's
        copy starts empty and owns nothing of the parent's.
    """

    def __init__(
        self,
        address: Address | None = None,
        *,
        max_queue_records: int = 100_000,
        max_queue_bytes: int = 64 << 20,
        max_batch_records: int = 10_000,
        max_batch_bytes: int = 1 << 20,
        max_message_bytes: int = wire.DEFAULT_MAX_MESSAGE_BYTES,
        window: int = 8,
        ack_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        connect_timeout_s: float = 2.0,
        use_spool: bool = True,
        spool_dir: Path | str | None = None,
        max_spool_bytes: int = spool.DEFAULT_MAX_SPOOL_BYTES,
    ) -> None:
        if min(max_queue_records, max_queue_bytes, max_batch_records, window) < 1:
            raise ValueError("queue bounds, max_batch_records and window must be >= 1")
        self.address = address
        self._limits = {
            "max_records": max_queue_records,
            "max_bytes": max_queue_bytes,
            "max_batch_records": max_batch_records,
            "max_batch_bytes": max_batch_bytes,
            "max_message_bytes": max_message_bytes,
            "window": window,
        }
        self._ack_timeout_s = ack_timeout_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._connect_timeout_s = connect_timeout_s
        self._spool_dir: Path | None = None
        if use_spool:
            self._spool_dir = Path(spool_dir) if spool_dir else spool.default_directory()
        self._max_spool_bytes = max_spool_bytes
        self._init_state()
        _all_transports.add(self)

    def _init_state(self) -> None:
        # Everything a forked child must not share with its parent.
        self.producer_id = secrets.token_hex(8)
        spooler = Spooler(self._spool_dir, self.producer_id, self._max_spool_bytes)
        # The outbox starts out "sleeping": its first record calls _wake_or_start().
        self._outbox = Outbox(
            producer_id=self.producer_id, spooler=spooler, wake=self._wake_or_start, **self._limits
        )
        self._lock = self._outbox.lock
        self._sender: Sender | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._events_off = 0

    # ----------------------------------------------------------------- app side

    def enqueue(
        self,
        tag: str,
        time_ns: int,
        record: dict[str, Any] | bytes,
        levelno: int,
        size: int = -1,
        plain: bool = False,
    ) -> None:
        """Queue one record for delivery; never blocks on I/O.

        Args:
            tag: the Forward tag (the app name).
            time_ns: the record's time, in ns since the epoch.
            record: the record map; the transport owns it from now on. Or the whole
                ``[EventTime, record]`` entry packed already (`wire.entries`), whose own
                time is the one sent.
            levelno: the logging level, used to choose what to drop when full.
            size: the record's estimated size in bytes, counted against `max_queue_bytes`;
                -1 (default) estimates it from the record's strings.
            plain: the caller vouches the record needs no sanitising when encoded: a dict
                with str keys and str, int, float, bool, None or bytes values (lists and
                dicts of those too). Saves the sender a check per record.

        Error handling:
            Past either memory bound (while the spool cannot take the overflow) a DEBUG/INFO
            record is dropped, and a higher one takes the place of an older DEBUG/INFO one
            (else of the oldest). Drops are counted, warned about once on stderr and
            reported to the daemon as a `logd:dropped` event.
        """
        self._outbox.put(tag, time_ns, record, levelno, size, plain)

    def count_failure(self) -> None:
        """Count a record the caller could not even build (it is lost)."""
        self._outbox.count_failure()

    def count_event_off(self) -> None:
        """Count an event not sent because its type is switched off."""
        with self._lock:
            self._events_off += 1

    def flush(self, timeout: float = 5.0, *, while_reachable: bool = False) -> bool:
        """Wait until every record enqueued before this call is acknowledged.

        Args:
            timeout: seconds to wait at most.
            while_reachable: wait only while acknowledgements arrive: give up as soon as
                a connection attempt failed and none is open (the daemon is down), or when
                nothing was acknowledged for `EXIT_STALL_S` (it is stopped, or its disk
                refuses). Waiting would only delay the caller: the exit hook, which
                spools instead.

        Returns:
            True iff nothing enqueued before the call is still waiting, in memory or in the
            spool; records that were dropped do not hold it up (their report does).
        """
        if not while_reachable:
            return self._outbox.wait_acked(timeout)
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            with self._lock:
                acked_before = self._outbox.acked_records
            remaining = deadline - time.monotonic()
            waited = min(remaining, EXIT_STALL_S)
            if self._outbox.wait_acked(waited, give_up=self._unreachable):
                return True
            with self._lock:
                stalled = self._outbox.acked_records == acked_before or self._unreachable()
            if stalled or remaining <= waited:
                return False

    def _unreachable(self) -> bool:
        # Called under the outbox lock. Before the sender's first attempt nothing is known
        # yet: it tries at once when the first record arrives, so that wait is short.
        sender = self._sender
        return sender is not None and sender.conn is None and sender.last_connect_failed

    def close(self, timeout: float = 5.0, *, spool: bool = True) -> None:
        """Stop the sender thread and close the connection; idempotent.

        Records not acknowledged by then go to the spool file (`spool=False`: discarded),
        where the next client of the user, or the daemon at start, delivers them. Call
        `flush()` first to give the daemon a chance.

        Args:
            timeout: how long to wait for the thread to stop (and to spool).
            spool: whether to spool what is left rather than discard it.
        """
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._outbox.closed = True
            sender, thread = self._sender, self._thread
            if sender is not None:
                sender.stop(discard=not spool)
            self._outbox.cond.notify_all()
        if sender is None or thread is None:
            self._outbox.shut_down(discard=not spool)  # nothing else uses the state
            return
        thread.join(timeout)
        if not thread.is_alive():
            # Else stuck in connect() or on a slow disk: it is a daemon thread and spools
            # at its next step, unless the interpreter exits first.
            sender.close_pipe()

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closing

    def statistics(self) -> TransportStatistics:
        """Return a consistent snapshot of the counters."""
        box, sender = self._outbox, self._sender
        with self._lock:
            return TransportStatistics(
                producer_id=self.producer_id,
                connected=sender is not None and sender.conn is not None,
                connections=sender.connections if sender is not None else 0,
                enqueued_records=box.seq,
                queued_records=len(box.pending),
                queued_bytes=box.pending_bytes,
                inflight_records=box.inflight_records,
                inflight_messages=len(box.inflight),
                acked_records=box.acked_records,
                dropped_records=box.dropped,
                truncated_records=box.truncated,
                spooled_records=box.spooled_records,
                spool_bytes=box.spool_bytes,
                orphan_records=box.orphan_records,
                events_off=self._events_off,
            )

    def pending_records(self) -> list[tuple[str, int, dict[str, Any]]]:
        """Return (tag, time_ns, record) of the records queued in memory, oldest first.

        For diagnostics and tests: records held as maps are the transport's own objects,
        records held packed (the handler's usual ones) are unpacked into new maps.
        """
        with self._lock:
            return [(item[1], item[2], record_map(item[3])) for item in self._outbox.pending]

    # ----------------------------------------------------------------- sender thread

    def _wake_or_start(self) -> None:
        # The outbox's wake-up, called under the lock when a record arrives for a sleeping
        # sender: the first one starts the thread, so enqueue() itself checks nothing.
        if self._sender is not None:
            self._sender.wake()
        elif not self._outbox.closed:
            self._start()
            if self._sender is None:
                self._outbox.sleeping = True  # not started: the next record tries again

    def _start(self) -> None:
        try:
            sender = Sender(
                self._outbox,
                self.address,
                ack_timeout_s=self._ack_timeout_s,
                backoff_initial_s=self._backoff_initial_s,
                backoff_max_s=self._backoff_max_s,
                connect_timeout_s=self._connect_timeout_s,
            )
        except OSError:  # out of descriptors: the records stay queued, a later one retries
            return
        thread = threading.Thread(
            target=sender.run, name=f"logd-sender-{self.producer_id}", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:
            # "can't create new thread at interpreter shutdown": the records stay queued,
            # and close() spools them from the caller's thread.
            sender.close_pipe()
            return
        self._sender, self._thread = sender, thread

    # ----------------------------------------------------------------- fork

    def _after_fork_in_child(self) -> None:
        # The parent still owns its queue, its connection, its thread and its spool files:
        # the child's copies are discarded (never resent) and their descriptors closed,
        # never unlocked (a flock lock is shared with the parent). The lock may have been
        # held by the parent's sender at fork time, so a new one comes with the new state.
        if self._sender is not None:
            self._sender.abandon()
        self._outbox.spooler.abandon()
        closing = self._closing
        self._init_state()
        self._closing = self._outbox.closed = closing


def _close_all_at_exit() -> None:
    # Transports made directly rather than through install() spool too. Registered at
    # import, so it runs after handler's exit hook (atexit is last in, first out).
    for transport in list(_all_transports):
        if not transport.closed:
            transport.close()


atexit.register(_close_all_at_exit)


def _after_fork_in_child() -> None:
    for transport in list(_all_transports):
        transport._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
