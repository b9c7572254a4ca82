"""Retention's I/O edge: list the tree, delete what `policy` decided, gzip rotated files.

Synchronous and blocking: the daemon calls it in a worker thread, never on the event
loop. It never follows a symlink and refuses any path that would leave the root; the
decisions themselves live in `policy`, which sees only the `Listing` built here.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import shutil
import stat
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from logd.config import Retention
from logd.policy import (
    Archive,
    CallDay,
    Deletion,
    Listing,
    RejectedDay,
    RunEntry,
    SessionEntry,
    UnitKind,
    decide_cleanup,
    utc_day_end,
)
from logd.routing import safe_name

__all__ = ["CleanupReport", "apply", "compress_file", "day_end", "run_cleanup", "scan"]

REJECTED_DIR = "_rejected"
_DAY = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_DAY_RE = re.compile(_DAY)
_SESSION_RE = re.compile(r"session_(.+)\.jsonl(?:\.[0-9]+)?(?:\.gz)?")
_ARCHIVE_RE = re.compile(rf"events\.log\.({_DAY})(?:\.[0-9]+)?(?:\.gz)?")
_REJECTED_RE = re.compile(rf"({_DAY})\.jsonl")
_CALL_RE = re.compile(r"call_(.+)\.log(?:\.[0-9]+)?(?:\.gz)?")
_COPY_CHUNK = 1024 * 1024
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class CleanupReport:
    """What one cleanup did (or, with `dry_run`, would do); `deleted` is relative to root.

    `deletions` are the policy's units actually removed (or planned), so the caller can
    drop the index rows that describe them; `errors` are one line per failed path.
    """

    dry_run: bool
    deleted: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    errors: list[str] = field(default_factory=list)
    deletions: list[Deletion] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The `logd-ctl cleanup --json` object of SPEC §9."""
        return {"dry_run": self.dry_run, "deleted": self.deleted, "freed_bytes": self.freed_bytes}


# --------------------------------------------------------------------------- scan


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


def _tree(path: str) -> tuple[int, float]:
    """Bytes of the files and links under `path` (or of `path` itself), and the newest
    mtime, without following symlinks. What vanishes meanwhile counts as nothing."""
    try:
        st = os.lstat(path)
        entries = list(os.scandir(path)) if stat.S_ISDIR(st.st_mode) else None
    except (FileNotFoundError, NotADirectoryError):
        return 0, 0.0
    if entries is None:
        return st.st_size, st.st_mtime
    total, newest = 0, st.st_mtime
    for entry in entries:
        size, mtime = _tree(entry.path)
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

    def other(self, path: str) -> None:
        self.other_bytes += _tree(path)[0]

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
        )

    def rejected_dir(self, path: str) -> None:
        for entry in _list(path):
            match = _REJECTED_RE.fullmatch(entry.name)
            end = utc_day_end(match.group(1)) if match else None
            if match is None or end is None or _is_dir(entry):
                self.other(entry.path)
                continue
            size = _tree(entry.path)[0]
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
                size = _tree(entry.path)[0]
                day = match.group(1)
                self.archives.append(Archive(app, f"{app}/{entry.name}", day, end, size))
            else:
                self.other(entry.path)

    def runs_dir(self, app: str, path: str) -> None:
        for entry in _list(path):
            if not _is_dir(entry) or entry.name.startswith("."):
                self.other(entry.path)  # current, current.txt, temp files
                continue
            size, newest = _tree(entry.path)
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
            size, mtime = _tree(entry.path)
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
            size = _tree(entry.path)[0]
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


# --------------------------------------------------------------------------- apply


def _inside(root_real: Path, rel: str) -> Path | None:
    """The full path for `rel` if it cannot leave the root, else None. The last part may
    be a symlink (it is unlinked, not followed); every folder above it must resolve
    inside the root."""
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or any(p in ("", ".", "..") for p in parts):
        return None
    full = root_real.joinpath(*parts)
    if not full.parent.resolve().is_relative_to(root_real):
        return None
    return full


def _current_links(full: Path) -> list[Path]:
    """`runs/current` and `current.txt` when they name the run folder `full`: a link
    left dangling would point the next reader at nothing."""
    link = full.parent / "current"
    try:
        target = os.readlink(link)
    except OSError:
        return []
    if PurePosixPath(target.rstrip("/")).name != full.name:
        return []
    text = full.parent / "current.txt"
    return [link, text] if os.path.lexists(text) else [link]


def _remove(full: Path) -> None:
    st = os.lstat(full)
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(full)  # fd-based on Linux: links inside are unlinked, not followed
    else:
        os.unlink(full)


def _prune(root_real: Path, full: Path) -> None:
    """Remove folders left empty above `full`, keeping `<root>/<app>` itself."""
    rel = full.relative_to(root_real)
    keep_depth = 0 if rel.parts[0] == REJECTED_DIR else 1
    parent = full.parent
    while len(parent.relative_to(root_real).parts) > keep_depth:
        try:
            os.rmdir(parent)
        except OSError:  # not empty (or the writer just used it): stop here
            return
        parent = parent.parent


def apply(root: Path, deletions: Iterable[Deletion], *, dry_run: bool) -> CleanupReport:
    """Delete what `deletions` name (folders whole), then prune empty folders.

    With `dry_run` nothing is touched, and the report lists the same paths a real run
    would delete. Deleting the run `runs/current` points at also removes `current` and
    `current.txt`.

    Error handling: a path that cannot be deleted, or would leave the root, is reported
    in `errors` and skipped; one that is already gone is skipped silently.
    """
    root_real = root.resolve()
    deleted: list[str] = []
    done: list[Deletion] = []
    errors: list[str] = []
    freed = 0
    for deletion in deletions:
        full = _inside(root_real, deletion.path)
        if full is None:
            errors.append(f"{deletion.path}: refused, outside the root")
            continue
        if not os.path.lexists(full):
            continue
        extra = _current_links(full) if deletion.kind is UnitKind.RUN else []
        try:
            if not dry_run:
                _remove(full)
        except OSError as exc:
            errors.append(f"{deletion.path}: {exc.strerror or exc}")
            continue
        deleted.append(deletion.path)
        done.append(deletion)
        freed += deletion.bytes
        if not dry_run and extra and _current_links(full) != extra:
            extra = []  # the writer pointed `current` at a new run meanwhile
        for path in extra:
            with contextlib.suppress(FileNotFoundError):
                freed += os.lstat(path).st_size if path.name == "current.txt" else 0
                if not dry_run:
                    os.unlink(path)
            deleted.append(path.relative_to(root_real).as_posix())
        if not dry_run:
            _prune(root_real, full)
    return CleanupReport(dry_run, deleted, freed, errors, done)


def run_cleanup(
    root: Path,
    policy: Retention,
    now: float,
    *,
    active_runs: Iterable[tuple[str, str]] = (),
    active_sessions: Iterable[tuple[str, str]] = (),
    active_calls: Iterable[tuple[str, str, str]] = (),
    utc: bool = False,
    dry_run: bool = False,
) -> CleanupReport:
    """One cleanup pass: `scan`, `policy.decide_cleanup`, `apply`. Blocking."""
    listing = scan(
        root,
        active_runs=active_runs,
        active_sessions=active_sessions,
        active_calls=active_calls,
        utc=utc,
    )
    return apply(root, decide_cleanup(policy, listing, now), dry_run=dry_run)


# --------------------------------------------------------------------------- compression


def compress_file(path: Path) -> Path:
    """Gzip a rotated file to `path.gz` and remove the original; returns the new path.

    Written to a hidden temp file, synced, then renamed, so a crash leaves either the
    original or a complete `.gz` (then both, which `policy.backup_renames` resolves).
    The `.gz` keeps the original's mtime and mode, since retention ages sessions by
    mtime. Safe in a worker thread, provided the caller does not rotate this file's
    family again until it returns; if the original was replaced meanwhile, it is left
    alone and `path` is returned.
    """
    target = path.with_name(path.name + ".gz")
    tmp = path.with_name(f".{path.name}.gz.tmp")
    try:
        with open(path, "rb") as source:
            before = os.fstat(source.fileno())
            with open(tmp, "wb") as raw:
                with gzip.GzipFile(
                    filename=path.name, mode="wb", fileobj=raw, mtime=int(before.st_mtime)
                ) as packed:
                    shutil.copyfileobj(source, packed, _COPY_CHUNK)
                raw.flush()
                os.fsync(raw.fileno())
        os.chmod(tmp, stat.S_IMODE(before.st_mode))
        os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            os.unlink(tmp)
            return path
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.unlink(path)
    return target
