"""The records logd_client sends: built from a LogRecord, or for a canonical event.

Turning a LogRecord into a record happens on the app's thread for every log call, so it is
kept cheap. A usual record is packed straight into its Forward entry (`EntryBuilder`);
any other becomes a record map (`build_sized()`, which also gives the size estimate and
"plain" flag the transport would otherwise work out from the finished map).
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from collections.abc import Mapping
from typing import Any, Final

from . import context
from .batch import RECORD_OVERHEAD_BYTES, value_bytes
from .wire.entries import (
    entry_time,
    keyed_str_heads,
    map_header,
    packed_fields,
    packed_str,
    str_header,
)
from .wire.messages import NS_PER_S

# Attributes every LogRecord has (plus what Formatter.format() and Python 3.12 add):
# anything else on a record came from `extra=` and is sent as an extra field.
_STANDARD_ATTRS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_STANDARD_COUNT: Final = len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
# Keys the handler sets itself; an `extra=` field may not replace them.
_RESERVED_KEYS: Final = frozenset(
    {"msg", "level", "logger", "app", "run_id", "pid", "thread", "thread_name", "exc"}
    | {"event_type", "kv"}
)
_PLAIN_TYPES: Final = (str, int, float, bool, type(None), list, dict)
# A handler record's estimated bytes beyond its message, logger name, call id, traceback
# and extras: keys, level, app, run id, session id, pid, thread and its name.
_RECORD_BYTES: Final = RECORD_OVERHEAD_BYTES + 64
# The context's variables' own getters, bound once: `context.session_id_or_none()` and
# `context.current_call()` wrap exactly these, and a Python call each costs every record.
_session_id = context._session_var.get
_current_call = context._call_var.get
_formatter = logging.Formatter()
# The memory a queued entry holds beyond its own length (the bytes object, the queue's
# tuple and its ints): measured, a client's RSS grows about 410 bytes per entry of 170.
# Counted against the memory bounds and toward `max_batch_bytes`, which so keeps messages
# near the size they had as maps (the daemon reads two messages ahead per connection).
_ENTRY_OVERHEAD: Final = 240
# Distinct (logger, level, thread, ...) heads, and those with each session or call, an
# EntryBuilder keeps packed; past either bound, that cache starts over. A context costs
# about 350 bytes: 16,384 covers a server's live sessions in a few MiB.
_HEADS_MAX: Final = 1024
_PREFIXES_MAX: Final = 16384
_MSG_KEY: Final = packed_str("msg")
_MSG_HEADS: Final = keyed_str_heads("msg")
# Every map an EntryBuilder packs has fewer than 16 pairs: standard fields only.
_FIXMAPS: Final = tuple(map_header(count) for count in range(16))
_SESSION_KEY: Final = packed_str("session_id")
_CALL_KEY: Final = packed_str("call_id")
_BOT_KEY: Final = packed_str("bot_id")


def plain_value(value: object) -> object:
    """Return `value` if msgpack maps it naturally, else `str(value)`.

    A broken `__str__` gives a placeholder rather than losing the whole record.
    """
    if isinstance(value, _PLAIN_TYPES):
        return value
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def build_record(record: logging.LogRecord, app: str, run_id: str | None) -> dict[str, Any]:
    """Turn a LogRecord into the record map logd expects (SPEC §3).

    Args:
        record: the record being emitted.
        app: the app name.
        run_id: the run id, or None to leave it out.

    Returns:
        A new dict with `msg`, `level`, `logger`, `app` and, when present, `run_id`,
        `session_id`, `call_id`, `bot_id`, `pid`, `thread`, `thread_name`, `exc` and the
        `extra=` fields (not a plain value: `str()` of it).
    """
    return build_sized(record, app, run_id)[0]


def build_sized(
    record: logging.LogRecord, app: str, run_id: str | None
) -> tuple[dict[str, Any], int, bool]:
    """`build_record()`, plus the record's estimated size and whether it is plain.

    Both come almost free here, where every value is at hand, rather than from a walk over
    the finished map: the size counts against the transport's memory bounds, and a plain
    record (no `extra=` fields: only str and int values) skips sanitising when encoded.
    """
    try:
        msg = record.getMessage()
    except Exception as exc:  # a bad format string must still leave a trace
        msg = f"{record.msg!s} (logd_client: formatting failed: {exc!r}; args={record.args!r})"
    name, process, thread = record.name, record.process, record.thread
    out: dict[str, Any]
    if run_id is not None and process is not None and thread is not None:
        # The usual fields in one literal, which Python builds at the right size at once.
        out = {
            "msg": msg,
            "level": record.levelname,
            "logger": name,
            "app": app,
            "run_id": run_id,
            "pid": process,
            "thread": thread,
            "thread_name": record.threadName,
        }
    else:
        out = {"msg": msg, "level": record.levelname, "logger": name, "app": app}
        if run_id is not None:
            out["run_id"] = run_id
        if process is not None:
            out["pid"] = process
        if thread is not None:
            out["thread"] = thread
            out["thread_name"] = record.threadName
    size = _RECORD_BYTES + len(msg) + len(name)
    session_id = _session_id()
    if session_id is not None:
        out["session_id"] = session_id
    call = _current_call()
    if call is not None:
        out["call_id"], out["bot_id"] = call
        size += len(call[0])
    if record.exc_info or record.exc_text or record.stack_info:
        out["exc"] = exc_text = _exception_text(record)
        size += len(exc_text)
    attrs = record.__dict__
    if len(attrs) > _STANDARD_COUNT:  # skip the set difference when there is no extra
        # In the app's order: text lines show extra fields as the app passed them.
        extras = [key for key in attrs if key not in _STANDARD_ATTRS and key not in _RESERVED_KEYS]
        for key in extras:
            _add_extra(out, key, attrs[key])
            size += len(key) + value_bytes(out.get(key))
        return out, size, not extras
    return out, size, True


class EntryBuilder:
    """Builds a handler's usual records straight into packed entries (`wire.entries`).

    Everything a record shares with the records before it in the same context (app, run,
    pid, logger, level, thread, session or call) is packed once per combination, as one
    prefix; a record adds its time and message. That saves the sender thread packing a map
    per record, and the app's thread keeps no map for the garbage collector to walk while
    it waits. Records with a traceback or `extra=` fields, or text that is not valid UTF-8,
    are left to the general path, which has the fallbacks.
    """

    def __init__(self) -> None:
        # (logger, level, ..., run, session, call) -> the packed map header and fields
        # before the message; b"" if they are not strictly packable.
        self._prefixes: dict[tuple[object, ...], bytes] = {}
        # (logger, level, ..., run) -> (pairs, packed pairs), shared by a head's sessions.
        self._heads: dict[tuple[object, ...], tuple[int, bytes]] = {}

    def build(
        self, record: logging.LogRecord, app: str, time_ns: int, run_id: str | None
    ) -> tuple[bytes, int] | None:
        """Return the record's entry and its size for the memory bounds, or None when the
        general path must take it."""
        r = record
        if len(r.__dict__) != _STANDARD_COUNT or r.exc_info or r.exc_text or r.stack_info:
            return None
        key = (
            r.name,
            r.levelname,
            r.process,
            r.thread,
            r.threadName,
            app,
            run_id,
            _session_id(),
            _current_call(),
        )
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = self._prefix(key)
        if not prefix:
            return None
        try:
            text = r.getMessage().encode()
            size = len(text)
            entry = b"".join(
                (
                    entry_time(*divmod(time_ns, NS_PER_S)),
                    prefix,
                    _MSG_HEADS[size] if size < 0x100 else _MSG_KEY + str_header(size),
                    text,
                )
            )
        except Exception:  # a bad format string, a lone surrogate, a time out of range
            return None
        return entry, len(entry) + _ENTRY_OVERHEAD

    def _prefix(self, key: tuple[object, ...]) -> bytes:
        head_key = key[:7]
        count, fixed = self._heads.get(head_key) or self._head(head_key)
        session_id, call = key[7], key[8]
        prefix = b""
        if count:
            try:
                # Raises UnicodeEncodeError for an id with a lone surrogate: the general path.
                parts = [fixed]
                if isinstance(session_id, str):
                    parts.append(_SESSION_KEY + packed_str(session_id))
                    count += 1
                if isinstance(call, tuple):
                    parts += (_CALL_KEY, packed_str(call[0]), _BOT_KEY, packed_str(call[1]))
                    count += 2
                prefix = _FIXMAPS[count] + b"".join(parts)
            except Exception:
                prefix = b""
        if len(self._prefixes) >= _PREFIXES_MAX:
            self._prefixes.clear()
        self._prefixes[key] = prefix
        return prefix

    def _head(self, key: tuple[object, ...]) -> tuple[int, bytes]:
        name, levelname, process, thread, thread_name, app, run_id = key
        fields: dict[str, object] = {"level": levelname, "logger": name, "app": app}
        if run_id is not None:
            fields["run_id"] = run_id
        if process is not None:
            fields["pid"] = process
        if thread is not None:
            fields["thread"] = thread
            fields["thread_name"] = thread_name
        try:
            head = len(fields) + 1, packed_fields(fields)  # + 1: the message
        except Exception:  # not strictly packable: the general path's fallbacks
            head = 0, b""
        if len(self._heads) >= _HEADS_MAX:
            self._heads.clear()
        self._heads[key] = head
        return head


def _add_extra(out: dict[str, Any], key: str, value: object) -> None:
    if key in ("session_id", "call_id", "bot_id"):
        # An explicit id beats the context; seed 001's filter sets "in-progress" on every
        # record, which means "no session", not a session of that name.
        if value is None or value == context.DEFAULT_SESSION:
            return
        out[key] = str(value)
        return
    out[key] = plain_value(value)


def _exception_text(record: logging.LogRecord) -> str:
    if record.exc_info and not record.exc_text:
        # Cached on the record as Formatter does, so other handlers reuse it.
        record.exc_text = _formatter.formatException(record.exc_info)
    parts = [record.exc_text] if record.exc_text else []
    if record.stack_info:
        parts.append(_formatter.formatStack(record.stack_info))
    return "\n".join(parts)


def build_event(
    app: str,
    event_type: str,
    source: str,
    message: str,
    kv: Mapping[str, Any],
    *,
    level: str = "INFO",
    exc: str | None = None,
    session_id: str | None = None,
) -> dict[str, Any]:
    """Build the record map of a canonical event (no validation: see `event()`).

    Args:
        app: the app name.
        event_type: `category:action`.
        source: the component, sent as `logger`.
        message: the event's text.
        kv: event fields; `session_id`, `call_id` and `bot_id` among them (str values)
            become the record's ids instead, as seed 002's `log_event(..., session_id=x)`
            means.
        level: the level name.
        exc: a formatted traceback.
        session_id: the session, overriding the context's.

    Returns:
        The record map, with ids from the context and the origin (pid, thread).
    """
    out: dict[str, Any] = {"msg": message, "level": level, "logger": source, "app": app}
    run_id = context.run_id()
    if run_id is not None:
        out["run_id"] = run_id
    if session_id is None:
        session_id = context.session_id_or_none()
    if session_id is not None:
        out["session_id"] = session_id
    call = context.current_call()
    if call is not None:
        out["call_id"], out["bot_id"] = call
    out["event_type"] = event_type
    fields: dict[str, Any] = {}
    for key, value in kv.items():
        if key in ("session_id", "call_id", "bot_id") and isinstance(value, str) and value:
            out[key] = value
        else:
            fields[key] = plain_value(value)
    if fields:
        out["kv"] = fields
    out["pid"] = os.getpid()
    thread = threading.current_thread()
    out["thread"] = threading.get_ident()
    out["thread_name"] = thread.name
    if exc is not None:
        out["exc"] = exc
    return out


def describe_exception(exc: BaseException, context_text: str = "") -> str:
    """Return `ExcType: text`, prefixed `context - ` when given (seed 002's log_error)."""
    message = f"{type(exc).__name__}: {exc}"
    return f"{context_text} - {message}" if context_text else message


def format_exception(exc: BaseException) -> str:
    """Return the formatted traceback of `exc`, chained causes included."""
    return "".join(traceback.format_exception(exc)).rstrip("\n")
