"""What `tail` sends: the filters, levels and grep, and the resume request's `skip` list.

Pure: no I/O, no clock. The daemon builds items (from its files in `lines`, live in
`write.routing.tail_item`) and filters them here. The item shape and the follower's
`Cursor` (what makes a reconnect show exactly the records it missed) are the client's
(`logd_client.control.items`): followers keep one, `logd-ctl tail -f` and the client's
`follow()` alike; they are re-exported here for the daemon side.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The item shape and the follower's cursor live with the client, which follows too.
from logd_client.control.items import (
    ITEM_FIELDS,
    MAX_CURSOR_KEYS,
    SLACK_MS,
    Cursor,
    Key,
    item_key,
    key_count,
    public,
)

from logd.index.levels import ERROR_LEVELNO, LEVELS

__all__ = [
    "ITEM_FIELDS",
    "MAX_CURSOR_KEYS",
    "SLACK_MS",
    "Cursor",
    "Key",
    "TailFilter",
    "body_text",
    "compile_grep",
    "item_key",
    "level_number",
    "min_level",
    "public",
]

_NUMBERED_RE = re.compile(r"Level (-?\d+)")


def level_number(level: object) -> int:
    """A record's level name as a number: `WARNING` 30, `Level 5` 5, other words 20."""
    if not isinstance(level, str):
        return 20
    known = LEVELS.get(level.upper())
    if known is not None:
        return known
    numbered = _NUMBERED_RE.fullmatch(level)
    return int(numbered[1]) if numbered else 20


def min_level(text: str) -> int:
    """`--level` / `-p`: a level name (any case) or a number, as the lowest levelno shown.

    Raises:
        ValueError: neither.
    """
    value = text.strip()
    if value.lstrip("-").isdigit():
        return int(value)
    known = LEVELS.get(value.upper())
    if known is None:
        names = "debug, info, warning, error, critical"
        raise ValueError(f"{text!r} is not a level: use one of {names}, or a number")
    return known


def compile_grep(text: str) -> re.Pattern[str]:
    """`--grep` as journalctl reads it: a regular expression (a plain word is one), case
    folded unless it has an upper-case letter; `^` and `$` match at each line of
    `body_text`. Text that is not a valid expression is matched as a plain substring."""
    flags = re.MULTILINE if any(c.isupper() for c in text) else re.MULTILINE | re.IGNORECASE
    try:
        return re.compile(text, flags)
    except re.error:
        return re.compile(re.escape(text), flags)


def body_text(item: Mapping[str, Any]) -> str:
    """What `--grep` searches: the message, then (each on a line of its own) the event
    type and fields, the extra fields, and the traceback."""

    def pairs(values: object) -> list[str]:
        if not isinstance(values, Mapping):
            return []
        return [
            f"{k}={v if isinstance(v, str) else json.dumps(v, default=str)}"
            for k, v in values.items()
        ]

    parts = [str(item.get("msg") or "")]
    if item.get("event_type"):
        parts.append(" ".join([str(item["event_type"]), *pairs(item.get("kv"))]))
    if extras := pairs(item.get("extras")):
        parts.append(" ".join(extras))
    if item.get("exc"):
        parts.append(str(item["exc"]))
    return "\n".join(parts)


def effective_event(item: Mapping[str, Any]) -> str | None:
    """The event type the index gives a record: its own, or `error:runtime` for an
    ERROR-or-above record with a traceback."""
    event_type = item.get("event_type")
    if isinstance(event_type, str):
        return event_type
    if item.get("exc") and level_number(item.get("level")) >= ERROR_LEVELNO:
        return "error:runtime"
    return None


@dataclass(frozen=True, slots=True)
class TailFilter:
    """Which records a `tail` wants; filters combine with AND.

    `since` and `until` are ISO UTC times in the items' own form (`...T14:30:52.123Z`),
    so they compare as text.
    """

    app: str | None = None
    run: str | None = None
    session: str | None = None
    call: str | None = None
    events: str | None = None
    level: int | None = None
    since: str | None = None
    until: str | None = None
    grep: re.Pattern[str] | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> TailFilter:
        """From a checked `tail` request; `since`/`until` already ISO, `level` checked.

        Raises:
            ValueError: `level` is not a level.
        """
        level = args.get("level")
        grep = args.get("grep")
        return cls(
            app=args.get("app"),
            run=args.get("run"),
            session=args.get("session"),
            call=args.get("call"),
            events=args.get("events"),
            level=min_level(level) if level is not None else None,
            since=args.get("since"),
            until=args.get("until"),
            grep=compile_grep(grep) if grep else None,
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
        if self.level is not None and level_number(item.get("level")) < self.level:
            return False
        time = item.get("time")
        if self.since is not None and not (isinstance(time, str) and time >= self.since):
            return False
        if self.until is not None and not (isinstance(time, str) and time <= self.until):
            return False
        if self.events is not None:
            event_type = effective_event(item)
            if event_type is None or not fnmatch.fnmatchcase(event_type, self.events):
                return False
        return self.grep is None or self.grep.search(body_text(item)) is not None


def skip_counts(entries: object) -> Counter[Key]:
    """A resume request's `skip` list as counts per key.

    Raises:
        ValueError: not a list of `[time, app, run_id, call_id, count]`.
    """
    if not isinstance(entries, list):
        raise ValueError("skip must be a list")
    counts: Counter[Key] = Counter()
    for entry in entries:
        key, count = key_count(entry)
        if key is None:
            raise ValueError("skip entries are [time, app, run_id, call_id, count]")
        counts[key] += count
    return counts
