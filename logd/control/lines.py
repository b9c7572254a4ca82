"""Log lines read back as tail items, and items drawn as run-log lines.

Pure: text in, dicts out; no I/O, no clock. Run logs and call files hold text lines
(SPEC §4), session files JSON lines, the index event rows; each becomes an item with
the session-file fields (`tailing.ITEM_FIELDS`) plus `line`, the record as `logd-ctl`
prints it: its run-log line, traceback lines after it.

Text lines do not say which records are events: a message may start with a word like
`retry:3`. The backlog reader passes the index rows of the same span (`EventRows`),
and a line is an event only when a row with its time, logger and type exists; the
row also gives its fields with their types.

Extra fields ride at the end of a text line as ` key=value` (the event line's quoting),
and are read back from there. A record without extras whose message itself ends in
`key=value` words reads back with those as extras: only the session file (JSON) keeps
the two apart for certain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from logd_client.control.items import ITEM_FIELDS

from logd.index.eventline import format_event_line, format_message, split_message
from logd.index.tables import iso_to_ns
from logd.index.textlines import CALL_HEAD_RE, RUN_HEAD_RE, TRACEBACK, iso_from_clock
from logd.write.routing import NO_SESSION, clock_text

__all__ = [
    "EventRows",
    "call_item",
    "event_item",
    "is_call_head",
    "is_run_head",
    "render_line",
    "run_item",
    "session_item",
]

# The keys a session line writes itself (the item's, less what the file's place says and
# the extras); any other key is an extra field.
_SESSION_KEYS = frozenset(ITEM_FIELDS) - {"app", "extras"}

# Index rows by (ts, run_id, call_id): the events among the text lines being read.
EventRows = Mapping[tuple[str, str | None, str | None], Sequence[Mapping[str, Any]]]


def is_run_head(line: str) -> bool:
    """Whether a run-log line starts a record (else it continues the one before)."""
    return RUN_HEAD_RE.match(line) is not None


def is_call_head(line: str) -> bool:
    return CALL_HEAD_RE.match(line) is not None


def _split_exc(first: str, rest: Sequence[str]) -> tuple[str, str | None]:
    """Message and traceback of a plain record's body lines."""
    for index, line in enumerate(rest):
        if line.startswith(TRACEBACK):
            return "\n".join([first, *rest[:index]]), "\n".join(rest[index:])
    return "\n".join([first, *rest]), None


def _body_fields(
    first: str,
    rest: Sequence[str],
    *,
    time: str,
    logger: str | None,
    run_id: str | None,
    call_id: str | None,
    events: EventRows,
) -> dict[str, Any]:
    """msg, event_type, kv and exc of a text record's body (its lines after the head)."""
    word = first.split(" ", 1)[0]
    for row in events.get((time, run_id, call_id), ()):
        if row.get("event_type") != word or (logger is not None and row.get("source") != logger):
            continue
        kv = dict(row["kv"]) if isinstance(row.get("kv"), Mapping) else {}
        _, fields = _trailing_fields(first[len(word) + 1 :])
        taken = {*kv, "session_id", "call_id"}
        return {
            "logger": logger if logger is not None else row.get("source"),
            "msg": str(row.get("message") or ""),
            "event_type": word,
            "kv": kv,
            "exc": "\n".join(rest) or None,
            "extras": {k: v for k, v in fields.items() if k not in taken},
        }
    msg, exc = _split_exc(first, rest)
    extras: dict[str, Any] = {}
    if "\n" not in msg:
        msg, extras = _trailing_fields(msg)
    return {
        "logger": logger,
        "msg": msg,
        "event_type": None,
        "kv": {},
        "exc": exc,
        "extras": extras,
    }


def _trailing_fields(text: str) -> tuple[str, dict[str, Any]]:
    """Message and extra fields of a text line's body; all message when not in that form."""
    if "=" not in text:
        return text, {}
    try:
        return split_message(text)
    except ValueError:
        return text, {}


def _item(base: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "time": None,
        "level": None,
        "logger": None,
        "msg": "",
        "app": None,
        "run_id": None,
        "session_id": None,
        "call_id": None,
        "bot_id": None,
        "event_type": None,
        "kv": {},
        "exc": None,
        "extras": {},
    }
    item.update(base)
    item.update(fields)
    return item


def run_item(
    lines: Sequence[str], base: Mapping[str, Any], *, utc: bool, events: EventRows
) -> dict[str, Any] | None:
    """A run-log record (its head line and continuation lines) as an item; `base` holds
    what the file says (app, run_id). None when the first line is not a head."""
    match = RUN_HEAD_RE.fullmatch(lines[0])
    if match is None:
        return None
    time = iso_from_clock(match["time"], utc)
    session = match["session"]
    fields = _body_fields(
        match["body"],
        lines[1:],
        time=time,
        logger=match["logger"],
        run_id=base.get("run_id"),
        call_id=None,
        events=events,
    )
    return _item(
        base,
        time=time,
        level=match["level"],
        session_id=None if session == NO_SESSION else session,
        line="\n".join(lines),
        **fields,
    )


def call_item(
    lines: Sequence[str], base: Mapping[str, Any], *, utc: bool, events: EventRows
) -> dict[str, Any] | None:
    """A call-file record as an item. The call line has no logger (it stays None) and no
    session (the call's own is in `base`); its `line` is drawn as a run-log line."""
    match = CALL_HEAD_RE.fullmatch(lines[0])
    if match is None:
        return None
    time = iso_from_clock(match["time"], utc)
    fields = _body_fields(
        match["body"],
        lines[1:],
        time=time,
        logger=None,
        run_id=base.get("run_id"),
        call_id=base.get("call_id"),
        events=events,
    )
    item = _item(base, time=time, level=match["level"], **fields)
    item["line"] = render_line(item, utc)
    return item


def session_item(line: str, base: Mapping[str, Any], *, utc: bool) -> dict[str, Any] | None:
    """A session-file line as an item (None if it is not a JSON object)."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("time"), str):
        return None
    fields = {key: obj.get(key) for key in _SESSION_KEYS if key in obj}
    item = _item(base, **fields)
    item["extras"] = {k: v for k, v in obj.items() if k not in _SESSION_KEYS}
    if not isinstance(item["kv"], dict):
        item["kv"] = {}
    item["line"] = render_line(item, utc)
    return item


def event_item(row: Mapping[str, Any], *, utc: bool) -> dict[str, Any]:
    """An index row as an item. The index keeps no level: `error:runtime` (raised by an
    ERROR record with a traceback) reads ERROR, any other event INFO."""
    kv = row.get("kv")
    event_type = row.get("event_type")
    item = _item(
        {},
        time=row.get("ts"),
        level="ERROR" if event_type == "error:runtime" else "INFO",
        logger=row.get("source"),
        msg=row.get("message") or "",
        app=row.get("app"),
        run_id=row.get("run_id"),
        session_id=row.get("session_id"),
        call_id=row.get("call_id"),
        event_type=event_type,
        kv=dict(kv) if isinstance(kv, Mapping) else {},
    )
    item["line"] = render_line(item, utc)
    return item


def _clock(time: object, utc: bool) -> str:
    if not isinstance(time, str):
        return "?"
    try:
        return clock_text(iso_to_ns(time.replace("Z", "+00:00")), utc)
    except (ValueError, OverflowError, OSError):
        return time


def render_line(item: Mapping[str, Any], utc: bool) -> str:
    """The run-log line of an item (SPEC §4), its traceback lines after it: what the
    record's line in `main.log` reads. Times are local unless `utc`."""
    session = item.get("session_id") or NO_SESSION
    logger = item.get("logger")
    level = item.get("level") or "INFO"
    msg = str(item.get("msg") or "")
    event_type = item.get("event_type")
    extras = item.get("extras") or {}
    if isinstance(event_type, str):
        fields: dict[str, Any] = dict(item.get("kv") or {})
        for name in ("session_id", "call_id"):
            if item.get(name) is not None:
                fields[name] = item[name]
        for key, value in extras.items():
            fields.setdefault(key, value)
        line = format_event_line(0, event_type, str(logger or ""), msg, fields)
        message = line.split("|", 3)[3]
        body = f"{event_type} {message}" if message else event_type
    elif extras:
        body = format_message(msg, extras)
    else:
        body = msg
    exc = item.get("exc")
    if exc:
        body = f"{body}\n{str(exc).rstrip()}"
    head = (
        f"[{session}] - {_clock(item.get('time'), utc)} - {logger if logger is not None else '?'}"
    )
    return f"{head} - {level} - {body}"
