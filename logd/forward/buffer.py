"""One output's disk buffer: append-only segment files of framed batches, acked in order.

It owns one folder (`<state_dir>/forward/<name>/`): segment files `<first seq>.seg`,
`acked` (the highest acknowledged batch) and `producer` (this buffer's id, so resent
chunks keep their names across restarts). The writer thread appends; the output's
sender reads and acknowledges from worker threads; a lock serialises them. The event
loop only reads plain counters. No sockets, no trio.

Frames are `frames.py`'s. A torn frame at the end of a segment (a crash mid-append)
is cut off when the buffer is opened; a damaged one in the middle is skipped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from logd_client import wire

from logd.forward.frames import (
    HEADER,
    MAX_PAYLOAD_BYTES,
    Batch,
    Entry,
    damaged_size,
    decode_batch,
    encode_payloads,
    header_records,
    pack_frame,
    parse_frame,
)

log = logging.getLogger("logd.forward")

SUFFIX = ".seg"


@dataclass(frozen=True, slots=True)
class _Ref:
    seq: int
    segment: int
    offset: int
    size: int
    records: int


class DiskBuffer:
    """Bounded, crash-safe FIFO of batches for one output; see the module docstring.

    Counters (`records`, `bytes`, `dropped`, `last_seq`, `acked_seq`) may be read from
    any thread without the lock: each is replaced by one assignment.

    Resource handling: holds the current segment's descriptor; `close()` releases it.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        fsync: bool = True,
        segment_bytes: int | None = None,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        # Several segments per buffer, so dropping or acking the oldest frees disk early.
        self.segment_bytes = segment_bytes or max(64 * 1024, min(16 * 1024 * 1024, max_bytes // 8))
        self.records = 0
        self.bytes = 0
        self.dropped: dict[str, int] = {}
        self._lock = threading.RLock()
        self._refs: deque[_Ref] = deque()
        self._segments: dict[int, int] = {}  # first seq -> last seq, oldest first
        self._fd: int | None = None
        self._current = 0
        self._current_size = 0
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.producer_id = self._producer_id()
        self.acked_seq = self._read_acked()
        self.last_seq = self.acked_seq
        self._recover()

    # --- writer side ---------------------------------------------------------------

    def append(self, groups: Sequence[tuple[str, Sequence[Entry]]]) -> int:
        """Append one batch per `(tag, entries)`, durable on return; returns batches added.

        When the buffer is then over `max_bytes`, the oldest batches are dropped and
        counted under `buffer-full`.

        Raises:
            OSError: the disk refused; the segment is cut back, nothing was added.
        """
        payloads: list[tuple[bytes, int]] = []
        for tag, entries in groups:
            if not entries:
                continue
            try:
                payloads += encode_payloads(tag, entries)
            except wire.LocalProtocolError:
                # Records the daemon decoded always re-encode; this is a last defence.
                self.count_drop("unencodable", len(entries))
        if not payloads:
            return 0
        with self._lock:
            refs: list[_Ref] = []
            seq = self.last_seq
            try:
                for payload, count in payloads:
                    if len(payload) > MAX_PAYLOAD_BYTES:
                        self.count_drop("too-large", count)
                        continue
                    seq += 1
                    if self._fd is None or self._current_size >= self.segment_bytes:
                        self._open_segment(seq)
                    assert self._fd is not None
                    _write_all(self._fd, pack_frame(seq, count, payload))
                    size = HEADER.size + len(payload)
                    refs.append(_Ref(seq, self._current, self._current_size, size, count))
                    self._current_size += size
                    self._segments[self._current] = seq
                if self.fsync and self._fd is not None:
                    os.fsync(self._fd)
            except OSError:
                self._rollback(refs)
                raise
            self._refs.extend(refs)
            self.last_seq = seq
            self.records += sum(r.records for r in refs)
            self.bytes += sum(r.size for r in refs)
            self._drop_oldest_over_bound()
            return len(refs)

    # --- sender side ---------------------------------------------------------------

    def read(self, after_seq: int, max_batches: int) -> list[Batch]:
        """Up to `max_batches` unacknowledged batches with seq > `after_seq`, oldest first."""
        return self.take(after_seq, max_batches)[0]

    def take(self, after_seq: int, max_batches: int) -> tuple[list[Batch], int]:
        """`read()`, and the seq it got through: every batch up to it was returned or is
        gone (acked, dropped, damaged), so a sender need not look there again.

        A batch whose bytes no longer check out is dropped (counted as `corrupt`).
        """
        with self._lock:
            wanted: list[_Ref] = []
            for ref in self._refs:
                if len(wanted) >= max_batches:
                    break
                if ref.seq > after_seq:
                    wanted.append(ref)
            through = wanted[-1].seq if len(wanted) >= max_batches else self.last_seq
            batches = []
            for ref in wanted:
                batch = self._load(ref)
                if batch is None:
                    log.error(
                        "forward buffer %s: batch %d is damaged; dropped", self.directory, ref.seq
                    )
                    self._forget(ref, "corrupt")
                    continue
                batches.append(batch)
            return batches, max(through, after_seq)

    def discard(self, seq: int, reason: str) -> None:
        """Drop one batch that can never be sent, counted under `reason`."""
        with self._lock:
            for ref in self._refs:
                if ref.seq == seq:
                    self._forget(ref, reason)
                    return

    def ack(self, seq: int) -> None:
        """Everything up to `seq` is delivered: forget it and delete finished segments."""
        with self._lock:
            if seq <= self.acked_seq:
                return
            while self._refs and self._refs[0].seq <= seq:
                ref = self._refs.popleft()
                self.records -= ref.records
                self.bytes -= ref.size
            self._set_acked(seq)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    # --- internals -----------------------------------------------------------------

    def count_drop(self, reason: str, records: int) -> None:
        """Count records lost for `reason` (shown per output by `logd-ctl status`)."""
        with self._lock:
            # Copy-on-write, so a reader on another thread always sees a whole dict.
            self.dropped = {**self.dropped, reason: self.dropped.get(reason, 0) + records}

    def _forget(self, ref: _Ref, reason: str) -> None:
        # Its segment goes with the next ack past it.
        self._refs.remove(ref)
        self.records -= ref.records
        self.bytes -= ref.size
        self.count_drop(reason, ref.records)

    def _drop_oldest_over_bound(self) -> None:
        high = None
        while self.bytes > self.max_bytes and self._refs:
            ref = self._refs.popleft()
            self.records -= ref.records
            self.bytes -= ref.size
            self.count_drop("buffer-full", ref.records)
            high = ref.seq
        if high is not None:
            self._set_acked(high)

    def _set_acked(self, seq: int) -> None:
        """Persist the new acknowledged seq first, then delete segments wholly behind it."""
        self.acked_seq = seq
        path = self.directory / "acked"
        temp = path.with_suffix(".tmp")
        with open(temp, "w", encoding="ascii") as handle:
            handle.write(f"{seq}\n")
            if self.fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, path)
        for first, last in list(self._segments.items()):
            if last > seq:
                break
            if first == self._current and self._fd is not None:
                os.close(self._fd)
                self._fd = None
            del self._segments[first]
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{first:020d}{SUFFIX}").unlink()

    def _open_segment(self, first_seq: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        path = self.directory / f"{first_seq:020d}{SUFFIX}"
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o600)
        self._current = first_seq
        self._current_size = os.fstat(self._fd).st_size
        self._segments[first_seq] = first_seq - 1
        if self.fsync:
            _fsync_dir(self.directory)

    def _rollback(self, refs: list[_Ref]) -> None:
        # Cut each touched segment back to where this append began, so no half frame
        # stays in front of later ones (recovery stops at the first bad frame).
        for segment in sorted({r.segment for r in refs}):
            first = min(r.offset for r in refs if r.segment == segment)
            path = self.directory / f"{segment:020d}{SUFFIX}"
            with contextlib.suppress(OSError):
                os.truncate(path, first)
            if segment == self._current:
                self._current_size = first
            earlier = [r.seq for r in self._refs if r.segment == segment]
            if earlier:
                self._segments[segment] = earlier[-1]
            else:
                self._segments.pop(segment, None)
                with contextlib.suppress(OSError):
                    path.unlink()
                if segment == self._current and self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
        if self._fd is not None:
            # The write that failed may have left bytes no ref covers.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._current_size)

    def _load(self, ref: _Ref) -> Batch | None:
        path = self.directory / f"{ref.segment:020d}{SUFFIX}"
        try:
            with open(path, "rb") as handle:
                handle.seek(ref.offset)
                data = handle.read(ref.size)
        except OSError:
            return None
        parsed = parse_frame(data, 0)
        if parsed is None or parsed[0] != ref.seq:
            return None
        return decode_batch(ref.seq, data[HEADER.size : ref.size])

    def _producer_id(self) -> str:
        path = self.directory / "producer"
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = path.read_text(encoding="ascii").strip()
            if len(text) == 16 and all(c in "0123456789abcdef" for c in text):
                return text
        ident = secrets.token_hex(8)
        temp = path.with_suffix(".tmp")
        temp.write_text(ident + "\n", encoding="ascii")
        os.replace(temp, path)
        return ident

    def _read_acked(self) -> int:
        try:
            return max(0, int((self.directory / "acked").read_text(encoding="ascii").strip()))
        except (OSError, ValueError, UnicodeDecodeError):
            return 0

    def _recover(self) -> None:
        """Index every frame still wanted; cut torn tails; delete finished segments."""
        segments = []
        for path in self.directory.glob(f"*{SUFFIX}"):
            if path.stem.isdigit():
                segments.append((int(path.stem), path))
        segments.sort()
        high = 0  # seqs only grow; one that does not is damage
        for first, path in segments:
            data = path.read_bytes()
            offset = 0
            last = first - 1
            while offset < len(data):
                parsed = parse_frame(data, offset)
                if parsed is None:
                    damaged = damaged_size(data, offset)
                    if damaged is None:
                        break  # a torn tail, or damage we cannot step over
                    log.error(
                        "forward buffer %s: %s: a damaged batch at %d; dropped",
                        self.directory,
                        path.name,
                        offset,
                    )
                    self.count_drop("corrupt", header_records(data, offset))
                    offset += damaged
                    continue
                if parsed[0] <= high:
                    break
                seq, records, size = parsed
                if seq > self.acked_seq:
                    self._refs.append(_Ref(seq, first, offset, size, records))
                    self.records += records
                    self.bytes += size
                last = high = seq
                offset += size
            if offset < len(data):
                log.warning(
                    "forward buffer %s: %s has %d damaged or torn bytes at %d; cut off",
                    self.directory,
                    path.name,
                    len(data) - offset,
                    offset,
                )
                os.truncate(path, offset)
            self._segments[first] = last
        self.last_seq = max(high, self.acked_seq)
        if self._segments:
            first, last = next(reversed(self._segments.items()))
            if last > self.acked_seq:
                # Go on appending to the newest segment.
                self._fd = os.open(
                    self.directory / f"{first:020d}{SUFFIX}",
                    os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC,
                )
                self._current = first
                self._current_size = os.fstat(self._fd).st_size
        self._set_acked(self.acked_seq)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
