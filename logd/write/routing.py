"""Decide where a record goes and what each destination's line looks like.

Pure: no I/O and no clock. The routing rules of SPEC §4 are a table (`RULES`) of data,
so changing where records land means editing rows, not branches.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from itertools import product
from typing import Any, NamedTuple

from logd.config import Layout
from logd.index.eventline import (
    EventRow,
    format_event_line,
    format_message,
    iso_utc_ms,
)
from logd.index.levels import ERROR_LEVELNO
from logd.index.names import safe_name
from logd.write.records import Record, exception_summary

NO_SESSION = "in-progress"
UNKNOWN_BOT = "unknown"


class Kind(StrEnum):
    """File kinds: each has its own rotation policy."""

    RUN = "run"
    SESSION = "session"
    CALL = "call"
    EVENTS = "events"
    REJECTED = "rejected"


class Write(NamedTuple):
    """One line for one file; `path` is relative to the root, `line` ends with a newline.

    A named tuple rather than a frozen dataclass: a record makes two or three of these,
    and tuples are several times cheaper to build.
    """

    kind: Kind
    path: str
    line: str


class Routed(NamedTuple):
    """Every write one record causes, and its index row if it is an event."""

    writes: list[Write]
    event: EventRow | None


@lru_cache(maxsize=256)
def _second_text(seconds: int, utc: bool) -> str:
    struct = time.gmtime(seconds) if utc else time.localtime(seconds)
    return time.strftime("%Y-%m-%d %H:%M:%S", struct)


def clock_text(time_ns: int, utc: bool) -> str:
    """`2025-11-05 14:30:52,123`, the stdlib logging asctime format."""
    seconds, rest = divmod(time_ns, 1_000_000_000)
    return f"{_second_text(seconds, utc)},{rest // 1_000_000:03d}"


def day_text(time_ns: int, utc: bool) -> str:
    """The `YYYY-MM-DD` of a moment, for call date folders and `_rejected/` files."""
    return _second_text(time_ns // 1_000_000_000, utc)[:10]


# --- paths -------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def run_dir(app: str, run_id: str) -> str:
    return f"{safe_name(app)}/runs/{safe_name(run_id)}"


def _main_path(r: Record, run_id: str, call_day: str) -> str:
    return f"{run_dir(r.app, run_id)}/main.log"


def _component_path(r: Record, run_id: str, call_day: str) -> str:
    return f"{run_dir(r.app, run_id)}/{safe_name(r.logger)}.log"


def _session_path(r: Record, run_id: str, call_day: str) -> str:
    assert r.session_id is not None
    return f"{safe_name(r.app)}/sessions/session_{safe_name(r.session_id)}.jsonl"


def _call_path(r: Record, run_id: str, call_day: str) -> str:
    assert r.call_id is not None
    bot = safe_name(r.bot_id or UNKNOWN_BOT)
    return f"{safe_name(r.app)}/calls/{call_day}/bot_{bot}/call_{safe_name(r.call_id)}.log"


def _events_path(r: Record, run_id: str, call_day: str) -> str:
    return f"{safe_name(r.app)}/events.log"


# --- line formats ------------------------------------------------------------------


@dataclass(slots=True)
class _Texts:
    """The formatted forms of one record, each built at most once."""

    record: Record
    run_id: str
    layout: Layout
    event_line: str | None
    _body: str | None = None
    _run: str | None = None

    def body(self) -> str:
        """The message as text lines show it: events read `{event_type} {message}`; extra
        fields follow as ` key=value`, quoted as in the event line."""
        if self._body is None:
            r = self.record
            if r.event_type is not None and self.event_line is not None:
                extras = _extras_beyond(r)
                if extras:
                    event = event_of(r)
                    assert event is not None
                    message = format_message(event[2], {**event[3], **extras})
                else:
                    message = self.event_line.split("|", 3)[3]
                body = f"{r.event_type} {message}" if message else r.event_type
            elif r.extra:
                body = format_message(r.msg, r.extra)
            else:
                body = r.msg
            if r.exc:
                body = f"{body}\n{r.exc.rstrip()}"
            self._body = body
        return self._body

    def run_line(self) -> str:
        if self._run is None:
            r = self.record
            when = clock_text(r.time_ns, self.layout.utc)
            session = r.session_id or NO_SESSION
            self._run = f"[{session}] - {when} - {r.logger} - {r.level} - {self.body()}\n"
        return self._run

    def call_line(self) -> str:
        r = self.record
        when = clock_text(r.time_ns, self.layout.utc)
        thread = r.thread if r.thread is not None else 0
        return f"{when} - tid: {thread} - {r.level} - {self.body()}\n"

    def session_line(self) -> str:
        r = self.record
        obj: dict[str, Any] = {
            "time": iso_utc_ms(r.time_ns),
            "level": r.level,
            "logger": r.logger,
            "msg": r.msg,
            "run_id": self.run_id,
            "session_id": r.session_id,
        }
        for key in ("call_id", "bot_id", "event_type"):
            value = getattr(r, key)
            if value is not None:
                obj[key] = value
        if r.kv:
            obj["kv"] = r.kv
        if r.exc:
            obj["exc"] = r.exc
        for key, value in r.extra.items():
            obj.setdefault(key, value)
        return json.dumps(obj, ensure_ascii=False, default=json_default) + "\n"

    def events_line(self) -> str:
        assert self.event_line is not None
        return self.event_line + "\n"


def _extras_beyond(r: Record) -> dict[str, Any]:
    """An event's extra fields that its line does not already carry."""
    if not r.extra:
        return {}
    taken = {*r.kv, "session_id", "call_id"}
    return {k: v for k, v in r.extra.items() if k not in taken}


def json_default(value: object) -> object:
    """What `json.dumps` writes for a value it cannot: bytes as UTF-8 text, else str()."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# --- the rule table ----------------------------------------------------------------


class Shape(NamedTuple):
    """The facts about a record that the rules decide on.

    Rules look at a record's shape, not at the record: there are only 16 shapes, so the
    rules that apply to each are worked out once (`_PLANS`), not for every record.
    """

    call: bool  # has a call_id: call-scoped
    session: bool  # has a session_id
    event: bool  # is a canonical event (its own, or an error:runtime)
    component: bool  # component files are on and its logger's file is not main.log


def _is_run_scoped(s: Shape) -> bool:
    return not s.call


def _wants_component(s: Shape) -> bool:
    return not s.call and s.component


def _has_session(s: Shape) -> bool:
    return s.session


def _has_call(s: Shape) -> bool:
    return s.call


def _is_event(s: Shape) -> bool:
    return s.event


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the routing table: when it applies, where it writes, in which format."""

    name: str
    kind: Kind
    applies: Callable[[Shape], bool]
    path: Callable[[Record, str, str], str]
    line: Callable[[_Texts], str]


RULES: tuple[Rule, ...] = (
    Rule("run-main", Kind.RUN, _is_run_scoped, _main_path, _Texts.run_line),
    Rule("run-component", Kind.RUN, _wants_component, _component_path, _Texts.run_line),
    Rule("session", Kind.SESSION, _has_session, _session_path, _Texts.session_line),
    Rule("call", Kind.CALL, _has_call, _call_path, _Texts.call_line),
    Rule("events", Kind.EVENTS, _is_event, _events_path, _Texts.events_line),
)


def plan(shape: Shape) -> tuple[Rule, ...]:
    """The rules that apply to records of this shape, in table order."""
    return tuple(rule for rule in RULES if rule.applies(shape))


_PLANS: dict[Shape, tuple[Rule, ...]] = {
    shape: plan(shape) for shape in (Shape(*bits) for bits in product((False, True), repeat=4))
}


@lru_cache(maxsize=4096)
def _has_own_file(logger: str) -> bool:
    return safe_name(logger) != "main"


def event_of(record: Record) -> tuple[str, str, str, dict[str, Any]] | None:
    """The canonical event a record carries, if any: (event_type, source, text, fields).

    A record at ERROR or above with a traceback and no event of its own becomes an
    `error:runtime` event, so every exception reaches the timeline.
    """
    if record.event_type is not None:
        fields: dict[str, Any] = dict(record.kv)
        text = record.msg
    elif record.levelno >= ERROR_LEVELNO and record.exc:
        fields = {}
        text = exception_summary(record.exc)
    else:
        return None
    if record.session_id is not None:
        fields["session_id"] = record.session_id
    if record.call_id is not None:
        fields["call_id"] = record.call_id
    return record.event_type or "error:runtime", record.logger, text, fields


def route(record: Record, run_id: str, layout: Layout, *, call_day: str | None = None) -> Routed:
    """Every write one record causes, and its index row if it is an event.

    Args:
        record: the normalised record.
        run_id: the run it belongs to (its own, or the one the daemon opened for its peer).
        layout: line and file options.
        call_day: the date folder of the record's call, fixed at the call's start; the
            record's own date when not given.
    """
    event = event_of(record)
    event_line = event_row = None
    if event is not None:
        event_type, source, text, fields = event
        event_line = format_event_line(record.time_ns, event_type, source, text, fields)
        event_row = EventRow(
            ts=iso_utc_ms(record.time_ns),
            event_type=event_type,
            source=source,
            message=text,
            app=record.app,
            run_id=run_id,
            session_id=record.session_id,
            call_id=record.call_id,
            kv_json=_kv_json(record.kv) if record.event_type is not None else None,
            raw_line=event_line,
            levelno=record.levelno,
        )
    texts = _Texts(record, run_id, layout, event_line)
    if event_row is None and record.levelno >= ERROR_LEVELNO:
        event_row = record_row(record, run_id, texts.run_line())
    day = ""
    if record.call_id is not None:
        day = call_day or day_text(record.time_ns, layout.utc)
    shape = Shape(
        call=record.call_id is not None,
        session=record.session_id is not None,
        event=event_line is not None,
        component=layout.component_files and _has_own_file(record.logger),
    )
    writes = [
        Write(rule.kind, rule.path(record, run_id, day), rule.line(texts)) for rule in _PLANS[shape]
    ]
    return Routed(writes, event_row)


def record_row(record: Record, run_id: str, run_line: str) -> EventRow:
    """The index row of an ERROR-or-above record that is not an event (#16 item 11):
    no event type, its extra fields as `kv`, its run-log line as the raw line."""
    return EventRow(
        ts=iso_utc_ms(record.time_ns),
        event_type="",
        source=record.logger,
        message=record.msg,
        app=record.app,
        run_id=run_id,
        session_id=record.session_id,
        call_id=record.call_id,
        kv_json=_kv_json(record.extra),
        raw_line=run_line.rstrip("\n"),
        levelno=record.levelno,
    )


def tail_item(record: Record, run_id: str, layout: Layout) -> dict[str, Any]:
    """A record as `logd-ctl tail` shows it: the session file's fields (`kv` and `extras`
    always maps) and its run-log line."""
    event = event_of(record)
    event_line = format_event_line(record.time_ns, *event) if event is not None else None
    texts = _Texts(record, run_id, layout, event_line)
    return {
        "time": iso_utc_ms(record.time_ns),
        "level": record.level,
        "logger": record.logger,
        "msg": record.msg,
        "app": record.app,
        "run_id": run_id,
        "session_id": record.session_id,
        "call_id": record.call_id,
        "bot_id": record.bot_id,
        "event_type": record.event_type,
        "kv": record.kv,
        "exc": record.exc,
        "extras": record.extra,
        "line": texts.run_line().rstrip("\n"),
    }


def _kv_json(kv: Mapping[str, Any]) -> str | None:
    if not kv:
        return None
    return json.dumps(kv, ensure_ascii=False, separators=(",", ":"), default=json_default)
