"""A `tail` item (a record as the control socket sends it) and the follower's cursor.

The item shape is the session file's fields (SPEC §4), what `logd-ctl tail --json` prints
and `logd_client.read_records()` / `follow()` return. A record is identified by its `key`:
time (to the millisecond, as the files keep it), app, run and call. Records with the same
key all sit in one file, in the order they were written, so a follower that counts how
many of each key it has shown can skip exactly those when it asks again after a daemon
restart (`Cursor`). Shared by the client's followers, `logd-ctl tail -f` and the daemon's
resume (`logd.control.tailing`). Pure: no I/O, no clock.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "ITEM_FIELDS",
    "MAX_CURSOR_KEYS",
    "SLACK_MS",
    "Cursor",
    "Key",
    "item_key",
    "key_count",
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
            key, count = key_count(entry)
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


def key_count(entry: Sequence[Any]) -> tuple[Key | None, int]:
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
