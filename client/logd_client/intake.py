"""The app's side of the outbox: admitting records within the memory bounds, or dropping.

App threads call `put()` for every record, so its common case is a few comparisons and
an append under the lock. Near a bound it decides what to drop (DEBUG/INFO first) and
keeps the one `logd:dropped` report that counts the drops, and it asks for spooling at
3/4 of a bound. What happens to the queue afterwards is the `outbox`'s business.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from .batch import RECORD_OVERHEAD_BYTES, Item, approx_bytes, record_map
from .oversize import fit_record, human_bytes, record_budget
from .spooler import Spooler

# Why records were dropped, as the `logd:dropped` report's message says.
QUEUE_FULL: Final = "its queue was full"
DAMAGED_SPOOL: Final = "a spool file was damaged"
UNENCODABLE: Final = "they could not be encoded, or were larger than a message may be"
_INFO: Final = 20
_WARNING: Final = 30
# How far into the queue a WARNING+ record looks for a DEBUG/INFO one to replace.
_EVICT_SCAN: Final = 64


class Intake:
    """Records queued in memory, the bounds on everything held, and the drop policy.

    The bounds count what the outbox has taken from the queue too (being encoded, in
    flight): those counters live here, kept by the outbox.

    Args:
        spooler: the spool files (owned from now on).
        wake: called under the lock when the sender thread must look again.
        max_records, max_bytes: memory bounds; spooling starts at 3/4 of either.
        max_message_bytes: the daemon's limit on a message; a record too large for one
            is cut down to fit (`oversize`).
    """

    def __init__(
        self,
        *,
        spooler: Spooler,
        wake: Callable[[], None],
        max_records: int,
        max_bytes: int,
        max_message_bytes: int,
    ) -> None:
        # Reentrant, as logging's own handler locks are: a signal handler that logs while
        # this thread is inside put() must not deadlock.
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self._acquire, self._release = self.lock.acquire, self.lock.release
        self.spooler = spooler
        self._wake = wake
        self.max_records, self.max_bytes = max_records, max_bytes
        # put()'s fast path: below both, a record is accepted and starts no spooling (the
        # test of _high() for the record about to be added, with integers: 4h >= 3m).
        self._calm_records = -(-3 * max_records // 4) - 1
        self._calm_bytes = -(-3 * max_bytes // 4)
        self.max_message_bytes = max_message_bytes
        # put() measures a record exactly only when its estimate is above this: the
        # estimate counts every character of its strings, and a few hundred bytes more.
        self._fit_above = record_budget(max_message_bytes, "")
        self.pending: deque[Item] = deque()
        self.pending_bytes = 0
        self.inflight_records = self._inflight_bytes = 0
        # Records taken from `pending` and being encoded or spooled, outside the lock.
        self._building_count = self._building_bytes = 0
        self.seq = self.dropped = self.truncated = 0
        self._drop_report: dict[str, Any] | None = None
        self._drop_reasons: dict[str, int] = {}  # what the open drop report counts
        self._last_tag = "logd"
        self._warned: set[str] = set()
        self._flush_waiters = 0
        self.closed = False
        # The sender waits for put() to wake it; at first there is none, and waking starts it.
        self.sleeping = True
        self._spool_wanted = False

    def put(
        self,
        tag: str,
        time_ns: int,
        record: dict[str, Any] | bytes,
        levelno: int,
        size: int = -1,
        plain: bool = False,
    ) -> None:
        """Queue a record, or drop one (see `Transport.enqueue()`, also for the arguments)."""
        if size < 0:
            size = approx_bytes(record_map(record))
        if size > self._fit_above:
            record = record_map(record)
            fitted = self.fit(tag, record)
            if fitted is not None:
                record, size = fitted, approx_bytes(fitted)
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
        self, tag: str, record: dict[str, Any] | bytes, levelno: int, size: int
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

    def fit(self, tag: str, record: dict[str, Any]) -> dict[str, Any] | None:
        """A copy of `record` cut to fit in a message alone, or None if it fits already
        or cannot be made to fit. Counts the cut and warns about the first one."""
        budget = record_budget(self.max_message_bytes, tag)
        fitted = fit_record(record, budget)
        if fitted is None or not fitted[1]:
            return None
        with self.lock:
            self.truncated += 1
        self.warn_once(
            "truncated",
            f"logd_client: a record was larger than a message to the daemon may be "
            f"({human_bytes(self.max_message_bytes)}); {human_bytes(fitted[1])} of it were "
            "cut, marked '… [truncated …]' where they were. Counted in "
            "statistics().truncated_records.",
        )
        return fitted[0]

    def count_failure(self) -> None:
        """Count a record the caller could not even build (it is lost)."""
        with self.lock:
            self.dropped += 1

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

    def _make_room(self, tag: str, record: dict[str, Any] | bytes, levelno: int, size: int) -> bool:
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
        self, tag: str, like: dict[str, Any] | bytes, count: int = 1, reason: str = QUEUE_FULL
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
            try:
                like = record_map(like)
            except Exception:  # bytes that are no entry: a report without its origin
                like = {}
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

    def _seal_report(self, items: list[Item]) -> None:
        # The sender took the open drop report into a message: from now on it is final.
        report = self._drop_report
        if report is not None and any(item[3] is report for item in items):
            report["msg"] = drop_message(report["kv"]["count"], self._drop_reasons)
            self._drop_report = None
            self._drop_reasons = {}


def drop_message(count: int, reasons: dict[str, int]) -> str:
    """The text of a `logd:dropped` report: how many records, and why."""
    if len(reasons) == 1:
        return f"logd_client dropped {count} records: {next(iter(reasons))}"
    why = "; ".join(f"{n} because {reason}" for reason, n in reasons.items())
    return f"logd_client dropped {count} records: {why}"
