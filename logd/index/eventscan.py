"""Index an app's ``events.log`` and its archives again, for an index rebuild.

Each parseable line becomes an event row; the ``call:start``/``call:end`` events also
say when calls began and ended, which ``readback`` needs for the call rows. Reads only,
never fails on what it finds: bad lines are counted, unreadable files reported.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from logd.index.errorscan import EventKeys
from logd.index.eventline import ParsedEvent, parse_event_line
from logd.index.events import EventIndex, EventRow
from logd.index.levels import ERROR_LEVELNO, INFO_LEVELNO
from logd.index.tables import iso_to_ns
from logd.index.tree_files import Problem, list_files, read_lines

__all__ = ["EVENT_BATCH", "CallSeen", "EventScan", "index_events", "str_or_none"]

EVENT_BATCH = 5000
_ARCHIVE_RE = re.compile(r"events\.log\.([0-9]{4}-[0-9]{2}-[0-9]{2})(?:\.([0-9]+))?(?:\.gz)?")


@dataclass(slots=True)
class CallSeen:
    """What the event log and session files say about one call."""

    start_ns: int | None = None
    end_ns: int | None = None
    duration_ms: float | None = None
    run_id: str | None = None
    session_id: str | None = None
    bot_id: str | None = None


@dataclass(slots=True)
class EventScan:
    """What indexing one app's events found."""

    events: int = 0
    bad_lines: int = 0
    calls: dict[str, CallSeen] = field(default_factory=dict)


def str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _float_or_none(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _event_row(app: str, event: ParsedEvent, line: str) -> EventRow:
    fields = event.fields
    session_id = str_or_none(fields.get("session_id"))
    call_id = str_or_none(fields.get("call_id"))
    # Routing appended session_id/call_id to the kv fields; they are columns, not kv.
    taken = {k for k, v in (("session_id", session_id), ("call_id", call_id)) if v is not None}
    kv = {k: v for k, v in fields.items() if k not in taken}
    kv_json = json.dumps(kv, ensure_ascii=False, separators=(",", ":")) if kv else None
    return EventRow(
        ts=event.ts,
        event_type=event.event_type,
        source=event.source,
        message=event.text,
        app=app,
        run_id=str_or_none(fields.get("run_id")),
        session_id=session_id,
        call_id=call_id,
        kv_json=kv_json,
        raw_line=line,
        # events.log does not say the level: an exception's event was an ERROR record.
        levelno=ERROR_LEVELNO if event.event_type == "error:runtime" else INFO_LEVELNO,
    )


def _insert_events(index: EventIndex, rows: list[EventRow], scan: EventScan) -> None:
    inserted = index.insert_taken(rows)
    scan.events += inserted
    scan.bad_lines += len(rows) - inserted


def index_events(
    app: str, app_dir: Path, index: EventIndex, problem: Problem, keys: EventKeys
) -> EventScan:
    """Index every parseable event line of one app; add each event's (ts, type) to `keys`.

    Returns:
        The counts, and the call start/end times seen on the way.
    """
    archives = []
    for path in list_files(app_dir):
        match = _ARCHIVE_RE.fullmatch(path.name)
        if match is not None:
            archives.append((match[1], int(match[2] or 0), path))
    files = [path for _, _, path in sorted(archives)]  # day, then `.N`: oldest first
    live = app_dir / "events.log"
    if live.is_file() and not live.is_symlink():
        files.append(live)
    scan = EventScan()
    calls = scan.calls
    batch: list[EventRow] = []
    for path in files:
        for line in read_lines(path, problem):
            try:
                event = parse_event_line(line)
            except ValueError:
                scan.bad_lines += 1
                continue
            row = _event_row(app, event, line)
            batch.append(row)
            keys.add((event.ts, event.event_type))
            if event.event_type in ("call:start", "call:end") and row.call_id is not None:
                seen = calls.setdefault(row.call_id, CallSeen())
                seen.session_id = row.session_id or seen.session_id
                if event.event_type == "call:start":
                    seen.start_ns = iso_to_ns(event.ts)
                else:
                    seen.end_ns = iso_to_ns(event.ts)
                    seen.duration_ms = _float_or_none(event.fields.get("duration_ms"))
            if len(batch) >= EVENT_BATCH:
                _insert_events(index, batch, scan)
                batch = []
    if batch:
        _insert_events(index, batch, scan)
    return scan
