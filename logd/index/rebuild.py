"""Open ``index.sqlite3``, or rebuild it from the files when it is missing or corrupt.

The files are the record; the index is a cache of them. So a lost or damaged index
never stops the daemon: it moves a bad file aside and rebuilds what the tree holds
(``readback`` reads it). Runs once at start, before the writer exists.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, replace
from pathlib import Path

from logd.index.events import EventIndex
from logd.index.readback import Tally, app_dirs, read_app
from logd.index.store import RegistryStore

__all__ = ["INDEX_NAME", "RebuildReport", "open_or_rebuild", "rebuild"]

INDEX_NAME = "index.sqlite3"


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What a rebuild found; ``problems`` names unreadable files (at most 100)."""

    reason: str
    runs: int = 0
    sessions: int = 0
    calls: int = 0
    events: int = 0
    error_records: int = 0
    bad_lines: int = 0
    problems: tuple[str, ...] = ()
    moved_aside: tuple[str, ...] = ()


def rebuild(
    root: Path,
    store: RegistryStore,
    index: EventIndex,
    *,
    utc: bool = False,
    reason: str = "requested",
) -> RebuildReport:
    """Fill an EMPTY store and index from the tree under ``root`` (rows are not deduplicated).

    Args:
        utc: whether text-log times are UTC (``[layout] utc``); only used to date a
            call that has no ``call:start`` event.
        reason: why, for the report (``missing``, ``corrupt``, ``requested``).

    Error handling: unreadable files and lines are skipped and counted in the report, and
    one app's rows SQLite refuses do not cost the other apps: a rebuild never fails
    because of what it finds in the tree.
    """
    tally = Tally()
    for app_dir in app_dirs(root):
        runs, sessions, call_rows = read_app(root, app_dir, index, utc=utc, tally=tally)
        try:
            store.write(runs=runs, sessions=sessions, calls=call_rows)
        except (sqlite3.Error, ValueError, UnicodeEncodeError) as exc:
            tally.problem(app_dir, f"registry rows refused: {exc}")
            continue
        tally.runs += len(runs)
        tally.sessions += len(sessions)
        tally.calls += len(call_rows)
    return RebuildReport(
        reason=reason,
        runs=tally.runs,
        sessions=tally.sessions,
        calls=tally.calls,
        events=tally.events,
        error_records=tally.error_records,
        bad_lines=tally.bad_lines,
        problems=tuple(tally.problems),
    )


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    # Only damage justifies moving the file: "database is locked" or a permission error
    # is also a DatabaseError, and must not make us throw a good index away.
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _probe_corrupt(path: Path) -> bool:
    # Look read-only first: a read-write connection to a damaged file may checkpoint or
    # delete its WAL on close, and that WAL belongs with the copy we set aside.
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.DatabaseError as exc:
        return _is_corrupt(exc)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        return _is_corrupt(exc)
    finally:
        conn.close()
    return False


def _move_aside(path: Path, label: str, suffixes: tuple[str, ...]) -> tuple[str, ...]:
    """Rename `path` (+ `-wal`/`-shm`) to `<name>.<label>-<UTC time>`, keeping SQLite's pairs."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base, n = f"{path.name}.{label}-{stamp}", 1
    while any(path.with_name(base + s).exists() for s in ("", "-wal", "-shm")):
        base, n = f"{path.name}.{label}-{stamp}.{n}", n + 1
    moved = []
    for suffix in suffixes:
        source = path.with_name(path.name + suffix)
        if source.exists():
            target = path.with_name(base + suffix)
            os.replace(source, target)
            moved.append(str(target))
    return tuple(moved)


def _open(path: Path) -> tuple[RegistryStore, EventIndex]:
    store = RegistryStore(path)
    try:
        return store, EventIndex(path)
    except BaseException:
        store.close()
        raise


def open_or_rebuild(
    root: Path, *, utc: bool = False
) -> tuple[RegistryStore, EventIndex, RebuildReport | None]:
    """Open ``<root>/index.sqlite3``, rebuilding it when it is missing or corrupt.

    A corrupt file (with its ``-wal``/``-shm``) is renamed ``index.sqlite3.corrupt-<UTC
    time>`` and replaced by a rebuilt one; a missing file is rebuilt when the root holds
    app folders. Corruption is noticed when the file is opened (a bad header or schema),
    not by scanning every page, which would slow each start.

    Returns:
        The store, the index, and the report of a rebuild (None when none was needed).

    Raises:
        sqlite3.Error, OSError: the index cannot be opened for another reason (locked,
            no permission); the daemon cannot run without it, so this stops the start.

    Resource handling: the caller owns and closes the store and the index.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / INDEX_NAME
    reason: str | None = None
    moved: tuple[str, ...] = ()
    wal = path.with_name(path.name + "-wal")
    if path.exists() and path.stat().st_size == 0 and not wal.exists():
        path.unlink()  # created and never written (a crash at the first open): missing
    if not path.exists():
        # A WAL without its database must not be replayed into a new, unrelated file.
        moved = _move_aside(path, "stale", ("-wal", "-shm"))
        if app_dirs(root):
            reason = "missing"
    elif _probe_corrupt(path):
        moved = _move_aside(path, "corrupt", ("", "-wal", "-shm"))
        reason = "corrupt"
    try:
        store, index = _open(path)
    except sqlite3.DatabaseError as exc:
        if not _is_corrupt(exc):
            raise
        moved = _move_aside(path, "corrupt", ("", "-wal", "-shm"))
        store, index = _open(path)
        reason = "corrupt"
    if reason is None:
        return store, index, None
    try:
        report = rebuild(root, store, index, utc=utc, reason=reason)
    except BaseException:
        store.close()
        index.close()
        raise
    return store, index, replace(report, moved_aside=moved)
