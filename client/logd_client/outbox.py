"""The ordered store of everything a transport has not had acknowledged yet.

Oldest first: messages in flight, spooled messages not sent yet (`spooler`), records queued in
memory. Owns the memory bounds, the drop policy, the `logd:dropped` report, batching and
encoding, moving records to the spool, and what `flush()` waits for. No sockets and no
thread of its own: app threads call `put()`, the transport's sender thread the rest.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from . import spool
from .batch import (
    RECORD_OVERHEAD_BYTES,
    Batch,
    Item,
    approx_bytes,
    encode_items,
    frame,
    take_run,
)
from .spooler import Spooler

# Why records were dropped, as the `logd:dropped` report's message says.
QUEUE_FULL: Final = "its queue was full"
DAMAGED_SPOOL: Final = "a spool file was damaged"
UNENCODABLE: Final = "they could not be encoded, or were larger than a message may be"
_INFO: Final = 20
_WARNING: Final = 30
DONT_SLEEP: Final = -1.0
_SPOOL_RETRY_S: Final = 1.0
# How far into the queue a WARNING+ record looks for a DEBUG/INFO one to replace.
_EVICT_SCAN: Final = 64


class _SpoolFull(Exception):
    pass


class Outbox:
    """Records and messages waiting for the daemon's ack, with bounds and a spool.

    Args:
        producer_id: prefixes the chunk ids.
        spooler: the spool files (owned from now on).
        wake: called under the lock when the sender thread must look again.
        max_records, max_bytes: memory bounds; spooling starts at 3/4 of either and
            goes down to 1/2. See `Transport` for the rest.
    """

    def __init__(
        self,
        *,
        producer_id: str,
        spooler: Spooler,
        wake: Callable[[], None],
        max_records: int,
        max_bytes: int,
        max_batch_records: int,
        max_batch_bytes: int,
        max_message_bytes: int,
        window: int,
    ) -> None:
        # Reentrant, as logging's own handler locks are: a signal handler that logs while
        # this thread is inside put() must not deadlock.
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self._acquire, self._release = self.lock.acquire, self.lock.release
        self.producer_id = producer_id
        self.spooler = spooler
        self._wake = wake
        self.max_records, self.max_bytes = max_records, max_bytes
        # put()'s fast path: below both, a record is accepted and starts no spooling (the
        # test of _high() for the record about to be added, with integers: 4h >= 3m).
        self._calm_records = -(-3 * max_records // 4) - 1
        self._calm_bytes = -(-3 * max_bytes // 4)
        self._max_batch_records = max_batch_records
        self._max_batch_bytes = max_batch_bytes
        self._max_message_bytes = max_message_bytes
        self._window = window
        self.pending: deque[Item] = deque()
        self.pending_bytes = 0
        self.inflight: deque[Batch] = deque()
        self.inflight_records = self._inflight_bytes = 0
        # Records taken from `pending` and being encoded or spooled, outside the lock.
        self._building_seq: int | None = None
        self._building_count = self._building_bytes = 0
        self.seq = self._chunk_seq = 0
        self.acked_records = self.orphan_records = self.dropped = 0
        self.spooled_records = self.spool_bytes = 0
        self._own_next_seq: int | None = None
        self._drop_report: dict[str, Any] | None = None
        self._drop_reasons: dict[str, int] = {}  # what the open drop report counts
        self._last_tag = "logd"
        self._warned: set[str] = set()
        self._flush_waiters = 0
        self.closed = False
        # The sender waits for put() to wake it; at first there is none, and waking starts it.
        self.sleeping = True
        self._spool_wanted = False
        self._spool_retry_at = 0.0

    # ----------------------------------------------------------------- app side

    def put(
        self,
        tag: str,
        time_ns: int,
        record: dict[str, Any],
        levelno: int,
        size: int = -1,
        plain: bool = False,
    ) -> None:
        """Queue a record, or drop one (see `Transport.enqueue()`, also for the arguments)."""
        if size < 0:
            size = approx_bytes(record)
        warn = accepted = False
        # acquire/release rather than `with`: half the cost, paid by every record.
        self._acquire()
        try:
            # Open and well below both bounds (counting the open drop report, which only
            # sends borderline cases the long way), a record needs no more checks.
            pending = self.pending
            if (
                not self.closed
                and len(pending) + self.inflight_records + self._building_count < self._calm_records
                and self.pending_bytes + self._inflight_bytes + self._building_bytes + size
                < self._calm_bytes
            ):
                accepted = True
            elif self.closed:
                self.dropped += 1
            else:
                accepted, warn = self._admit(tag, record, levelno, size)
            if accepted:
                self.seq = seq = self.seq + 1
                pending.append((seq, tag, time_ns, record, levelno, size, plain))
                self.pending_bytes += size
                self._last_tag = tag
                if self.sleeping:
                    self.sleeping = False
                    self._wake()
        finally:
            self._release()
        if warn:
            self.warn(
                f"logd_client: {self.max_records} records or {self.max_bytes} bytes are "
                "waiting for the daemon; dropping records from now on. The count is reported "
                "as a logd:dropped event when the daemon is reachable."
            )

    def _admit(
        self, tag: str, record: dict[str, Any], levelno: int, size: int
    ) -> tuple[bool, bool]:
        # put() close to a bound: the drop policy and the spool trigger. Returns (accepted,
        # warn about the first overflow).
        warn = False
        held, held_bytes = self._held()
        accepted = held < self.max_records and held_bytes + size <= self.max_bytes
        if not accepted:
            warn = "overflow" not in self._warned
            self._warned.add("overflow")
            accepted = self._make_room(tag, record, levelno, size)
        if (
            accepted
            and not self._spool_wanted
            and self.spooler.enabled
            and (
                4 * (held + 1) >= 3 * self.max_records
                or 4 * (held_bytes + size) >= 3 * self.max_bytes
            )
        ):
            self._spool_wanted = True
            self.sleeping = True  # put() wakes the sender, sleeping or not
        return accepted, warn

    def count_failure(self) -> None:
        """Count a record the caller could not even build (it is lost)."""
        with self.lock:
            self.dropped += 1

    def wait_acked(self, timeout: float) -> bool:
        """Wait until everything put before the call is acknowledged (`Transport.flush()`)."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self.cond:
            target = self.seq
            self._flush_waiters += 1
            try:
                while self._oldest_outstanding() <= target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self.closed:
                        return False
                    self.cond.wait(remaining)
                return True
            finally:
                self._flush_waiters -= 1

    @staticmethod
    def warn(text: str) -> None:
        """Write one line to stderr, if there is anywhere left to write it."""
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except Exception:  # stderr closed or broken: nowhere left to say it
            pass

    def warn_once(self, key: str, text: str) -> None:
        """`warn()`, the first time only for `key`."""
        with self.lock:
            if key in self._warned:
                return
            self._warned.add(key)
        self.warn(text)

    # ----------------------------------------------------------------- under the lock

    def _held(self) -> tuple[int, int]:
        # The open drop report rides over the bound: it must not cost a record its place.
        records = len(self.pending) + self.inflight_records + self._building_count
        records -= self._drop_report is not None
        return records, self.pending_bytes + self._inflight_bytes + self._building_bytes

    def _high(self) -> bool:
        # Spooling starts here; put() inlines the same test.
        held, held_bytes = self._held()
        return 4 * held >= 3 * self.max_records or 4 * held_bytes >= 3 * self.max_bytes

    def _make_room(self, tag: str, record: dict[str, Any], levelno: int, size: int) -> bool:
        # Only queued records can make room: not what is in flight or being encoded.
        fixed = self.inflight_records + self._building_count + 1
        fixed_bytes = self._inflight_bytes + self._building_bytes + size
        if levelno <= _INFO or fixed >= self.max_records or fixed_bytes > self.max_bytes:
            self._note_drop(tag, record)
            return False
        while True:
            held, held_bytes = self._held()
            if held < self.max_records and held_bytes + size <= self.max_bytes:
                return True
            victim = self._evict()
            if victim is None:
                self._note_drop(tag, record)
                return False
            self._note_drop(victim[1], victim[3])

    def _evict(self) -> Item | None:
        # The oldest DEBUG/INFO among the first few queued, else the oldest; never the
        # open drop report, which carries the count of everything dropped.
        choice: int | None = None
        for index, item in enumerate(itertools.islice(self.pending, _EVICT_SCAN)):
            if item[3] is self._drop_report:
                continue
            if choice is None:
                choice = index
            if item[4] <= _INFO:
                choice = index
                break
        if choice is None:
            return None
        victim = self.pending[choice]
        del self.pending[choice]
        self.pending_bytes -= victim[5]
        if self._flush_waiters:
            self.cond.notify_all()
        return victim

    def _note_drop(
        self, tag: str, like: dict[str, Any], count: int = 1, reason: str = QUEUE_FULL
    ) -> None:
        # One report record collects the count until the sender takes it; it rides in
        # the queue (one over the bound at most), so flush() also waits for it.
        self.dropped += count
        self._drop_reasons[reason] = self._drop_reasons.get(reason, 0) + count
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
            self.seq += 1
            item = (self.seq, tag, time.time_ns(), report, _WARNING, RECORD_OVERHEAD_BYTES, False)
            self.pending.append(item)
            self.pending_bytes += RECORD_OVERHEAD_BYTES
            self._drop_report = report
            if self.sleeping:
                self.sleeping = False
                self._wake()
        report["kv"]["count"] += count

    def _oldest_outstanding(self) -> int:
        oldest = sys.maxsize
        for batch in self.inflight:  # at most a window's worth
            oldest = min(oldest, batch.first_seq)
        if self._building_seq is not None:
            oldest = min(oldest, self._building_seq)
        if self._own_next_seq is not None:
            oldest = min(oldest, self._own_next_seq)
        if self.pending:
            oldest = min(oldest, self.pending[0][0])
        return oldest

    def _built(self) -> None:
        self._building_seq = None
        self._building_count = self._building_bytes = 0
        self._own_next_seq = self.spooler.own_next_seq()
        self.spool_bytes = self.spooler.own_bytes()

    # ----------------------------------------------------------------- sender thread

    def next_step(self, now: float) -> tuple[bool, bool]:
        """Return (spool now, anything to deliver) at the top of a sender loop."""
        with self.lock:
            self.sleeping = False
            spool_due = self._spool_wanted and now >= self._spool_retry_at
            has_work = bool(self.pending or self.inflight) or self.spooler.unread()
            return spool_due, has_work

    def sleep_for(self, connected: bool, has_work: bool, now: float, until: float) -> float | None:
        """Seconds the sender may sleep, None for "until woken", or DONT_SLEEP.

        Asks put() for a wake-up only when a new record could be sent at once: not while
        backing off (until `until`, when not `connected`), not while the window is full.
        """
        with self.lock:
            timeout: float | None = None
            if self._spool_wanted:
                timeout = max(0.0, self._spool_retry_at - now)
            if not connected:
                if has_work:
                    return _earliest(timeout, max(0.0, until - now))
                if self.pending:
                    return DONT_SLEEP  # records arrived while deciding to sleep
                self.sleeping = True
                return timeout
            if self.inflight:
                timeout = _earliest(timeout, max(0.0, self.inflight[0].ack_deadline - now))
            if len(self.inflight) < self._window:
                if self.pending or self.spooler.unread():
                    return DONT_SLEEP
                self.sleeping = True
            return timeout

    def resend(self, now: float, ack_timeout_s: float) -> list[bytes]:
        """Restart the clock of every message in flight and return them, oldest first."""
        with self.lock:
            for batch in self.inflight:
                batch.ack_deadline = now + ack_timeout_s
            return [batch.payload for batch in self.inflight]

    def ack_overdue(self, now: float) -> bool:
        """Whether the oldest message in flight is past its ack deadline."""
        with self.lock:
            return bool(self.inflight) and now > self.inflight[0].ack_deadline

    def fill_window(self, send: Callable[[bytes], None], ack_timeout_s: float) -> None:
        """Hand `send` the next messages, spooled ones first, until the window is full."""
        if self.spooler.scan_due:
            self.spooler.claim_orphans()
        while True:
            with self.lock:
                if len(self.inflight) >= self._window:
                    return
            batches = self._next_spooled()
            if not batches:
                with self.lock:
                    if not self.pending:
                        return
                    tag, items = self._take_batch()
                batches = self._encode(tag, items)
            deadline = time.monotonic() + ack_timeout_s
            with self.lock:
                for batch in batches:
                    batch.ack_deadline = deadline
                    self.inflight.append(batch)
                    self.inflight_records += batch.count
                    self._inflight_bytes += len(batch.payload)
                    send(batch.payload)
                self._built()
                if self._flush_waiters:
                    self.cond.notify_all()  # unencodable records may have been dropped

    def _next_spooled(self) -> list[Batch]:
        report = spool.ReadReport()
        found = self.spooler.next_frame(report)
        if report.damaged_frames:
            lost = report.damaged_records or report.damaged_frames
            with self.lock:
                self._note_drop(self._last_tag, {}, lost, DAMAGED_SPOOL)
            self.warn_once(
                "damaged",
                f"logd_client: a spool file in {self.spooler.directory} was damaged; about "
                f"{lost} records in it are lost (reported as logd:dropped)",
            )
        if found is None:
            return []
        source, frame = found
        first_seq = frame.first_seq if source.own else sys.maxsize
        return [
            Batch(frame.chunk, frame.message, first_seq, frame.count, 0.0, source, frame.offset)
        ]

    def _take_batch(self) -> tuple[str, list[Item]]:
        items, size = take_run(self.pending, self._max_batch_records, self._max_batch_bytes)
        report = self._drop_report
        if report is not None and any(item[3] is report for item in items):
            report["msg"] = drop_message(report["kv"]["count"], self._drop_reasons)
            self._drop_report = None
            self._drop_reasons = {}
        self.pending_bytes -= size
        self._building_seq = items[0][0]
        # Still held in memory while encoding: counted against the bounds.
        self._building_count = len(items)
        self._building_bytes = size
        return items[0][1], items

    def _encode(self, tag: str, items: list[Item]) -> list[Batch]:
        self._chunk_seq += 1
        chunk = f"{self.producer_id}:{self._chunk_seq}"
        try:
            payload = encode_items(tag, items, chunk)
        except Exception:  # wire falls back on odd values; anything left is a lost record
            payload = None
        if payload is not None and len(payload) <= self._max_message_bytes:
            return [Batch(chunk, payload, items[0][0], len(items))]
        if len(items) == 1:
            # Cannot be encoded, or too large even alone: the daemon would never take it.
            with self.lock:
                self._note_drop(tag, items[0][3], reason=UNENCODABLE)
            return []
        half = len(items) // 2
        return self._encode(tag, items[:half]) + self._encode(tag, items[half:])

    def acked(self, chunks: list[str]) -> int:
        """Retire the messages acknowledged; return how many records that was."""
        done: list[Batch] = []
        with self.lock:
            for chunk in chunks:
                for index, batch in enumerate(self.inflight):
                    if batch.chunk == chunk:
                        del self.inflight[index]
                        self.inflight_records -= batch.count
                        self._inflight_bytes -= len(batch.payload)
                        if batch.source is None or batch.source.own:
                            self.acked_records += batch.count
                        else:
                            self.orphan_records += batch.count
                        done.append(batch)
                        break
            if done:
                self.cond.notify_all()
        for batch in done:
            if batch.source is not None:
                self.spooler.acked(batch.source, batch.offset)
        if done:
            with self.lock:
                self._built()
        return sum(batch.count for batch in done)

    # ----------------------------------------------------------------- spooling

    def spool_some(self, *, everything: bool = False) -> bool:
        """Move the oldest messages and records in memory to the spool file, oldest first.

        Down to half the memory bounds, or `everything` (at close). Messages in flight that
        are not in a spool file yet go first: they are older than any queued record (and
        none is in flight while own spooled messages wait to be sent).

        Returns:
            Whether everything asked for was spooled.
        """
        with self.lock:
            unspooled = [batch for batch in self.inflight if batch.source is None]
            if not unspooled and not self.pending:
                self._spool_wanted = False
                return True
        done = True
        try:
            room = self.spooler.room()
            if unspooled:
                frames = [frame(batch) for batch in unspooled]
                room -= sum(map(len, frames))
                if room < 0:
                    raise _SpoolFull
                first = unspooled[0].first_seq
                offsets = self.spooler.append(frames, sent=True, first_seq=first)
                for batch, offset in zip(unspooled, offsets, strict=True):
                    batch.source, batch.offset = self.spooler.own, offset
                with self.lock:
                    self.spooled_records += sum(batch.count for batch in unspooled)
            while True:
                with self.lock:
                    if not self.pending or (not everything and self._below_low_mark()):
                        break
                    tag, items = self._take_batch()
                batches = self._encode(tag, items)
                frames = [frame(batch) for batch in batches]
                try:
                    if sum(map(len, frames)) > room:
                        raise _SpoolFull
                    self.spooler.append(frames, sent=False, first_seq=items[0][0])
                except BaseException:
                    self._put_back(items, batches)
                    raise
                room -= sum(map(len, frames))
                with self.lock:
                    self.spooled_records += sum(batch.count for batch in batches)
                    self._built()
        except _SpoolFull:
            done = False
            self.warn_once(
                "spool-full",
                f"logd_client: the spool in {self.spooler.directory} is full "
                f"({self.spooler.max_bytes} bytes); records stay in memory, and are dropped "
                "once memory is full too",
            )
        except OSError as exc:
            done = False
            self.warn_once(
                "spool-error",
                f"logd_client: cannot spool to {self.spooler.directory}: {exc}; records stay "
                "in memory, and are dropped once memory is full",
            )
        with contextlib.suppress(OSError):  # already written: a crash may cost the tail
            self.spooler.sync()
        with self.lock:
            self._built()
            self._spool_wanted = bool(self.pending) and self._high()
            if not done:
                self._spool_retry_at = time.monotonic() + _SPOOL_RETRY_S
        return done

    def _below_low_mark(self) -> bool:
        held, held_bytes = self._held()
        return 2 * held <= self.max_records and 2 * held_bytes <= self.max_bytes

    def _put_back(self, items: list[Item], batches: list[Batch]) -> None:
        # The spool could not take them: back to the front of the queue, in order (minus
        # any record _encode() dropped as unencodable).
        kept = {batch.first_seq: batch.count for batch in batches}
        back: list[Item] = []
        index = 0
        while index < len(items):
            count = kept.get(items[index][0], 0)
            back.extend(items[index : index + count])
            index += max(count, 1)
        with self.lock:
            self.pending.extendleft(reversed(back))
            self.pending_bytes += sum(item[5] for item in back)
            self._built()

    def shut_down(self, *, discard: bool) -> None:
        """At close: spool what is not acknowledged (unless `discard`), release the files.

        Error handling:
            What can be neither delivered nor spooled is counted as dropped and warned about.
        """
        if not discard and self.spooler.enabled:
            try:
                self.spool_some(everything=True)
            except Exception as exc:  # never lose the rest of the shutdown to a bug
                self.warn_once("spool-error", f"logd_client: spooling failed: {exc!r}")
        with self.lock:
            lost = len(self.pending) - (self._drop_report is not None)
            lost += sum(batch.count for batch in self.inflight if batch.source is None)
            self.dropped += lost
            self.pending.clear()
            self.pending_bytes = 0
            self.closed = True
            self.cond.notify_all()
        self.spooler.close()
        if lost and not discard:
            self.warn(
                f"logd_client: {lost} records were neither acknowledged by the daemon nor "
                "spooled; they are lost"
            )


def _earliest(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def drop_message(count: int, reasons: dict[str, int]) -> str:
    """The text of a `logd:dropped` report: how many records, and why."""
    if len(reasons) == 1:
        return f"logd_client dropped {count} records: {next(iter(reasons))}"
    why = "; ".join(f"{n} because {reason}" for reason, n in reasons.items())
    return f"logd_client dropped {count} records: {why}"
