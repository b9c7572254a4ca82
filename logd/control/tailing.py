"""What `tail` sends and how a follower picks up again: the item shape, the filters, and
the cursor that makes a reconnect show exactly the records it missed.

Pure: no I/O, no clock. The daemon builds items (from its files in `lines`, live in
`write.routing.tail_item`) and filters them here; `logd-ctl` keeps a `Cursor`.

A record is identified by its `key`: time (to the millisecond, as the files keep it),
app, run and call. Records with the same key all sit in one file (a run's log, a call's
file or a session's file), in the order they were written and published, so a follower
that counts how many of each key it has shown can skip exactly those when it reads the
files again.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from logd.index.levels import ERROR_LEVELNO, LEVELS

__all__ = [
    "ITEM_FIELDS",
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

# The session file's fields (SPEC §4), the shape of every `tail --json` line.
ITEM_FIELDS = (
    "time",
    "level",
    "logger",
    "msg",
    "app",
    "run_id",
    "session_id",
    "call_id",
    "bot_id",
    "event_type",
    "kv",
    "exc",
    "extras",
)
_NUMBERED_RE = re.compile(r"Level (-?\d+)")
# How far (by record time) a follower looks back when it reconnects: records that
# arrive later than this behind the newest one it saw are not replayed.
SLACK_MS = 10_000
# A resume request names at most this many keys (it must fit the request size limit);
# past it the oldest are dropped and the look-back shortens.
MAX_CURSOR_KEYS = 4000

Key = tuple[str, str, str, str]


def public(item: Mapping[str, Any]) -> dict[str, Any]:
    """The `--json` form of an item: exactly `ITEM_FIELDS`, `kv` and `extras` as maps."""
    out = {name: item.get(name) for name in ITEM_FIELDS}
    for name in ("kv", "extras"):
        if not isinstance(out[name], dict):
            out[name] = {}
    return out


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


def item_key(item: Mapping[str, Any]) -> Key:
    """What identifies a record among those a tail reads back (see the module's doc)."""
    return (
        str(item.get("time") or ""),
        str(item.get("app") or ""),
        str(item.get("run_id") or ""),
        str(item.get("call_id") or ""),
    )


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Cursor:
    """What a `tail -f` has shown, so that after a daemon restart it asks for the rest.

    The first reply tells where the backlog stood (`start`): the newest time of any
    matching record then (`floor`) and how many records of each key it had at that very
    millisecond. Every live item shown is `note`d. `resume_args()` then asks for the
    records from `SLACK_MS` before the newest one shown (never before the floor),
    skipping as many of each key as were shown: nothing is shown twice, and nothing
    written meanwhile is missed unless it arrived more than `SLACK_MS` late by its own
    clock.
    """

    def __init__(self, slack_ms: int = SLACK_MS, max_keys: int = MAX_CURSOR_KEYS) -> None:
        self.slack = timedelta(milliseconds=slack_ms)
        self.max_keys = max_keys
        self.floor: str | None = None
        self.newest: str | None = None
        self.dropped_before: str | None = None
        self.seen: Counter[Key] = Counter()

    def start(self, floor: str | None, floor_keys: Iterable[Sequence[Any]]) -> None:
        """Where the backlog stood: from a first reply's `floor` and `floor_keys`."""
        self.floor = floor
        self.newest = floor
        for entry in floor_keys:
            key, count = _key_count(entry)
            if key is not None:
                self.seen[key] += count

    def note(self, item: Mapping[str, Any]) -> None:
        """A record shown after the backlog (live, or read back after a reconnect)."""
        key = item_key(item)
        self.seen[key] += 1
        if self.newest is None or key[0] > self.newest:
            self.newest = key[0]
        if len(self.seen) > 2 * self.max_keys:
            self._prune()

    def cut(self) -> str | None:
        """The earliest record time a resume asks for (None: everything matching)."""
        bounds = [b for b in (self.floor, self.dropped_before) if b is not None]
        if self.newest is not None:
            with contextlib.suppress(ValueError):
                bounds.append(_iso(_moment(self.newest) - self.slack))
        return max(bounds) if bounds else None

    def _prune(self) -> None:
        cut = self.cut()
        if cut is not None:
            for key in [k for k in self.seen if k[0] < cut]:
                del self.seen[key]
        if len(self.seen) > self.max_keys:
            times = sorted({key[0] for key in self.seen})
            # Drop whole milliseconds, oldest first, and never look back past them again.
            keep_from = times[-1]
            kept = 0
            counts = Counter(key[0] for key in self.seen)
            for moment in reversed(times):
                if kept + counts[moment] > self.max_keys:
                    break
                kept += counts[moment]
                keep_from = moment
            self.dropped_before = keep_from
            for key in [k for k in self.seen if k[0] < keep_from]:
                del self.seen[key]

    def resume_args(self) -> dict[str, Any]:
        """`after` and `skip` for the `tail` request that picks up where this left off."""
        self._prune()
        cut = self.cut()
        seen = sorted(self.seen.items())
        skip = [[*key, count] for key, count in seen if cut is None or key[0] >= cut]
        return {"after": cut, "skip": skip}


def _key_count(entry: Sequence[Any]) -> tuple[Key | None, int]:
    if (
        isinstance(entry, list | tuple)
        and len(entry) == 5
        and all(isinstance(part, str) for part in entry[:4])
        and isinstance(entry[4], int)
        and not isinstance(entry[4], bool)
        and entry[4] > 0
    ):
        return (entry[0], entry[1], entry[2], entry[3]), entry[4]
    return None, 0


def skip_counts(entries: object) -> Counter[Key]:
    """A resume request's `skip` list as counts per key.

    Raises:
        ValueError: not a list of `[time, app, run_id, call_id, count]`.
    """
    if not isinstance(entries, list):
        raise ValueError("skip must be a list")
    counts: Counter[Key] = Counter()
    for entry in entries:
        key, count = _key_count(entry)
        if key is None:
            raise ValueError("skip entries are [time, app, run_id, call_id, count]")
        counts[key] += count
    return counts
