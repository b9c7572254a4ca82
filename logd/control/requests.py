"""Control requests: validate them, and shape replies and live-tail items.

Pure: no I/O, no clock (`now` is an argument). The server reads the socket, runs the
queries and passes the data here; `logd-ctl` sends what `request()` describes. Errors
travel as coded replies (`{"ok": false, "error": {"code", "message"}}`), never as a
dropped connection.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from logd.control.tailing import min_level, skip_counts
from logd.index.eventline import iso_utc_ms
from logd.index.levels import ERROR_LEVELNO

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
        "level": str,
    },
    "tail": {
        "app": str,
        "run": str,
        "session": str,
        "call": str,
        "events": str,
        "level": str,
        "since": str,
        "until": str,
        "grep": str,
        "n": int,
        "follow": bool,
        # With `follow`: an id not seen yet is waited for instead of refused.
        "wait": bool,
        # A follower picking up again: records from this ISO time, less those it showed.
        "after": str,
        "skip": list,
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
    level = args.get("level")
    return {
        "min_levelno": None if level is None else events_level(level),
        "app": args.get("app"),
        "type_pattern": args.get("type"),
        "since": args.get("since"),
        "until": args.get("until"),
        "session_id": args.get("session"),
        "run_id": args.get("run"),
        "call_id": args.get("call"),
    }


def events_level(text: str) -> int:
    """`events --level`: ERROR or above, the levels the index keeps every record of.

    Raises:
        ControlError: not a level, or one below ERROR (only `tail` reads those).
    """
    try:
        levelno = min_level(text)
    except ValueError as exc:
        raise ControlError("bad-argument", str(exc)) from None
    if levelno < ERROR_LEVELNO:
        raise ControlError(
            "bad-argument",
            f"events --level lists ERROR and CRITICAL records only (the index keeps no"
            f" others); for {text.upper()} and above use: logd-ctl tail --level {text}",
        )
    return levelno


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


def tail_args(args: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A `tail` request's arguments made ready for reading: `since`, `until` and `after`
    as ISO UTC times, `level` and `skip` checked.

    Raises:
        ControlError: a bad time, level or resume cursor.
    """
    ready = dict(args)
    for key in ("since", "until", "after"):
        if key in ready:
            ready[key] = parse_time(ready[key], now)
    try:
        if "level" in ready:
            min_level(ready["level"])
        if "skip" in ready:
            skip_counts(ready["skip"])
    except ValueError as exc:
        raise ControlError("bad-argument", str(exc)) from None
    return ready
