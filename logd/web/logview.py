"""Pages of a log file read backwards from a byte offset, and the records on them.

No filesystem access of its own: it reads through a `Source` (an open file, or the
decompressed bytes of a rotated ``.gz``), so a 10 GiB file costs one 64 KiB read per
page, and a filtered page at most `SCAN_BUDGET_BYTES` however large the file is.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from logd.web.timefmt import local_text

__all__ = [
    "LEVELS",
    "MAX_GZ_BYTES",
    "PAGE_BYTES",
    "BytesSource",
    "Kind",
    "Record",
    "Source",
    "Span",
    "gunzip",
    "head_fields",
    "level_number",
    "merge_timeline",
    "read_page",
]

Kind = Literal["run", "call", "session"]
PAGE_BYTES = 64 * 1024
SCAN_BUDGET_BYTES = 4 * 1024 * 1024
MAX_MATCHES = 500
MAX_GZ_BYTES = 64 * 1024 * 1024
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LEVEL_NUMBERS = {
    "DEBUG": 10,
    "INFO": 20,
    "WARN": 30,
    "WARNING": 30,
    "ERROR": 40,
    "CRITICAL": 50,
    "FATAL": 50,
}
# The text-line formats of SPEC §4 (run: `[session] - time - logger - LEVEL - msg`,
# call: `time - tid: N - LEVEL - msg`). A line that matches neither continues the
# record before it (a traceback, a multi-line message).
_RUN_HEAD_RE = re.compile(
    r"\[(?P<session>[^\]]*)\] - (?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - "
    r"(?P<logger>.*?) - (?P<level>[A-Z][A-Za-z0-9_ ]*) - (?P<msg>.*)",
    re.DOTALL,
)
_CALL_HEAD_RE = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - tid: (?P<thread>\d+) - "
    r"(?P<level>[A-Z][A-Za-z0-9_ ]*) - (?P<msg>.*)",
    re.DOTALL,
)


class Source(Protocol):
    """Random access to a file's bytes."""

    @property
    def size(self) -> int: ...

    def pread(self, n: int, offset: int) -> bytes: ...


@dataclass(frozen=True, slots=True)
class BytesSource:
    """A file already in memory (a decompressed rotated file)."""

    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def pread(self, n: int, offset: int) -> bytes:
        return self.data[offset : offset + n]


class _Reader(Protocol):
    def read(self, n: int) -> bytes: ...


def gunzip(reader: _Reader, max_bytes: int = MAX_GZ_BYTES) -> BytesSource:
    """Decompress a rotated ``.gz`` (all its members), refusing more than ``max_bytes``.

    Raises:
        ValueError: corrupt, or it would decompress past ``max_bytes`` (a bomb, or just
            a file too large to view here).
    """
    out = bytearray()
    inflater = zlib.decompressobj(wbits=31)
    while True:
        chunk = reader.read(PAGE_BYTES)
        if not chunk:
            break
        while chunk:
            try:
                out += inflater.decompress(chunk, max_bytes + 1 - len(out))
            except zlib.error as exc:
                raise ValueError(f"not a readable gzip file: {exc}") from None
            if len(out) > max_bytes:
                raise ValueError(f"decompresses to more than {max_bytes} bytes")
            chunk = inflater.unconsumed_tail
            if inflater.eof:  # another gzip member may follow (`cat a.gz b.gz`)
                chunk = inflater.unused_data + chunk
                inflater = zlib.decompressobj(wbits=31)
    return BytesSource(bytes(out))


def level_number(name: str | None) -> int:
    """``ERROR`` -> 40; stdlib's ``Level 45`` -> 45; unknown or None -> 0."""
    if not name:
        return 0
    number = _LEVEL_NUMBERS.get(name.upper())
    if number is not None:
        return number
    tail = name.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() and len(tail) < 4 else 0


@dataclass(slots=True)
class Record:
    """One record of a log file: its first line, continuation lines, and parsed fields."""

    offset: int
    text: str
    head: bool = True
    fields: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "text": self.text, **self.fields}


def head_fields(kind: Kind, line: str) -> dict[str, Any] | None:
    """The fields of a record's first line, or None for a continuation line."""
    if kind == "session":
        try:
            obj = json.loads(line)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        return {
            "time": obj.get("time"),
            "level": obj.get("level"),
            "logger": obj.get("logger"),
            "session_id": obj.get("session_id"),
            "call_id": obj.get("call_id"),
            "event_type": obj.get("event_type"),
            "msg": obj.get("msg"),
            "kv": obj.get("kv"),
            "exc": obj.get("exc"),
        }
    match = (_RUN_HEAD_RE if kind == "run" else _CALL_HEAD_RE).fullmatch(line)
    if match is None:
        return None
    fields = match.groupdict()
    fields.pop("thread", None)
    return fields


def _session_text(fields: dict[str, Any], line: str) -> str:
    """A session JSON line as a readable line (the raw JSON stays in the API's fields),
    its time in local time as the run log writes it."""
    shown = {**fields, "time": local_text(fields["time"], ms=True) if fields.get("time") else None}
    parts = [str(shown.get(k)) for k in ("time", "level", "logger") if shown.get(k)]
    if fields.get("event_type"):
        parts.append(str(fields["event_type"]))
    parts.append(str(fields.get("msg") or ""))
    if fields.get("kv"):
        parts.append(json.dumps(fields["kv"], ensure_ascii=False, default=str))
    text = " ".join(parts)
    if fields.get("exc"):
        text += "\n" + str(fields["exc"]).rstrip()
    return text or line


def _records(kind: Kind, data: bytes, offset: int) -> list[Record]:
    records: list[Record] = []
    pos = 0
    for raw in data.splitlines(keepends=True):
        line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
        fields = head_fields(kind, line)
        if fields is not None:
            text = _session_text(fields, line) if kind == "session" else line
            records.append(Record(offset + pos, text, True, fields))
        elif records:
            records[-1].text += "\n" + line
        else:
            records.append(Record(offset + pos, line, head=False))
        pos += len(raw)
    return records


@dataclass(frozen=True, slots=True)
class Span:
    """A time range filter (epoch seconds, both ends inclusive) and how to date a record."""

    since: float | None
    until: float | None
    epoch: Callable[[dict[str, Any]], float | None]

    def holds(self, record: Record) -> bool:
        moment = self.epoch(record.fields) if record.head else None
        if moment is None:
            return False
        return (self.since is None or moment >= self.since) and (
            self.until is None or moment <= self.until
        )

    def before_start(self, record: Record) -> bool:
        moment = self.epoch(record.fields) if record.head else None
        return moment is not None and self.since is not None and moment < self.since


def _keep(record: Record, min_level: int, needle: str | None, span: Span | None = None) -> bool:
    if min_level and level_number(record.fields.get("level")) < min_level:
        return False
    if span is not None and not span.holds(record):
        return False
    return needle is None or needle in record.text.casefold()


def read_page(
    source: Source,
    kind: Kind,
    *,
    before: int | None = None,
    min_level: int = 0,
    text: str | None = None,
    page_bytes: int = PAGE_BYTES,
    scan_bytes: int = SCAN_BUDGET_BYTES,
    max_matches: int = MAX_MATCHES,
    span: Span | None = None,
) -> dict[str, Any]:
    """The records ending at byte ``before`` (default: the end), newest page first.

    Unfiltered, that is one page of about ``page_bytes``. With a level or text filter,
    pages are read backwards until ``max_matches`` records match or ``scan_bytes`` were
    read, so a rare ERROR is found without loading the file. Pages start at a record's
    first line: the traceback of a record cut by the page edge goes to the older page.

    Returns:
        ``records`` (file order), ``older`` (the ``before`` of the previous page, or None
        at the start of the file), ``size``, ``before`` and ``scanned_bytes``.
    """
    size = source.size
    end = size if before is None else min(max(before, 0), size)
    first_end = end
    needle = text.casefold() if text else None
    filtering = bool(min_level) or needle is not None or span is not None
    reached_start = False
    limit = scan_bytes if filtering else page_bytes
    windows: list[list[Record]] = []
    scanned = matched = 0
    while end > 0 and scanned < limit and matched < max_matches and not reached_start:
        start = max(0, end - page_bytes)
        data = source.pread(end - start, start)
        scanned += len(data)
        if start > 0:
            newline = data.find(b"\n")
            if newline in (-1, len(data) - 1):
                # One line longer than a page: show its end, marked as cut, and move on
                # (waiting for its start could read the whole file).
                text = data.rstrip(b"\n").decode("utf-8", "replace")
                cut = Record(start, "… " + text, head=False)
                windows.append([cut] if _keep(cut, min_level, needle, span) else [])
                end = start
                continue
            data, start = data[newline + 1 :], start + newline + 1
        records = _records(kind, data, start)
        if start > 0 and len(records) > 1 and not records[0].head:
            # Continuation lines of a record that began before this window.
            records = records[1:]
            end = records[0].offset
        else:
            end = start
        kept = [r for r in records if _keep(r, min_level, needle, span)]
        # Files are in time order: once a window starts before the range, stop there.
        reached_start = span is not None and any(span.before_start(r) for r in records[:1])
        matched += len(kept)
        windows.append(kept)
    out = [r.as_dict() for window in reversed(windows) for r in window]
    return {
        "size": size,
        "before": first_end,
        "older": end if end > 0 and not reached_start else None,
        "scanned_bytes": scanned,
        "filtered": filtering,
        "records": out,
    }


def merge_timeline(
    records: list[dict[str, Any]], events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A session's records and its indexed events in time order, each event once.

    An event that is also a record of the session file (same time and type) is shown as
    that record; events that only the index has (e.g. ``error:runtime`` made from a
    traceback) are added in their place.
    """
    seen = {(r.get("time"), r.get("event_type")) for r in records if r.get("event_type")}
    merged: list[tuple[str, int, dict[str, Any]]] = []
    for n, record in enumerate(records):
        merged.append((str(record.get("time") or ""), n, {"kind": "record", **record}))
    for n, event in enumerate(events, start=len(records)):
        if (event.get("ts"), event.get("event_type")) in seen:
            continue
        item = {
            "kind": "event",
            "time": event.get("ts"),
            "level": "ERROR" if str(event.get("event_type")).startswith("error:") else "INFO",
            "logger": event.get("source"),
            "event_type": event.get("event_type"),
            "msg": event.get("message"),
            "kv": event.get("kv") or None,
            "text": event.get("raw_line"),
        }
        merged.append((str(event.get("ts") or ""), n, item))
    merged.sort(key=lambda entry: (entry[0], entry[1]))
    return [item for _, _, item in merged]
