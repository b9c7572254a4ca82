"""Retention's read side: walk the log tree once and describe it as a `policy.Listing`.

Synchronous and blocking: the daemon calls it in a worker thread, never on the event
loop. It never follows a symlink. Deciding what goes is `policy`'s, deleting `cleanup`'s.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from logd.index.names import safe_name
from logd.retention.policy import (
    Archive,
    CallDay,
    Listing,
    RejectedDay,
    RunEntry,
    SessionEntry,
)
from logd.retention.rotation import utc_day_end

__all__ = ["REJECTED_DIR", "day_end", "scan"]

REJECTED_DIR = "_rejected"
_DAY = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_DAY_RE = re.compile(_DAY)
_SESSION_RE = re.compile(r"session_(.+)\.jsonl(?:\.[0-9]+)?(?:\.gz)?")
_ARCHIVE_RE = re.compile(rf"events\.log\.({_DAY})(?:\.[0-9]+)?(?:\.gz)?")
_REJECTED_RE = re.compile(rf"({_DAY})\.jsonl")
_CALL_RE = re.compile(r"call_(.+)\.log(?:\.[0-9]+)?(?:\.gz)?")
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
# The daemon's own temp files: metadata.json and runs/current replaced whole, and a
# gzip written through a hidden name (write/atomic.py, retention/cleanup.py).
_TEMP_RE = re.compile(r"\..+\.tmp")


def day_end(day: str, *, utc: bool) -> float | None:
    """When a `YYYY-MM-DD` folder's day ends: call folders use the layout's time zone."""
    if utc or not _DAY_RE.fullmatch(day):
        return utc_day_end(day)
    try:
        next_day = date.fromisoformat(day) + timedelta(days=1)
    except ValueError:
        return None
    # A naive datetime's timestamp() is local time, DST included.
    return datetime.combine(next_day, datetime.min.time()).timestamp()


def _tree(path: str, temps: list[tuple[str, int]] | None = None) -> tuple[int, float]:
    """Bytes of the files and links under `path` (or of `path` itself), and the newest
    mtime, without following symlinks. What vanishes meanwhile counts as nothing. Temp
    files met on the way are added to `temps` as (path, bytes)."""
    try:
        st = os.lstat(path)
        entries = list(os.scandir(path)) if stat.S_ISDIR(st.st_mode) else None
    except (FileNotFoundError, NotADirectoryError):
        return 0, 0.0
    if entries is None:
        if temps is not None and _TEMP_RE.fullmatch(os.path.basename(path)):
            temps.append((path, st.st_size))
        return st.st_size, st.st_mtime
    total, newest = 0, st.st_mtime
    for entry in entries:
        size, mtime = _tree(entry.path, temps)
        total += size
        newest = max(newest, mtime)
    return total, newest


def _list(path: str) -> list[os.DirEntry[str]]:
    try:
        return sorted(os.scandir(path), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _run_times(run_dir: str) -> tuple[float, float | None] | None:
    """(start, end) from metadata.json, end None while active; None if unreadable."""
    try:
        # O_NOFOLLOW: a planted link (to /dev/zero, say) must not be read.
        fd = os.open(os.path.join(run_dir, "metadata.json"), _READ_FLAGS)
        with open(fd, "rb") as handle:
            meta = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    start = _parse_time(meta.get("start_time"))
    end_value = meta.get("end_time")
    end = _parse_time(end_value)
    if start is None or (end_value is not None and end is None):
        return None
    return start, end


@dataclass(slots=True)
class _Scan:
    root: str
    active_runs: set[tuple[str, str]]
    active_sessions: set[tuple[str, str]]
    active_calls: set[tuple[str, str, str]]
    utc: bool
    runs: list[RunEntry] = field(default_factory=list)
    call_days: list[CallDay] = field(default_factory=list)
    sessions: list[SessionEntry] = field(default_factory=list)
    archives: list[Archive] = field(default_factory=list)
    rejected: list[RejectedDay] = field(default_factory=list)
    other_bytes: int = 0
    temps: list[tuple[str, int]] = field(default_factory=list)

    def other(self, path: str) -> None:
        self.other_bytes += self.tree(path)[0]

    def tree(self, path: str) -> tuple[int, float]:
        """`_tree()`, noting the temp files under `path`."""
        return _tree(path, self.temps)

    def walk(self) -> Listing:
        for entry in _list(self.root):
            if entry.name == REJECTED_DIR and _is_dir(entry):
                self.rejected_dir(entry.path)
            elif _is_dir(entry) and not entry.name.startswith("."):
                self.app(entry.name, entry.path)
            else:
                self.other(entry.path)
        return Listing(
            runs=tuple(self.runs),
            call_days=tuple(self.call_days),
            sessions=tuple(self.sessions),
            archives=tuple(self.archives),
            rejected=tuple(self.rejected),
            other_bytes=self.other_bytes,
            temps=tuple(
                (os.path.relpath(path, self.root).replace(os.sep, "/"), size)
                for path, size in self.temps
            ),
        )

    def rejected_dir(self, path: str) -> None:
        for entry in _list(path):
            match = _REJECTED_RE.fullmatch(entry.name)
            end = utc_day_end(match.group(1)) if match else None
            if match is None or end is None or _is_dir(entry):
                self.other(entry.path)
                continue
            size = self.tree(entry.path)[0]
            rel = f"{REJECTED_DIR}/{entry.name}"
            self.rejected.append(RejectedDay(rel, match.group(1), end, size))

    def app(self, app: str, path: str) -> None:
        for entry in _list(path):
            match = _ARCHIVE_RE.fullmatch(entry.name)
            end = utc_day_end(match.group(1)) if match else None
            if entry.name == "runs" and _is_dir(entry):
                self.runs_dir(app, entry.path)
            elif entry.name == "sessions" and _is_dir(entry):
                self.sessions_dir(app, entry.path)
            elif entry.name == "calls" and _is_dir(entry):
                self.calls_dir(app, entry.path)
            elif match is not None and end is not None and not _is_dir(entry):
                size = self.tree(entry.path)[0]
                day = match.group(1)
                self.archives.append(Archive(app, f"{app}/{entry.name}", day, end, size))
            else:
                self.other(entry.path)

    def runs_dir(self, app: str, path: str) -> None:
        for entry in _list(path):
            if not _is_dir(entry) or entry.name.startswith("."):
                self.other(entry.path)  # current, current.txt, temp files
                continue
            size, newest = self.tree(entry.path)
            times = _run_times(entry.path)
            # Without readable metadata a run counts as ended at its last change: the
            # daemon writes metadata at a run's start, so this is a leftover.
            start, end = times if times is not None else (newest, newest)
            if (app, entry.name) in self.active_runs:
                end = None
            rel = f"{app}/runs/{entry.name}"
            self.runs.append(RunEntry(app, entry.name, rel, start, end, size))

    def sessions_dir(self, app: str, path: str) -> None:
        groups: dict[str, list[tuple[str, int, float]]] = {}
        for entry in _list(path):
            match = _SESSION_RE.fullmatch(entry.name)
            if match is None or _is_dir(entry):
                self.other(entry.path)
                continue
            size, mtime = self.tree(entry.path)
            groups.setdefault(match.group(1), []).append(
                (f"{app}/sessions/{entry.name}", size, mtime)
            )
        for session_id, files in groups.items():
            self.sessions.append(
                SessionEntry(
                    app=app,
                    session_id=session_id,
                    files=tuple((rel, size) for rel, size, _ in files),
                    last_ts=max(mtime for _, _, mtime in files),
                    active=(app, session_id) in self.active_sessions,
                )
            )

    def calls_dir(self, app: str, path: str) -> None:
        active_ids = {call for a, _, call in self.active_calls if a == app}
        active_days = {day for a, day, _ in self.active_calls if a == app}
        for entry in _list(path):
            end = day_end(entry.name, utc=self.utc)
            if end is None or not _is_dir(entry):
                self.other(entry.path)
                continue
            size = self.tree(entry.path)[0]
            active = entry.name in active_days or _holds_call(entry.path, active_ids)
            rel = f"{app}/calls/{entry.name}"
            self.call_days.append(CallDay(app, entry.name, rel, end, size, active))


def _holds_call(day_dir: str, call_names: Collection[str]) -> bool:
    """Whether a date folder holds a file of one of these calls (their day may differ
    from the one the caller has, e.g. after a restart)."""
    if not call_names:
        return False
    for bot in _list(day_dir):
        for entry in _list(bot.path) if _is_dir(bot) else []:
            match = _CALL_RE.fullmatch(entry.name)
            if match is not None and match.group(1) in call_names:
                return True
    return False


def scan(
    root: Path,
    *,
    active_runs: Iterable[tuple[str, str]] = (),
    active_sessions: Iterable[tuple[str, str]] = (),
    active_calls: Iterable[tuple[str, str, str]] = (),
    utc: bool = False,
) -> Listing:
    """Walk the tree once and describe what retention may delete.

    Args:
        root: the log root; a missing root is an empty listing.
        active_runs: (app, run_id) of the runs the registry holds open.
        active_sessions: (app, session_id) of live sessions.
        active_calls: (app, day, call_id) of calls in progress; their date folder and
            any folder holding their file stay.
        utc: `[layout] utc`, the time zone of call date folders.

    Ids are raw, as producers send them; they are mapped to file names here. A run whose
    metadata has no `end_time` is active as well, so a run opened after the caller took
    its snapshot is safe. Sizes are apparent sizes of files and links.
    """
    state = _Scan(
        root=str(root),
        active_runs={(safe_name(a), safe_name(r)) for a, r in active_runs},
        active_sessions={(safe_name(a), safe_name(s)) for a, s in active_sessions},
        active_calls={(safe_name(a), d, safe_name(c)) for a, d, c in active_calls},
        utc=utc,
    )
    return state.walk()
