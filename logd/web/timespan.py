"""Records by their time: when a record was written, where in a file a time range ends
(found by bisection, as files are in time order), and the times a volume chart counts.

No filesystem access of its own: it reads through a `logview.Source`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from logd.web.logview import PAGE_BYTES, Kind, Source, head_fields, level_number
from logd.web.timefmt import clock_epoch, epoch_of

__all__ = ["offset_until", "record_epoch", "scan_times"]


def record_epoch(fields: dict[str, Any], kind: Kind, utc: bool) -> float | None:
    """When a record was written: session files keep ISO UTC, text lines clock text."""
    moment = fields.get("time")
    if not isinstance(moment, str):
        return None
    return epoch_of(moment) if kind == "session" else clock_epoch(moment, utc)


def scan_times(
    source: Source, kind: Kind, epoch: Callable[[dict[str, Any]], float | None], budget: int
) -> tuple[list[tuple[float, int]], bool]:
    """``(time, level number)`` of the records in the last ``budget`` bytes, and whether
    that was the whole file: what a volume chart counts."""
    start = max(0, source.size - budget)
    data = source.pread(source.size - start, start)
    if start > 0:
        data = data[data.find(b"\n") + 1 :]
    points = []
    for fields in _heads(kind, data):
        moment = epoch(fields)
        if moment is not None:
            points.append((moment, level_number(fields.get("level"))))
    return points, start == 0


def _heads(kind: Kind, data: bytes) -> Iterator[dict[str, Any]]:
    first = b"{" if kind == "session" else (b"[" if kind == "run" else None)
    for raw in data.splitlines():
        if first is not None and not raw.startswith(first):
            continue  # a continuation line: no need to try the pattern
        fields = head_fields(kind, raw.decode("utf-8", "replace"))
        if fields is not None:
            yield fields


def offset_until(
    source: Source, kind: Kind, epoch: Callable[[dict[str, Any]], float | None], until: float
) -> int:
    """A line start at or after which every record is later than ``until`` (the file's
    size when none is): where a narrowed page starts reading back, found by bisection."""
    low, high = 0, source.size
    while high - low > PAGE_BYTES:
        middle = (low + high) // 2
        data = source.pread(min(PAGE_BYTES, high - middle), middle)
        newline = data.find(b"\n")
        if newline < 0:
            break
        pos = middle + newline + 1
        moment = None
        for raw in data[newline + 1 :].splitlines():
            fields = head_fields(kind, raw.decode("utf-8", "replace"))
            if fields is not None:
                moment = epoch(fields)
                break
            pos += len(raw) + 1
        if moment is None or pos >= high:
            break
        if moment > until:
            high = pos
        else:
            low = pos
    return high
