"""Control requests: validate them, and shape replies and live-tail items.

Pure: no I/O, no clock (`now` is an argument). The server reads the socket, runs the
queries and passes the data here; `logd-ctl` sends what `request()` describes. Errors
travel as coded replies (`{"ok": false, "error": {"code", "message"}}`), never as a
dropped connection.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from logd.index.eventline import iso_utc_ms

COMMANDS = (
    "status",
    "runs",
    "run",
    "sessions",
    "calls",
    "events",
    "tail",
    "cleanup",
    "rotate",
    "reload",
)
_ARGS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "status": {},
    "runs": {"app": str, "active": bool, "limit": int},
    "run": {"run_id": str, "app": str},
    "sessions": {"app": str, "active": bool, "limit": int},
    "calls": {"app": str, "date": str, "bot": str, "active": bool, "limit": int},
    "events": {
        "app": str,
        "type": str,
        "since": str,
        "until": str,
        "session": str,
        "run": str,
        "call": str,
        "limit": int,
    },
    "tail": {
        "app": str,
        "run": str,
        "session": str,
        "call": str,
        "events": str,
        "n": int,
        "follow": bool,
    },
    "cleanup": {"dry_run": bool},
    "rotate": {},
    "reload": {},
}
_REQUIRED = {"run": ("run_id",)}
_AGO_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)")
_AGO_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_LIMIT = 1_000_000


class ControlError(Exception):
    """A request the daemon cannot answer; becomes a coded reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Request:
    command: str
    args: dict[str, Any]


def request(command: str, **args: Any) -> dict[str, Any]:
    """The wire form of a request, for `logd-ctl` (absent arguments are left out)."""
    return {"cmd": command, "args": {k: v for k, v in args.items() if v is not None}}


def parse_request(obj: Mapping[str, Any]) -> Request:
    """Check a decoded request map.

    Raises:
        ControlError: unknown command, unknown argument, or a wrong type.
    """
    command = obj.get("cmd")
    if not isinstance(command, str) or command not in _ARGS:
        raise ControlError("unknown-command", f"unknown command {command!r}")
    args = obj.get("args", {})
    if not isinstance(args, dict):
        raise ControlError("bad-request", "args must be a map")
    allowed = _ARGS[command]
    for key, value in args.items():
        if key not in allowed:
            raise ControlError("bad-argument", f"{command} takes no argument {key!r}")
        expected = allowed[key]
        if (isinstance(value, bool) and expected is int) or not isinstance(value, expected):
            name = expected.__name__ if isinstance(expected, type) else "value"
            raise ControlError("bad-argument", f"{key} must be a {name}")
        if isinstance(value, int) and not 0 <= value <= MAX_LIMIT:
            raise ControlError("bad-argument", f"{key} must be between 0 and {MAX_LIMIT}")
    for key in _REQUIRED.get(command, ()):
        if key not in args:
            raise ControlError("bad-argument", f"{command} needs {key}")
    return Request(command, dict(args))


def ok(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def event_filters(args: Mapping[str, Any]) -> dict[str, Any]:
    """`events` arguments (as logd-ctl and logd web name them) as `EventIndex.query` filters.

    `since`/`until` must already be ISO times (`parse_time`).
    """
    return {
        "app": args.get("app"),
        "type_pattern": args.get("type"),
        "since": args.get("since"),
        "until": args.get("until"),
        "session_id": args.get("session"),
        "run_id": args.get("run"),
        "call_id": args.get("call"),
    }


def parse_time(text: str, now: float) -> str:
    """`1h`, `30m`, `2d` ago, or an ISO 8601 time, as an ISO UTC time for the index.

    Raises:
        ControlError: neither form.
    """
    text = text.strip()
    match = _AGO_RE.fullmatch(text)
    if match:
        moment = now - float(match[1]) * _AGO_UNITS[match[2]]
        return _iso(datetime.fromtimestamp(max(moment, 0), tz=UTC))
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ControlError(
            "bad-time", f"{text!r} is not a time: use e.g. 30m, 1h, 2d or 2025-11-05T14:30:00"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # a bare time is the operator's local time
    return _iso(parsed.astimezone(UTC))


def _iso(moment: datetime) -> str:
    # Whole microseconds, so the float timestamp cannot move the millisecond.
    return iso_utc_ms(round(moment.timestamp() * 1_000_000) * 1000)


@dataclass(frozen=True, slots=True)
class TailFilter:
    """Which live records a `tail` subscriber wants; filters combine with AND."""

    app: str | None = None
    run: str | None = None
    session: str | None = None
    call: str | None = None
    events: str | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> TailFilter:
        return cls(
            app=args.get("app"),
            run=args.get("run"),
            session=args.get("session"),
            call=args.get("call"),
            events=args.get("events"),
        )

    def matches(self, item: Mapping[str, Any]) -> bool:
        if self.app is not None and item.get("app") != self.app:
            return False
        if self.run is not None and item.get("run_id") != self.run:
            return False
        if self.session is not None and item.get("session_id") != self.session:
            return False
        if self.call is not None and item.get("call_id") != self.call:
            return False
        if self.events is not None:
            event_type = item.get("event_type")
            return event_type is not None and fnmatch.fnmatchcase(event_type, self.events)
        return True


_RUN_LINE_RE = re.compile(
    r"\[(?P<session>[^\]]*)\] - (?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - "
    r"(?P<logger>.*?) - (?P<level>[A-Z][A-Za-z0-9_ ]*) - (?P<msg>.*)"
)
_CALL_LINE_RE = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - tid: (?P<thread>\d+) - "
    r"(?P<level>[A-Z][A-Za-z0-9_ ]*) - (?P<msg>.*)"
)


def items_from_lines(
    lines: list[str], *, utc: bool, n: int, base: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The last `n` records of a run or call log, as tail items.

    A line that does not start a record (a traceback, a multi-line message) belongs to
    the record before it.
    """
    items: list[dict[str, Any]] = []
    for line in lines:
        match = _RUN_LINE_RE.fullmatch(line) or _CALL_LINE_RE.fullmatch(line)
        if match is None:
            if items:
                items[-1]["line"] += "\n" + line
                items[-1]["msg"] += "\n" + line
            continue
        fields = match.groupdict()
        session = fields.get("session")
        items.append(
            {
                **base,
                "time": _text_time_to_iso(fields["time"], utc),
                "session_id": None if session in (None, "in-progress") else session,
                "level": fields["level"],
                "logger": fields.get("logger"),
                "msg": fields["msg"],
                "line": line,
            }
        )
    return items[-n:] if n else []


def _text_time_to_iso(text: str, utc: bool) -> str:
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f")
    moment = moment.replace(tzinfo=UTC) if utc else moment.astimezone()
    return _iso(moment.astimezone(UTC))
