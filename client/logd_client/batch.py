"""What the outbox holds: queued records (items), their size estimates, encoded messages.

Split from `outbox` so that the per-record work (estimating a record's size on the app's
thread, encoding a batch on the sender thread) lives in one small place, kept cheap.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from . import spool
from .spooler import SpoolSource
from .wire.encode import encode_packed_batch, encode_packed_entries
from .wire.entries import decode_entry

# Rough per-record msgpack overhead beyond its strings (keys, ids, pid, thread...): sizes
# are estimated on the hot path without encoding.
RECORD_OVERHEAD_BYTES: Final = 256
# What a queued record costs beyond its own strings, per field of a map and item of a list.
_FIELD_BYTES: Final = 16

# (seq, tag, time_ns, record, levelno, bytes, plain). A plain tuple: built once per log
# call. `plain`: the record's builder vouches it needs no sanitising (encode_packed_batch).
# The record is a map, or a whole entry packed already (bytes: `wire.entries`).
Item = tuple[int, str, int, dict[str, Any] | bytes, int, int, bool]
TAG: Final = 1
SIZE: Final = 5
_entry = operator.itemgetter(2, 3, 6)  # (time_ns, record, plain)
_record_of = operator.itemgetter(3)
_is_bytes = bytes.__instancecheck__  # isinstance(x, bytes), for map()
_tag_of = operator.itemgetter(TAG)
_size_of = operator.itemgetter(SIZE)


@dataclass(eq=False)
class Batch:
    """One Forward message, kept encoded until acked so a resend is byte-identical.

    The same chunk id lets the daemon recognise a duplicate. `source` is the spool file
    holding it, if any; an orphan's batch has `first_seq` sys.maxsize: flush() ignores it.
    """

    chunk: str
    payload: bytes
    first_seq: int
    count: int
    ack_deadline: float = 0.0
    source: SpoolSource | None = None
    offset: int = 0


def take_run(pending: deque[Item], max_records: int, max_bytes: int) -> tuple[list[Item], int]:
    """Take the oldest records for one message, from a non-empty queue.

    As many as a record-by-record loop would: of the first record's tag, at most
    `max_records`, adding records while their total is below `max_bytes`. But in C loops
    (slicing, summing, comparing), since this is the sender's per-record cost.

    Returns:
        The records, oldest first, and their estimated bytes.
    """
    items = list(itertools.islice(pending, max_records))
    tag = items[0][TAG]
    if not all(map(operator.eq, itertools.repeat(tag), map(_tag_of, items))):
        del items[next(i for i, item in enumerate(items) if item[TAG] != tag) :]
    size = sum(map(_size_of, items))
    if size - items[-1][SIZE] >= max_bytes:  # fewer: up to the first that reaches it
        totals = list(itertools.accumulate(map(_size_of, items)))
        count = bisect.bisect_left(totals, max_bytes) + 1
        del items[count:]
        size = totals[count - 1]
    if len(items) == len(pending):
        pending.clear()
    else:
        popleft = pending.popleft
        for _ in itertools.repeat(None, len(items)):
            popleft()
    return items, size


def encode_items(tag: str, items: list[Item], chunk: str) -> bytes:
    """Encode queued records, oldest first, as one PackedForward message asking for `chunk`.

    Raises:
        LocalProtocolError: a record cannot be encoded even with the wire's fallbacks.
    """
    records = list(map(_record_of, items))
    if all(map(_is_bytes, records)):  # the usual case: every one packed already
        return encode_packed_entries(tag, records, chunk=chunk)
    return encode_packed_batch(tag, list(map(_entry, items)), chunk=chunk)


def record_map(record: dict[str, Any] | bytes) -> dict[str, Any]:
    """The map of a queued record, unpacking one queued as an entry: for the rare paths
    (drops, cutting, diagnostics) that look inside."""
    return decode_entry(record)[1] if isinstance(record, bytes) else record


def frame(batch: Batch) -> bytes:
    """The spool frame of an encoded message."""
    return spool.encode_frame(
        batch.chunk, batch.payload, count=batch.count, first_seq=batch.first_seq
    )


def approx_bytes(record: dict[str, Any]) -> int:
    """Estimate a record's size from its strings; one level of nesting (kv) is looked into.

    For records of unknown make (events, `Transport.enqueue()`); the handler estimates its
    own records as it builds them, at a fraction of this cost.
    """
    size = RECORD_OVERHEAD_BYTES
    for value in record.values():
        size += value_bytes(value)
    return size


def value_bytes(value: object) -> int:
    """Estimated bytes of one field's value beyond the fixed per-record overhead."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        size = _FIELD_BYTES * len(value)
        for inner in value.values():
            if isinstance(inner, str):
                size += len(inner)
        return size
    if isinstance(value, list | bytes):
        return _FIELD_BYTES * len(value)
    return 0
