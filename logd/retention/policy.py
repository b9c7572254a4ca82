"""Retention decisions: what cleanup deletes, made from a listing of the tree.

Pure: no I/O and no clock. `now` and every timestamp are arguments (POSIX seconds), and
paths are plain strings relative to the root, so the rules of SPEC §6 are tested as
tables. `scan` walks the disk into a `Listing`; `cleanup` carries the decisions out.
Rotation's decisions are `rotation`'s.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from logd.config import Retention
from logd.retention.rotation import DAY_S

__all__ = [
    "Archive",
    "CallDay",
    "Deletion",
    "Listing",
    "Reason",
    "RejectedDay",
    "RunEntry",
    "SessionEntry",
    "UnitKind",
    "decide_cleanup",
]


class UnitKind(StrEnum):
    """What a deletion removes; the daemon drops the index rows that describe it."""

    RUN = "run"
    CALL_DAY = "call-day"
    SESSION = "session"
    EVENTS_ARCHIVE = "events-archive"
    REJECTED = "rejected"
    TEMP = "temp"


class Reason(StrEnum):
    """Why a unit goes: a stable code, like the error codes."""

    AGE = "age"
    SIZE_CAP = "size-cap"
    LEFTOVER = "leftover"


@dataclass(frozen=True, slots=True)
class RunEntry:
    """A run folder. `end_ts` None means active: never deleted, counted in `runs_keep`."""

    app: str
    run_id: str
    path: str
    start_ts: float
    end_ts: float | None
    bytes: int


@dataclass(frozen=True, slots=True)
class CallDay:
    """A call date folder; `end_ts` is the end of that day in the layout's time zone."""

    app: str
    day: str
    path: str
    end_ts: float
    bytes: int
    active: bool = False


@dataclass(frozen=True, slots=True)
class SessionEntry:
    """A session's live file and backups, `files` as (path, bytes).

    `ended_ts` is the end when known (the registry); else the session ended at its last
    write, `last_ts`.
    """

    app: str
    session_id: str
    files: tuple[tuple[str, int], ...]
    last_ts: float
    ended_ts: float | None = None
    active: bool = False

    @property
    def end_ts(self) -> float:
        return self.last_ts if self.ended_ts is None else self.ended_ts

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.files)


@dataclass(frozen=True, slots=True)
class Archive:
    """One `events.log.YYYY-MM-DD[.N][.gz]`; `end_ts` is the end of that UTC day."""

    app: str
    path: str
    day: str
    end_ts: float
    bytes: int


@dataclass(frozen=True, slots=True)
class RejectedDay:
    """One `_rejected/YYYY-MM-DD.jsonl`; `end_ts` is the end of that UTC day."""

    path: str
    day: str
    end_ts: float
    bytes: int


@dataclass(frozen=True, slots=True)
class Listing:
    """What retention can see of the tree. `other_bytes` is everything no rule deletes
    (index, daemon log, live event logs, unknown files); it counts toward the size cap.

    `temps` are (path, bytes) of the daemon's own hidden temp files (``.NAME.tmp``) that
    a crash left behind: cleanup runs between batches with compression settled, so none
    of them is being written. Their bytes are already in `other_bytes` or a unit's.
    """

    runs: tuple[RunEntry, ...] = ()
    call_days: tuple[CallDay, ...] = ()
    sessions: tuple[SessionEntry, ...] = ()
    archives: tuple[Archive, ...] = ()
    rejected: tuple[RejectedDay, ...] = ()
    other_bytes: int = 0
    temps: tuple[tuple[str, int], ...] = ()

    @property
    def total_bytes(self) -> int:
        units = (self.runs, self.call_days, self.archives, self.rejected, self.sessions)
        return self.other_bytes + sum(entry.bytes for group in units for entry in group)


@dataclass(frozen=True, slots=True)
class Deletion:
    """One path to delete (a file or a whole folder), relative to the root.

    `app` and `name` (run id, day or session file name) say which index rows follow.
    """

    path: str
    reason: Reason
    bytes: int
    kind: UnitKind
    app: str | None
    name: str


@dataclass(frozen=True, slots=True)
class _Unit:
    """A deletable unit for the size cap: several deletions that go together."""

    end_ts: float
    deletions: tuple[Deletion, ...]

    @property
    def bytes(self) -> int:
        return sum(d.bytes for d in self.deletions)

    @property
    def key(self) -> tuple[float, str]:
        return (self.end_ts, self.deletions[0].path)


def _units(listing: Listing, reason: Reason) -> Iterable[tuple[_Unit, bool]]:
    """Every unit of the listing, paired with whether it is active."""
    for run in listing.runs:
        d = Deletion(run.path, reason, run.bytes, UnitKind.RUN, run.app, run.run_id)
        yield _Unit(run.end_ts if run.end_ts is not None else 0.0, (d,)), run.end_ts is None
    for call in listing.call_days:
        d = Deletion(call.path, reason, call.bytes, UnitKind.CALL_DAY, call.app, call.day)
        yield _Unit(call.end_ts, (d,)), call.active
    for session in listing.sessions:
        deletions = tuple(
            Deletion(path, reason, size, UnitKind.SESSION, session.app, session.session_id)
            for path, size in session.files
        )
        if deletions:
            yield _Unit(session.end_ts, deletions), session.active
    for archive in listing.archives:
        d = Deletion(
            archive.path, reason, archive.bytes, UnitKind.EVENTS_ARCHIVE, archive.app, archive.day
        )
        yield _Unit(archive.end_ts, (d,)), False
    for rejected in listing.rejected:
        d = Deletion(rejected.path, reason, rejected.bytes, UnitKind.REJECTED, None, rejected.day)
        yield _Unit(rejected.end_ts, (d,)), False


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _kept_runs(runs: Sequence[RunEntry], keep: int) -> set[str]:
    """Paths of the newest `keep` runs per app by start; active runs count among them."""
    by_app: dict[str, list[RunEntry]] = defaultdict(list)
    for run in runs:
        by_app[run.app].append(run)
    kept: set[str] = set()
    for app_runs in by_app.values():
        app_runs.sort(key=lambda r: (r.start_ts, r.run_id), reverse=True)
        kept.update(run.path for run in app_runs[:keep])
    return kept


def _keep_for_seconds(policy: Retention, kind: UnitKind) -> float:
    days = {
        UnitKind.RUN: policy.runs_days,
        UnitKind.CALL_DAY: policy.calls_days,
        UnitKind.SESSION: policy.sessions_days,
        UnitKind.EVENTS_ARCHIVE: policy.events_days,
        UnitKind.REJECTED: policy.events_days,
    }[kind]
    return days * DAY_S


def decide_cleanup(policy: Retention, listing: Listing, now: float) -> list[Deletion]:
    """What to delete under `policy` at `now`: age rules first, then the size cap.

    Age rules (SPEC §6) count from a unit's end: runs from `end_ts`, call folders and
    dated files from the end of their day, sessions from their end. A unit goes once
    `end + days < now`, so 0 days keeps nothing that has ended. Runs also keep the newest
    `runs_keep` per app by start time, active ones included.

    The size cap (`max_total_bytes > 0`) then deletes whole units, oldest end first,
    until the listing's total fits. It takes only ended units, which excludes active
    ones and any whose end is still ahead (today's call folder and `_rejected` file).
    It does override `runs_keep` for ended runs: a disk cap is a hard promise, and the
    newest runs are the last to go anyway. If the cap cannot be met by ended units it
    deletes them all and stops.

    Temp files a crash left behind (`Listing.temps`) always go, whatever the policy.

    Returns:
        Leftover temp files and age deletions sorted by path, then size-cap deletions in
        the order they were chosen; a session contributes one deletion per file.
    """
    kept_runs = _kept_runs(listing.runs, policy.runs_keep)
    by_age: list[Deletion] = [
        Deletion(path, Reason.LEFTOVER, size, UnitKind.TEMP, path.split("/")[0], _name(path))
        for path, size in listing.temps
    ]
    candidates: list[_Unit] = []
    for unit, active in _units(listing, Reason.AGE):
        first = unit.deletions[0]
        if active or unit.end_ts > now:
            continue
        protected = first.kind is UnitKind.RUN and first.path in kept_runs
        if not protected and unit.end_ts + _keep_for_seconds(policy, first.kind) < now:
            by_age.extend(unit.deletions)
        else:
            candidates.append(unit)
    by_age.sort(key=lambda d: d.path)
    if policy.max_total_bytes <= 0:
        return by_age

    excess = listing.total_bytes - sum(d.bytes for d in by_age) - policy.max_total_bytes
    by_size: list[Deletion] = []
    for unit in sorted(candidates, key=lambda u: u.key):
        if excess <= 0:
            break
        by_size.extend(
            Deletion(d.path, Reason.SIZE_CAP, d.bytes, d.kind, d.app, d.name)
            for d in unit.deletions
        )
        excess -= unit.bytes
    return by_age + by_size
