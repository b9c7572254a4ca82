"""What `tail` shows before it follows: the newest records across runs, calls and
sessions, read back through rotated and compressed files.

Blocking: reads the log files, and the registry and index through `families`, from
worker threads. Records come from file families (`families.Family`); events asked for
with ``--events`` come from the index.

A follower's backlog must end exactly where its live records begin. So it is read in
steps around a pause of the writer: `plan()` reads the families that no longer change
(ended runs and calls); `capture()`, while no batch is written or published, notes how
far every family that may still grow reached, and the index's last event row;
`finish()` reads those up to there. Every record written before the pause is in the
backlog and every record after it is live.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from logd.control import lines
from logd.control.families import Family, TailIndex
from logd.control.logfiles import Limit, limit_of, records_back
from logd.control.requests import MAX_LIMIT, ControlError
from logd.control.tailing import Key, TailFilter, item_key, skip_counts
from logd.index.eventline import EVENT_TYPE_RE

__all__ = ["Backlog", "Snapshot"]

READ_BATCH = 256
# Records read past -n in each family: lines from several processes arrive a little out
# of time order, and a follower must know the newest time the backlog holds.
FLOOR_MARGIN = 32
# A resume reads back until this many records in a row (or this far) before its cut.
LATE_RECORDS = 256
LATE = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Where the growing families and the event index stood while the writer paused."""

    limits: Mapping[str, Limit]
    last_event_id: int


@dataclass(slots=True)
class _Reading:
    """One family's records as they are read back, newest first."""

    newest_first: list[dict[str, Any]] = field(default_factory=list)
    late: int = 0
    done: bool = False


def _shift(iso: str, delta: timedelta) -> str:
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")) + delta
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Backlog:
    """The backlog of one `tail` request.

    Args:
        root: the log root.
        args: the checked request: filters (`since`/`until` as ISO UTC times), `n`,
            `follow` (and `wait`), and for a resume `after` (ISO) and `skip`.
        utc: the layout's `utc`, to read the times of text lines.

    Raises:
        ControlError: a bad `skip`, or the index cannot be opened.

    Resource handling: owns a read-only SQLite connection; `close()` it.
    """

    def __init__(self, root: Path, args: Mapping[str, Any], *, utc: bool) -> None:
        self.root = root
        self.utc = utc
        self.args = dict(args)
        self.n: int = args.get("n", 10)
        self.after: str | None = args.get("after")
        try:
            self.skip: Counter[Key] = skip_counts(args.get("skip", []))
        except ValueError as exc:
            raise ControlError("bad-argument", str(exc)) from None
        self.wait = bool(args.get("follow") and args.get("wait"))
        self.filter = TailFilter.from_args(self.args)
        # Records older than this cannot be shown: reading back stops a little past it.
        bounds = [b for b in (self.after, args.get("since")) if b is not None]
        self.lower: str | None = max(bounds) if bounds else None
        self.waiting: str | None = None
        self.resolved_run: str | None = None
        self.growing: dict[str, Family] = {}
        self.settled: dict[str, list[dict[str, Any]]] = {}
        self.index = TailIndex(root)

    def close(self) -> None:
        self.index.close()

    # --- the three steps ----------------------------------------------------------------

    def plan(self) -> None:
        """Resolve `--run current` (or a container's name), check the ids, read the
        families that have ended.

        Raises:
            ControlError: an unknown id, unless following with `wait` (then `waiting`
            says so).
        """
        args = self.args
        run = args.get("run")
        if run == "current":
            self.resolved_run = args["run"] = self.index.current_run(args.get("app"))
            self.filter = TailFilter.from_args(args)
        elif run is not None and (found := self.index.container_run(run, args.get("app"))):
            # `--run NAME` for a container's run, as `docker logs NAME` would.
            self.resolved_run = args["run"] = found
            self.filter = TailFilter.from_args(args)
        missing = self.index.missing(args)
        if missing is not None:
            if not self.wait:
                raise ControlError("not-found", missing)
            self.waiting = f"{missing} yet; waiting for it"
        if args.get("events"):
            return
        self._find_growing()
        if not (args.get("session") or args.get("call") or args.get("run")):
            self._read_ended()

    def capture(self) -> Snapshot:
        """While the writer is paused: how far each family that may grow has got."""
        if not self.args.get("events"):
            self._find_growing()
        limits = {path: limit_of(self.root / path) for path in self.growing}
        return Snapshot(limits, self.index.last_event_id())

    def finish(self, snapshot: Snapshot | None) -> dict[str, Any]:
        """The backlog (up to `snapshot` if given) and, for a follower, where it ends.

        Returns:
            `items` (oldest first), `floor` (the newest matching time then, or None)
            and `floor_keys` (`[time, app, run_id, call_id, count]` of the records at
            that time), `waiting` and `run` (what `current` meant) when they apply.
        """
        if self.args.get("events"):
            families = [self._read_events(snapshot.last_event_id if snapshot else None)]
        else:
            families = []
            for path, family in self.growing.items():
                self.settled.pop(path, None)  # ended once, but it grew again: read it now
                limit = snapshot.limits.get(path) if snapshot is not None else None
                families.append(self._read_family(family, limit))
            families += self.settled.values()
        return self._merge(families)

    # --- which families -----------------------------------------------------------------

    def _find_growing(self) -> None:
        for family in self.index.growing(self.args):
            self.growing.setdefault(family.path, family)

    def _read_ended(self) -> None:
        newest: list[str] = []  # times of what was found, to know when older runs cannot count
        count = max(self.n, 1)
        since = _shift(self.lower, -LATE) if self.lower is not None else None
        for family in self.index.ended(self.args.get("app"), since):
            if family.path in self.growing:
                continue
            if self.after is None and len(newest) >= count:
                newest.sort()
                if (family.last or "") < newest[-count]:
                    break
            items = self._read_family(family, None)
            self.settled[family.path] = items
            newest += [item["time"] for item in items]

    # --- reading ------------------------------------------------------------------------

    def _read_family(self, family: Family, limit: Limit | None) -> list[dict[str, Any]]:
        """A family's matching records to show, oldest first."""
        reading = _Reading()
        batch: list[list[str]] = []
        is_head = {"run": lines.is_run_head, "call": lines.is_call_head}.get(family.form)
        for record in records_back(self.root / family.path, is_head, limit):
            batch.append(record)
            if len(batch) >= READ_BATCH:
                self._take(reading, self._parse(family, batch))
                batch = []
                if reading.done:
                    break
        if batch and not reading.done:
            self._take(reading, self._parse(family, batch))
        items = reading.newest_first[::-1]
        return self._skipped(items) if self.skip else items

    def _take(self, reading: _Reading, items: list[dict[str, Any]]) -> None:
        want = self.n + FLOOR_MARGIN
        lower = self.lower
        late_bound = _shift(lower, -LATE) if lower is not None else None
        for item in items:
            if lower is not None:
                time = item["time"]
                if time < lower:
                    reading.late += 1
                    if reading.late >= LATE_RECORDS or (late_bound and time < late_bound):
                        reading.done = True
                        return
                    continue
                reading.late = 0
            if self.filter.matches(item):
                reading.newest_first.append(item)
                if self.after is None and len(reading.newest_first) >= want:
                    reading.done = True
                    return

    def _parse(self, family: Family, batch: list[list[str]]) -> list[dict[str, Any]]:
        """Records (newest first, as read) as items; text lines that look like events
        are checked against the index."""
        base = family.base
        if family.form == "session":
            found = [lines.session_item(record[0], base, utc=self.utc) for record in batch]
            return [item for item in found if item is not None]
        parse = lines.run_item if family.form == "run" else lines.call_item
        parsed = [(record, parse(record, base, utc=self.utc, events={})) for record in batch]
        items = [(record, item) for record, item in parsed if item is not None]
        maybe = [
            index
            for index, (_, item) in enumerate(items)
            if EVENT_TYPE_RE.fullmatch(str(item["msg"]).split(" ", 1)[0])
        ]
        if maybe:
            times = [str(items[index][1]["time"]) for index in maybe]
            rows = self.index.event_rows(family, min(times), max(times))
            for index in maybe:
                record = items[index][0]
                items[index] = (record, parse(record, base, utc=self.utc, events=rows) or {})
        return [item for _, item in items]

    def _read_events(self, last_id: int | None) -> list[dict[str, Any]]:
        """`--events`: matching index rows as items, oldest first."""
        found: list[dict[str, Any]] = []
        if self.after is not None:
            rows = self.index.events(self.args, last_id=last_id, oldest_first=True, limit=MAX_LIMIT)
            found = [item for item in map(self._event_item, rows) if self.filter.matches(item)]
            return self._skipped(found)
        before: int | None = None
        want = self.n + FLOOR_MARGIN
        while len(found) < want:
            rows = self.index.events(self.args, last_id=last_id, before_id=before)
            found += [item for item in map(self._event_item, rows) if self.filter.matches(item)]
            if not rows:
                break
            before = rows[-1]["id"]
        return found[:want][::-1]

    def _event_item(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return lines.event_item(row, utc=self.utc)

    def _skipped(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop, in file order, as many records of each key as the follower has shown."""
        kept = []
        for item in items:
            key = item_key(item)
            if self.skip[key] > 0:
                self.skip[key] -= 1
            else:
                kept.append(item)
        return kept

    def _merge(self, families: list[list[dict[str, Any]]]) -> dict[str, Any]:
        """One sequence by time; each family keeps its own (written) order.

        Files keep milliseconds, and which of two families wrote first within one is not
        on disk: the family whose newest record is older is taken to have, so a call
        that ended before the run's next lines reads in that order.
        """
        ranked = sorted(
            (str(items[-1]["time"]), index, items) for index, items in enumerate(families) if items
        )
        merged = list(heapq.merge(*(items for *_, items in ranked), key=_time))
        reply: dict[str, Any] = {}
        if self.after is not None:
            reply["items"] = merged[-MAX_LIMIT:]
        else:
            floor = max(map(_time, merged)) if merged else None
            at_floor = Counter(item_key(item) for item in merged if item["time"] == floor)
            reply["items"] = merged[-self.n :] if self.n else []
            reply["floor"] = floor
            reply["floor_keys"] = [[*key, count] for key, count in sorted(at_floor.items())]
        if self.waiting is not None:
            reply["waiting"] = self.waiting
        if self.resolved_run is not None:
            reply["run"] = self.resolved_run
        return reply


def _time(item: Mapping[str, Any]) -> str:
    return str(item["time"])
