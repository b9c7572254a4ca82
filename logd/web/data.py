"""Read-only queries for `logd web`: the registry and event index, and safe file access.

Synchronous; the web app calls these in worker threads. Nothing here writes: SQLite is
opened with ``mode=ro`` (plus ``immutable=1`` when no daemon holds the WAL open, so not
even a ``-shm`` file is created), and every file is reached through a registry row's
``path``, checked to stay under the root and opened with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from logd.index.names import safe_name
from logd.index.reader import ReadOnlyIndex
from logd.index.tables import decode_row

__all__ = [
    "MAX_ID_CHARS",
    "BadRequest",
    "Gone",
    "NotFound",
    "OpenFile",
    "ReadOnlyIndex",
    "WebError",
    "app_summaries",
    "call_instances",
    "call_row",
    "duration_s",
    "error_events",
    "list_dir_files",
    "open_under_root",
    "run_info",
    "run_row",
    "session_row",
]

MAX_ID_CHARS = 1024
# What `names.safe_name` can produce, joined by the layout's fixed prefixes
# (`session_`, `bot_`, `call_`): no separator, no leading dot, no NUL.
_PATH_PART_RE = re.compile(r"[A-Za-z0-9_%~:-][A-Za-z0-9._%~:-]*")


class WebError(Exception):
    """A request the viewer cannot answer; `status` is the HTTP status to reply with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(WebError):
    status = 400


class NotFound(WebError):
    status = 404


class Gone(WebError):
    """The registry knows it, but its file is missing or refused (e.g. a symlink)."""

    status = 404


# --- entities ----------------------------------------------------------------------


def check_id(value: str, what: str) -> str:
    """Refuse ids no registry row can have; everything else is only ever a query value."""
    if len(value) > MAX_ID_CHARS:
        raise BadRequest(f"{what} is longer than {MAX_ID_CHARS} characters")
    return value


def app_summaries(index: ReadOnlyIndex) -> list[dict[str, Any]]:
    """Each app with its run, session and call counts and its newest run."""
    if index.conn is None or not index.has_table("runs"):
        return []
    apps: dict[str, dict[str, Any]] = {}

    def entry(app: str) -> dict[str, Any]:
        return apps.setdefault(
            app,
            {"app": app, "runs": 0, "active_runs": 0, "newest_run": None, "newest_start": None},
        )

    for row in index.conn.execute(
        "SELECT app, count(*), sum(end_ts IS NULL), max(start_ts) FROM runs GROUP BY app"
    ):
        item = entry(row[0])
        item.update(runs=row[1], active_runs=row[2] or 0, newest_start=row[3])
    for table in ("sessions", "calls"):
        if not index.has_table(table):
            continue
        for row in index.conn.execute(f"SELECT app, count(*) FROM {table} GROUP BY app"):
            entry(row[0])[table] = row[1]
    errors = error_events(index, ("app",))
    for item in apps.values():
        item["errors"] = errors.get((item["app"],), 0)
        item.setdefault("sessions", 0)
        item.setdefault("calls", 0)
        newest = index.registry.list_runs(app=item["app"], limit=1)
        item["newest_run"] = newest[0]["run_id"] if newest else None
    return sorted(apps.values(), key=lambda a: str(a["app"]))


def error_events(
    index: ReadOnlyIndex, by: tuple[str, ...], **where: str | None
) -> dict[tuple[Any, ...], int]:
    """How many ``error:*`` events each app (or app and session...) has in the index.

    The type range ``error:`` to ``error;`` lets SQLite seek ``idx_events_type_ts``.
    """
    if index.conn is None or not index.has_table("events"):
        return {}
    columns = ", ".join(by)
    sql = f"SELECT {columns}, count(*) FROM events WHERE event_type >= ? AND event_type < ?"
    params: list[Any] = ["error:", "error;"]
    for column, value in where.items():
        if value is not None and column in ("app", "session_id", "call_id", "run_id"):
            sql += f" AND {column} = ?"
            params.append(value)
    out: dict[tuple[Any, ...], int] = {}
    for row in index.conn.execute(f"{sql} GROUP BY {columns}", params):
        values = tuple(row)
        out[values[:-1]] = int(values[-1])
    return out


def call_instances(index: ReadOnlyIndex, app: str | None, call_id: str) -> list[dict[str, Any]]:
    """Every call with this id (an id reused on several days is several calls), newest first."""
    if index.conn is None or not index.has_table("calls"):
        return []
    rows = index.conn.execute(
        "SELECT * FROM calls WHERE call_id = ? AND (? IS NULL OR app = ?) ORDER BY start_ts DESC",
        [check_id(call_id, "call id"), app, app],
    )
    return [decode_row(row) for row in rows]


def _require(index: ReadOnlyIndex, table: str) -> None:
    if not index.has_table(table):
        raise NotFound(f"there are no {table} yet")


def run_row(root: Path, index: ReadOnlyIndex, app: str | None, run_id: str) -> dict[str, Any]:
    """One run's metadata; ``current`` is the app's newest (its ``current.txt``)."""
    _require(index, "runs")
    if run_id == "current":
        run_id = _current_run_id(root, index, app)
    row = index.registry.get_run(app, check_id(run_id, "run id"))
    if row is None:
        where = f" of app {app!r}" if app else ""
        raise NotFound(f"no run {run_id!r}{where}")
    return row


def _current_run_id(root: Path, index: ReadOnlyIndex, app: str | None) -> str:
    if app is not None:
        # safe_name maps any app to one folder name below the root: never a path.
        try:
            with open_under_root(root, f"{safe_name(app)}/runs/current.txt") as handle:
                text = handle.read(4096).decode("utf-8", "replace").strip()
        except Gone:
            text = ""
        if text:
            return text
        newest = index.registry.list_runs(app=app, limit=1)
        if not newest:
            raise NotFound(f"app {app!r} has no runs")
        return str(newest[0]["run_id"])
    newest = index.registry.list_runs(limit=1)
    if not newest:
        raise NotFound("there are no runs yet")
    return str(newest[0]["run_id"])


def run_info(root: Path, index: ReadOnlyIndex, app: str | None) -> dict[str, Any]:
    """Seed 000's ``/api/run-info``: the current run's id, folder and metadata."""
    row = run_row(root, index, app, "current")
    return {
        "app": row["app"],
        "run_id": row["run_id"],
        "run_dir": os.fspath(root.absolute() / row["path"]),
        "active": row["active"],
        "metadata": row,
    }


def session_row(index: ReadOnlyIndex, app: str, session_id: str) -> dict[str, Any]:
    _require(index, "sessions")
    row = index.registry.get_session(app, check_id(session_id, "session id"))
    if row is None:
        raise NotFound(f"no session {session_id!r} of app {app!r}")
    return row


def call_row(index: ReadOnlyIndex, app: str, day: str, call_id: str) -> dict[str, Any]:
    _require(index, "calls")
    row = index.registry.get_call(app, check_id(call_id, "call id"), check_id(day, "day"))
    if row is None:
        raise NotFound(f"no call {call_id!r} of app {app!r} on {day!r}")
    return row


def duration_s(row: dict[str, Any], now: float, start: str = "start_ts") -> float | None:
    """Seconds from a row's start to its end (or to now while it is active)."""
    try:
        began = datetime.fromisoformat(str(row[start]).replace("Z", "+00:00"))
        end_ts = row.get("end_ts")
        ended = (
            datetime.fromisoformat(str(end_ts).replace("Z", "+00:00"))
            if end_ts
            else datetime.fromtimestamp(now, tz=UTC)
        )
    except (KeyError, ValueError):
        return None
    return max(0.0, (ended - began).total_seconds())


# --- files -------------------------------------------------------------------------


def _checked(root: Path, rel: str, *, directory: bool = False) -> Path:
    """``root / rel`` when every part is a name the layout writes and it stays in root."""
    parts = PurePosixPath(rel).parts
    if not parts or any(_PATH_PART_RE.fullmatch(p) is None for p in parts):
        raise Gone(f"refusing a path outside the log layout: {rel!r}")
    base = root.resolve()
    # The folders may be links inside the root; the last part is never followed
    # (open_under_root adds O_NOFOLLOW), so it is appended after resolving.
    resolved = (base / PurePosixPath(*parts[:-1])).resolve() / parts[-1]
    if directory:
        resolved = resolved.resolve()
    if not resolved.is_relative_to(base):
        raise Gone("refusing a path that leaves the log root")
    return resolved


class OpenFile:
    """An open regular file under the root: ``read(n)`` from the start, or ``pread``."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self._pos = 0

    def read(self, n: int) -> bytes:
        data = os.pread(self.fd, n, self._pos)
        self._pos += len(data)
        return data

    def pread(self, n: int, offset: int) -> bytes:
        return os.pread(self.fd, n, offset)


@contextmanager
def open_under_root(root: Path, rel: str) -> Iterator[OpenFile]:
    """Open a regular file below the root for reading, refusing links and non-files.

    Raises:
        Gone: not there, not a regular file, a symlink, or outside the root.
    """
    path = _checked(root, rel)
    # O_NONBLOCK: a FIFO planted in the tree must not hang the request on open().
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise Gone(f"cannot open {rel}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Gone(f"{rel} is not a regular file")
        yield OpenFile(fd, info.st_size)
    finally:
        os.close(fd)


def list_dir_files(root: Path, rel_dir: str) -> list[dict[str, Any]]:
    """Regular files (no symlinks) directly in a folder below the root, by name."""
    try:
        folder = _checked(root, rel_dir, directory=True)
        entries = list(os.scandir(folder))
    except (Gone, OSError):
        return []
    files = []
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False):
                size = entry.stat(follow_symlinks=False).st_size
                files.append({"name": entry.name, "size": size})
        except OSError:
            continue
    return sorted(files, key=lambda f: str(f["name"]))
