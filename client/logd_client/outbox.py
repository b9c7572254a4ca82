"""The ordered store of everything a transport has not had acknowledged yet.

Oldest first: messages in flight, spooled messages not sent yet (`spooler`), records queued in
memory (`intake`, where app threads put them). Here: batching and encoding, the window of
messages in flight, acks, moving records to the spool, and what `flush()` waits for. No
sockets and no thread of its own: the sender thread calls these, and an app thread in
`Transport.flush()` waits in `wait_acked()`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from . import spool
from .batch import Batch, Item, approx_bytes, encode_items, frame, record_map, take_run
from .intake import DAMAGED_SPOOL, UNENCODABLE, Intake
from .spooler import Spooler

DONT_SLEEP: Final = -1.0
_SPOOL_RETRY_S: Final = 1.0


class _SpoolFull(Exception):
    pass


class Outbox(Intake):
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
        super().__init__(
            spooler=spooler,
            wake=wake,
            max_records=max_records,
            max_bytes=max_bytes,
            max_message_bytes=max_message_bytes,
        )
        self.producer_id = producer_id
        self._max_batch_records = max_batch_records
        self._max_batch_bytes = max_batch_bytes
        self._window = window
        # Below these, queued records wait for the messages in flight to be acked rather
        # than go out as a message of their own: see _sendable().
        self._eager_records = max(1, max_batch_records // 4)
        self._eager_bytes = max(1, max_batch_bytes // 4)
        self.inflight: deque[Batch] = deque()
        self._building_seq: int | None = None
        self._chunk_seq = 0
        self.acked_records = self.orphan_records = 0
        self.spooled_records = self.spool_bytes = 0
        self._own_next_seq: int | None = None
        self._spool_retry_at = 0.0

    def wait_acked(self, timeout: float, give_up: Callable[[], bool] | None = None) -> bool:
        """Wait until everything put before the call is acknowledged (`Transport.flush()`);
        `give_up`, checked under the lock at each wake-up, ends the wait early."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self.cond:
            target = self.seq
            self._flush_waiters += 1
            try:
                while self._oldest_outstanding() <= target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self.closed or (give_up is not None and give_up()):
                        return False
                    self.cond.wait(remaining)
                return True
            finally:
                self._flush_waiters -= 1

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
        backing off (until `until`, when not `connected`), not while the window is full,
        not while queued records wait for an ack (`_sendable()`).
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
                if self._sendable() or self.spooler.unread():
                    return DONT_SLEEP
                # Records held back wait for an ack, which wakes the sender anyway.
                self.sleeping = not self.pending
            return timeout

    def _sendable(self) -> bool:
        # Nagle's rule for messages: a few records go out only when nothing is in flight,
        # so a steady trickle travels as one message per round trip instead of queueing
        # behind a window of tiny ones (each written and fsynced by itself). A batch's
        # worth goes out at once: a busy producer keeps the window full.
        return bool(self.pending) and (
            not self.inflight
            or len(self.pending) >= self._eager_records
            or self.pending_bytes >= self._eager_bytes
        )

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
                    if not self._sendable():
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
        self._seal_report(items)
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
        if payload is not None and len(payload) <= self.max_message_bytes:
            return [Batch(chunk, payload, items[0][0], len(items))]
        if len(items) == 1:
            # Too large even alone, though its estimate said otherwise (put() cuts those):
            # cut it now. Else, or if it cannot be encoded, the daemon would never take it.
            seq, _, time_ns, queued, levelno, _, plain = items[0]
            record = record_map(queued)
            fitted = self.fit(tag, record) if payload is not None else None
            if fitted is not None:
                item = (seq, tag, time_ns, fitted, levelno, approx_bytes(fitted), plain)
                return self._encode(tag, [item])
            with self.lock:
                self._note_drop(tag, record, reason=UNENCODABLE)
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
