"""Recognise a resent message the daemon already wrote, so it is acked but not rewritten.

Pure: no I/O, no clock. logd's client names every message's chunk `<producer>:<seq>`,
with `seq` increasing per producer and unacknowledged messages resent in order, so the
highest sequence written per producer is enough to recognise a resend. Chunks of other
shapes (Fluent clients use random ids) are never treated as duplicates.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable

ChunkKey = tuple[str, int]
_CHUNK_RE = re.compile(r"([0-9a-f]{8,64}):([0-9]{1,19})")


def chunk_key(chunk: str | bytes | None) -> ChunkKey | None:
    """`(producer, seq)` for a logd client's chunk id, None for any other chunk."""
    if not isinstance(chunk, str):
        return None
    match = _CHUNK_RE.fullmatch(chunk)
    if match is None:
        return None
    return match[1], int(match[2])


def highest(keys: Iterable[ChunkKey]) -> dict[str, int]:
    """The highest sequence per producer among `keys`."""
    marks: dict[str, int] = {}
    for producer, seq in keys:
        if seq > marks.get(producer, -1):
            marks[producer] = seq
    return marks


class Dedup:
    """Highest written sequence per producer, for the most recent `max_producers`.

    The engine saves the marks in `index.sqlite3` in the transaction that records each
    batch, and loads them at start, so a resend after a daemon crash is recognised too.
    """

    def __init__(self, max_producers: int = 100_000) -> None:
        self.max_producers = max_producers
        self._high: OrderedDict[str, int] = OrderedDict()

    def already_written(self, key: ChunkKey | None) -> bool:
        if key is None:
            return False
        high = self._high.get(key[0])
        return high is not None and key[1] <= high

    def commit(self, keys: Iterable[ChunkKey]) -> None:
        """Remember chunks that are now durable."""
        for producer, seq in keys:
            high = self._high.get(producer)
            if high is None or seq > high:
                self._high[producer] = seq
            self._high.move_to_end(producer)
        while len(self._high) > self.max_producers:
            self._high.popitem(last=False)
