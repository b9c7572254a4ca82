"""The canonical event line (SPEC §7): ``{ts}|{event_type}|{source}|{message}``.

Formats a line and parses one back (:func:`format_event_line`, :func:`parse_event_line`,
:func:`iso_utc_ms`), and names the row the index keeps for it (:class:`EventRow`).
Pure: no I/O, no clock; the SQLite index is ``events.py``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "EVENT_TYPE_RE",
    "EventRow",
    "ParsedEvent",
    "format_event_line",
    "format_fields",
    "format_message",
    "iso_utc_ms",
    "parse_event_line",
    "split_message",
]


@dataclass(frozen=True, slots=True)
class EventRow:
    """One row of the ``events`` table, built by routing next to its line."""

    ts: str
    event_type: str
    source: str
    message: str
    app: str
    run_id: str | None
    session_id: str | None
    call_id: str | None
    kv_json: str | None
    raw_line: str
    # The record's level; an ERROR-or-above record that is not an event is indexed too,
    # with event_type "" (EventIndex.query(min_levelno=...)).
    levelno: int | None = None


EVENT_TYPE_RE: re.Pattern[str] = re.compile(r"[a-z0-9_]+:[a-z0-9_.:-]+")
"""What an ``event_type`` must fullmatch: ``category:action``."""

_TS_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# JSON numbers use ASCII digits only (`\d` would also match e.g. Arabic-Indic digits).
_NUMBER_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
# Python's json writes and reads these for non-finite floats.
_LITERALS = frozenset({"true", "false", "null", "NaN", "Infinity", "-Infinity"})

# Characters that must never appear raw in a line: everything `str.splitlines()` or a
# terminal would treat as a break or control, plus lone surrogates (not encodable as
# UTF-8, so the line could not be written). Tab stays readable.
_UNSAFE = "\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029\ud800-\udfff"
_BARE_ESCAPE_RE = re.compile(f"[\\\\{_UNSAFE}]")
_BARE_UNESCAPE_RE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|(.)|$)", re.DOTALL)
_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}
_SHORT_UNESCAPES = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}
# json.dumps(ensure_ascii=False) already escapes C0 controls; these it leaves raw.
_JSON_EXTRA_RE = re.compile("[\x7f\x85\u2028\u2029\ud800-\udfff]")
# A bare word: no whitespace (the field separator), no "=", quote or backslash.
_PLAIN_RE = re.compile(f'[^\\s="\\\\{_UNSAFE}]+')
# Source is a single column between "|"; anything that could split it becomes "_".
_SOURCE_UNSAFE_RE = re.compile(f"[|{_UNSAFE}]")

_DECODER = json.JSONDecoder()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """One canonical line taken apart; ``fields`` keeps the line's order."""

    ts: str
    event_type: str
    source: str
    text: str
    fields: dict[str, Any]


def iso_utc_ms(ts_ns: int) -> str:
    """``2024-12-19T14:32:01.123Z`` for a time in ns since the epoch (truncated to ms).

    Raises:
        ValueError: the time is outside years 1..9999.
    """
    second, ms = divmod(ts_ns // 1_000_000, 1000)
    try:
        return f"{_iso_second(second)}.{ms:03d}Z"
    except OverflowError as exc:
        raise ValueError(f"timestamp out of range: {ts_ns} ns") from exc


@functools.lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    """The text of a whole UTC second: every row of a batch names a few seconds, often
    again (a session's first record), and building it costs more than looking it up."""
    dt = _EPOCH + timedelta(seconds=second)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    )


def _json_escape_extra(text: str) -> str:
    return _JSON_EXTRA_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _quote(text: str) -> str:
    return _json_escape_extra(json.dumps(text, ensure_ascii=False))


def _escape_bare(text: str) -> str:
    return _BARE_ESCAPE_RE.sub(
        lambda m: _SHORT_ESCAPES.get(m.group()) or f"\\u{ord(m.group()):04x}", text
    )


def _unescape_bare(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return chr(int(m.group(1), 16))
        char = m.group(2)
        if char is None or char not in _SHORT_UNESCAPES:
            raise ValueError(f"invalid escape in event text: {m.group()!r}")
        return _SHORT_UNESCAPES[char]

    return _BARE_UNESCAPE_RE.sub(one, text) if "\\" in text else text


def _is_literal(token: str) -> bool:
    """True when a bare token reads back as a JSON number/true/false/null, not a str."""
    return token in _LITERALS or _NUMBER_RE.fullmatch(token) is not None


def _is_plain_value(value: str) -> bool:
    return (
        _PLAIN_RE.fullmatch(value) is not None and value[0] not in "[{" and not _is_literal(value)
    )


def _format_key(key: str) -> str:
    return key if _KEY_RE.fullmatch(key) else _quote(key)


def _format_value(value: Any) -> str:
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return value if _is_plain_value(value) else _quote(value)
    if isinstance(value, list | tuple | dict):
        dumped = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        return _json_escape_extra(dumped)
    # Anything else (datetime, Path, bytes...) is written as its str(): documented loss.
    return _format_value(str(value))


def format_fields(fields: Mapping[str, Any]) -> str:
    """`` key=value`` pairs joined by spaces, quoted as in the event line's message."""
    return " ".join(f"{_format_key(k)}={_format_value(v)}" for k, v in fields.items())


def format_message(text: str, fields: Mapping[str, Any]) -> str:
    """The message column of an event line: ``text`` then `` key=value`` per field.

    Text lines (run and call logs) use it too for records with extra fields, so one
    quoting rule reads back everywhere (:func:`split_message`).
    """
    keys_plain = all(_KEY_RE.fullmatch(k) for k in fields)
    parts: list[str] = []
    if "=" in text or text.startswith('"') or not keys_plain:
        parts.append(_quote(text))
    elif text:
        parts.append(_escape_bare(text))
    if fields:
        parts.append(format_fields(fields))
    return " ".join(parts)


def format_event_line(
    ts_ns: int, event_type: str, source: str, text: str, fields: Mapping[str, Any]
) -> str:
    """One canonical event line, without the trailing newline.

    ``{ts}|{event_type}|{source}|{message}``; message is ``text`` then `` key=value``
    per field, in ``fields`` order. The text is written bare when that is unambiguous and
    double-quoted (JSON string escapes) otherwise: when it contains ``=``, starts with a
    quote, or a field key itself needs quoting (then even an empty text is written
    ``""``). Every line parses back with :func:`parse_event_line` to the same values.

    Args:
        ts_ns: event time, ns since the epoch (UTC).
        event_type: ``category:action``; the caller validates it (``EVENT_TYPE_RE``).
        source: component name; ``|`` and line breaks become ``_`` as a last defence.
        text: free text, any unicode.
        fields: str keys; values str/int/float/bool/None, lists and dicts as compact
            JSON; other values are written as their ``str()``.

    Raises:
        ValueError: ``ts_ns`` outside years 1..9999.
    """
    # event_type goes through the same defence as source: the line must stay one line
    # with exactly four columns whatever the caller passed.
    safe_type = _SOURCE_UNSAFE_RE.sub("_", event_type)
    safe_source = _SOURCE_UNSAFE_RE.sub("_", source)
    return f"{iso_utc_ms(ts_ns)}|{safe_type}|{safe_source}|{format_message(text, fields)}"


def _decode_json(message: str, pos: int, what: str) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(message, pos)
    except json.JSONDecodeError as exc:
        raise ValueError(f"bad {what} at column {pos}: {exc.msg}") from exc


def _parse_fields(message: str, pos: int) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    end = len(message)
    while pos < end:
        key: Any
        if message[pos] == '"':
            key, pos = _decode_json(message, pos, "quoted key")
            if not isinstance(key, str):  # pragma: no cover - a JSON value at '"' is a str
                raise ValueError("quoted key is not a string")
        else:
            eq = message.find("=", pos)
            if eq < 0:
                raise ValueError(f"expected key=value at column {pos}")
            key = message[pos:eq]
            if not _KEY_RE.fullmatch(key):
                raise ValueError(f"bad key {key!r}")
            pos = eq
        if pos >= end or message[pos] != "=":
            raise ValueError(f"expected '=' after key {key!r}")
        pos += 1
        if pos >= end or message[pos] == " ":
            raise ValueError(f"missing value for key {key!r}")
        value: Any
        if message[pos] in '"[{':
            value, pos = _decode_json(message, pos, f"value for {key!r}")
        else:
            stop = message.find(" ", pos)
            stop = end if stop < 0 else stop
            token = message[pos:stop]
            if _is_literal(token):
                value = json.loads(token)
            elif _is_plain_value(token):
                value = token
            else:
                raise ValueError(f"bad bare value for {key!r}: {token!r}")
            pos = stop
        if key in fields:
            raise ValueError(f"duplicate key {key!r}")
        fields[key] = value
        if pos < end:
            if message[pos] != " " or pos + 1 >= end:
                raise ValueError(f"expected ' key=value' at column {pos}")
            pos += 1
    return fields


def split_message(message: str) -> tuple[str, dict[str, Any]]:
    """Text and fields of a message written by :func:`format_message`.

    Raises:
        ValueError: the message is not in that form.
    """
    if message.startswith('"'):
        text, pos = _decode_json(message, 0, "quoted text")
        if pos < len(message):
            if message[pos] != " ":
                raise ValueError(f"expected a space after the quoted text at column {pos}")
            pos += 1
            if pos >= len(message):
                raise ValueError("trailing space after the quoted text")
        return text, _parse_fields(message, pos)
    eq = message.find("=")
    if eq < 0:
        return _unescape_bare(message), {}
    # A bare text never contains "=" and bare keys never contain " " or "=", so the
    # first field starts right after the last space before the first "=".
    space = message.rfind(" ", 0, eq)
    if space < 0:
        return "", _parse_fields(message, 0)
    return _unescape_bare(message[:space]), _parse_fields(message, space + 1)


def parse_event_line(line: str) -> ParsedEvent:
    """The inverse of :func:`format_event_line`.

    One trailing ``\\n`` is tolerated, so lines read from a file can be passed as is.

    Raises:
        ValueError: the line is not canonical (wrong column count, timestamp or event
            type, stray quotes, bad escapes, duplicate keys...).
    """
    if line.endswith("\n"):
        line = line[:-1]
    if "\n" in line or "\r" in line:
        raise ValueError("event line contains a raw line break")
    columns = line.split("|", 3)
    if len(columns) != 4:
        raise ValueError("event line needs 4 '|'-separated columns")
    ts, event_type, source, message = columns
    if not _TS_RE.fullmatch(ts):
        raise ValueError(f"bad timestamp {ts!r}")
    if not EVENT_TYPE_RE.fullmatch(event_type):
        raise ValueError(f"bad event type {event_type!r}")
    text, fields = split_message(message)
    return ParsedEvent(ts=ts, event_type=event_type, source=source, text=text, fields=fields)
