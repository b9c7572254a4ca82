"""What each `logd web` page shows, as plain data: the ``/api`` replies, and what the
HTML pages render. Synchronous (called in worker threads); reads only through `data`."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from logd.control.requests import event_filters
from logd.web.data import (
    BadRequest,
    NotFound,
    ReadOnlyIndex,
    WebError,
    app_summaries,
    call_row,
    list_dir_files,
    open_under_root,
    run_row,
    session_row,
)
from logd.web.data import run_info as _run_info
from logd.web.logview import Kind, Source, gunzip, level_number, merge_timeline, read_page

TIMELINE_EVENTS = 5000
RELATED_SCAN = 2000
RELATED_SHOWN = 200


class TooLarge(WebError):
    status = 413


def apps(root: Path) -> list[dict[str, Any]]:
    with ReadOnlyIndex(root) as index:
        return app_summaries(index)


def run_info(root: Path, app: str | None) -> dict[str, Any]:
    with ReadOnlyIndex(root) as index:
        return _run_info(root, index, app)


def _listing(index: ReadOnlyIndex, table: str) -> bool:
    return index.has_table(table)


def runs(
    root: Path, *, app: str | None, active: bool | None, limit: int | None
) -> list[dict[str, Any]]:
    """`logd-ctl runs --json`."""
    with ReadOnlyIndex(root) as index:
        if not _listing(index, "runs"):
            return []
        return index.registry.list_runs(app=app, active=active, limit=limit)


def run(root: Path, app: str, run_id: str) -> dict[str, Any]:
    """`logd-ctl run RUN_ID --app APP --json` (``current`` works too)."""
    with ReadOnlyIndex(root) as index:
        return run_row(root, index, app, run_id)


def _read_log(
    root: Path,
    folder: str,
    wanted: Callable[[str], bool],
    default: str,
    kind: Kind,
    *,
    file: str | None,
    level: str | None,
    q: str | None,
    before: int | None,
) -> dict[str, Any]:
    """One page of one file of a folder, and the folder's files that may be shown."""
    files = [f for f in list_dir_files(root, folder) if wanted(str(f["name"]))]
    names = [str(f["name"]) for f in files]
    name = file or (default if default in names or not names else names[0])
    page: dict[str, Any] = {"file": name, "files": files}
    if name not in names:
        if file is not None:
            raise NotFound(f"there is no file {file!r} here")
        return {**page, "size": 0, "before": 0, "older": None, "records": [], "missing": True}
    with open_under_root(root, f"{folder}/{name}") as handle:
        source: Source = handle
        if name.endswith(".gz"):
            try:
                source = gunzip(handle)
            except ValueError as exc:
                raise TooLarge(f"{name}: {exc}; read it with zcat") from None
        lines = read_page(source, kind, before=before, min_level=level_number(level), text=q)
    return {**page, **lines}


def _is_run_file(name: str) -> bool:
    return name != "metadata.json" and ".log" in name and not name.startswith(".")


def _rotations_of(base: str) -> Callable[[str], bool]:
    pattern = re.compile(re.escape(base) + r"(?:\.[0-9]+)?(?:\.gz)?")
    return lambda name: pattern.fullmatch(name) is not None


def run_log(root: Path, app: str, run_id: str, **log: Any) -> dict[str, Any]:
    with ReadOnlyIndex(root) as index:
        row = run_row(root, index, app, run_id)
    page = _read_log(root, row["path"], _is_run_file, "main.log", "run", **log)
    return {"app": row["app"], "run_id": row["run_id"], **page}


def run_page(root: Path, app: str, run_id: str, **log: Any) -> dict[str, Any]:
    """A run's metadata, its log page, and the sessions and calls it touched."""
    with ReadOnlyIndex(root) as index:
        row = run_row(root, index, app, run_id)
        sessions = [
            s
            for s in index.registry.list_sessions(app=row["app"], limit=RELATED_SCAN)
            if row["run_id"] in (s.get("runs") or [])
        ][:RELATED_SHOWN]
        calls = [
            c
            for c in index.registry.list_calls(app=row["app"], limit=RELATED_SCAN)
            if c.get("run_id") == row["run_id"]
        ][:RELATED_SHOWN]
    page = _read_log(root, row["path"], _is_run_file, "main.log", "run", **log)
    return {"run": row, "log": page, "sessions": sessions, "calls": calls}


def sessions(
    root: Path, *, app: str | None, active: bool | None, limit: int | None
) -> list[dict[str, Any]]:
    """`logd-ctl sessions --json`."""
    with ReadOnlyIndex(root) as index:
        if not _listing(index, "sessions"):
            return []
        return index.registry.list_sessions(app=app, active=active, limit=limit)


def session(root: Path, app: str, session_id: str) -> dict[str, Any]:
    with ReadOnlyIndex(root) as index:
        return session_row(index, app, session_id)


def _file_log(row: dict[str, Any], root: Path, kind: Kind, **log: Any) -> dict[str, Any]:
    folder, _, base = str(row["path"]).rpartition("/")
    return _read_log(root, folder, _rotations_of(base), base, kind, **log)


def session_log(root: Path, app: str, session_id: str, **log: Any) -> dict[str, Any]:
    row = session(root, app, session_id)
    return {"app": app, "session_id": row["session_id"], **_file_log(row, root, "session", **log)}


def session_page(root: Path, app: str, session_id: str, **log: Any) -> dict[str, Any]:
    row = session(root, app, session_id)
    return {"session": row, "log": _file_log(row, root, "session", **log)}


def timeline(root: Path, app: str, session_id: str, *, before: int | None) -> dict[str, Any]:
    """A page of the session's records merged with its indexed events, by time.

    The events are those between the page's first and last record (open-ended at the
    file's start and end), so paging back through the file pages through both.
    """
    with ReadOnlyIndex(root) as index:
        row = session_row(index, app, session_id)
        log = _file_log(row, root, "session", file=None, level=None, q=None, before=before)
        times = [str(r["time"]) for r in log["records"] if r.get("time")]
        events: list[dict[str, Any]] = []
        if index.has_table("events"):
            events = index.events.query(
                app=app,
                session_id=session_id,
                since=times[0] if times and log["older"] is not None else None,
                until=times[-1] if times and before is not None else None,
                limit=TIMELINE_EVENTS,
            )
    return {
        "session": row,
        "size": log["size"],
        "before": log["before"],
        "older": log["older"],
        "entries": merge_timeline(log["records"], events),
    }


def calls(
    root: Path,
    *,
    app: str | None,
    date: str | None,
    bot: str | None,
    active: bool | None,
    limit: int | None,
) -> list[dict[str, Any]]:
    """`logd-ctl calls --json`."""
    with ReadOnlyIndex(root) as index:
        if not _listing(index, "calls"):
            return []
        return index.registry.list_calls(app=app, day=date, bot_id=bot, active=active, limit=limit)


def call(root: Path, app: str, day: str, call_id: str) -> dict[str, Any]:
    with ReadOnlyIndex(root) as index:
        return call_row(index, app, day, call_id)


def call_log(root: Path, app: str, day: str, call_id: str, **log: Any) -> dict[str, Any]:
    row = call(root, app, day, call_id)
    return {"app": app, "day": day, "call_id": call_id, **_file_log(row, root, "call", **log)}


def call_page(root: Path, app: str, day: str, call_id: str, **log: Any) -> dict[str, Any]:
    row = call(root, app, day, call_id)
    return {"call": row, "log": _file_log(row, root, "call", **log)}


def events(
    root: Path, query: dict[str, str | None], bounds: dict[str, str | None], limit: int | None
) -> list[dict[str, Any]]:
    """`logd-ctl events --json`: ``bounds`` are ``since``/``until`` already parsed."""
    with ReadOnlyIndex(root) as index:
        if not index.has_table("events"):
            return []
        try:
            filters = event_filters({**query, **bounds})
            return index.events.query(**filters, limit=1000 if limit is None else limit)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
