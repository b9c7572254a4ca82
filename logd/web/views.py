"""What each `logd web` page shows, as plain data: the ``/api`` replies, and what the
HTML pages render. Synchronous (called in worker threads); reads only through `data`."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from logd.control.requests import ControlError, event_filters
from logd.web.data import (
    BadRequest,
    Gone,
    NotFound,
    OpenFile,
    ReadOnlyIndex,
    WebError,
    app_summaries,
    call_instances,
    call_row,
    error_events,
    list_dir_files,
    open_under_root,
    run_row,
    session_row,
)
from logd.web.data import run_info as _run_info
from logd.web.logview import (
    Kind,
    Span,
    gunzip,
    level_number,
    merge_timeline,
    read_page,
)
from logd.web.parts import ChainSource, Part, families, gzip_size
from logd.web.timespan import offset_until, record_epoch, scan_times
from logd.web.volume import bucket, level_class

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


HISTOGRAM_BYTES = 4 * 1024 * 1024


def _part(handle: OpenFile, name: str) -> Part:
    if not name.endswith(".gz"):
        return Part(name, handle.size, lambda: handle)
    size = gzip_size(handle.pread(4, max(handle.size - 4, 0)))
    return Part(name, size, lambda: gunzip(handle))


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
    since: float | None = None,
    until: float | None = None,
    utc: bool = False,
    chart: bool = False,
) -> dict[str, Any]:
    """One page of a file and its rotated parts read as one (`parts.ChainSource`), the
    folder's files that may be shown, and (with `chart`) the records' volume over time.

    ``file`` names a family (``main.log``: every part of it) or one part (``main.log.1.gz``).
    """
    files = [f for f in list_dir_files(root, folder) if wanted(str(f["name"]))]
    names = [str(f["name"]) for f in files]
    groups = families(names)
    if file is None:
        name = default if default in groups or not groups else next(iter(groups))
    else:
        name = file
    page: dict[str, Any] = {
        "file": name,
        "files": files,
        "families": [{"name": k, "parts": v} for k, v in groups.items()],
    }
    chosen = groups.get(name) or ([name] if name in names else [])
    if not chosen:
        if file is not None:
            raise NotFound(f"there is no file {file!r} here")
        return {**page, "size": 0, "before": 0, "older": None, "records": [], "missing": True}
    page["parts"] = chosen

    def epoch(fields: dict[str, Any]) -> float | None:
        return record_epoch(fields, kind, utc)

    span = Span(since, until, epoch) if since is not None or until is not None else None
    with ExitStack() as stack:
        opened = []
        for n in chosen:
            try:
                opened.append(_part(stack.enter_context(open_under_root(root, f"{folder}/{n}")), n))
            except Gone:
                # Rotated away (renamed, compressed) since the listing: the rest still reads.
                if len(chosen) == 1:
                    raise
        source = ChainSource(opened)
        try:
            start = before
            if until is not None and before is None:
                start = offset_until(source, kind, epoch, until)
            lines = read_page(
                source, kind, before=start, min_level=level_number(level), text=q, span=span
            )
            if chart:
                points, complete = scan_times(source, kind, epoch, HISTOGRAM_BYTES)
                page["volume"] = _volume(points, complete)
        except ValueError as exc:
            raise TooLarge(f"{name}: {exc}; read it with zcat") from None
    return {**page, **lines}


def _volume(points: list[tuple[float, int]], complete: bool) -> dict[str, Any] | None:
    found = bucket((t, level_class(n)) for t, n in points)
    if found is None:
        return None
    return {
        "start": found.start,
        "step_s": found.step,
        "counts": [dict(c) for c in found.counts],
        "complete": complete,
    }


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
    root: Path,
    *,
    app: str | None,
    active: bool | None,
    limit: int | None,
    with_errors: bool = False,
) -> list[dict[str, Any]]:
    """`logd-ctl sessions --json`; `with_errors` adds ``errors``, its ``error:*`` events."""
    with ReadOnlyIndex(root) as index:
        if not _listing(index, "sessions"):
            return []
        rows = index.registry.list_sessions(app=app, active=active, limit=limit)
        if not with_errors:
            return rows
        errors = error_events(index, ("app", "session_id"), app=app)
    return [{**row, "errors": errors.get((row["app"], row["session_id"]), 0)} for row in rows]


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
    """A session, its log, and how many ``error:*`` events it has."""
    with ReadOnlyIndex(root) as index:
        row = session_row(index, app, session_id)
        errors = error_events(index, ("app",), app=app, session_id=session_id)
    page = {"session": row, "log": _file_log(row, root, "session", **log)}
    return page | {"errors": errors.get((app,), 0)}


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
    call: str | None = None,
) -> list[dict[str, Any]]:
    """`logd-ctl calls --json`; with ``call``, every call with that id."""
    with ReadOnlyIndex(root) as index:
        if not _listing(index, "calls"):
            return []
        if call is not None:
            rows = call_instances(index, app, call)
            return [
                r
                for r in rows
                if (date is None or r["day"] == date)
                and (bot is None or r["bot_id"] == bot)
                and (active is None or r["active"] == active)
            ][:limit]
        return index.registry.list_calls(app=app, day=date, bot_id=bot, active=active, limit=limit)


def call(root: Path, app: str, day: str, call_id: str) -> dict[str, Any]:
    with ReadOnlyIndex(root) as index:
        return call_row(index, app, day, call_id)


def call_log(root: Path, app: str, day: str, call_id: str, **log: Any) -> dict[str, Any]:
    row = call(root, app, day, call_id)
    return {"app": app, "day": day, "call_id": call_id, **_file_log(row, root, "call", **log)}


def call_page(root: Path, app: str, day: str, call_id: str, **log: Any) -> dict[str, Any]:
    """A call, its log, and every other call that used the same id."""
    with ReadOnlyIndex(root) as index:
        row = call_row(index, app, day, call_id)
        instances = call_instances(index, app, call_id)
    return {"call": row, "log": _file_log(row, root, "call", **log), "instances": instances}


APP_VOLUME_RUNS = 20


def app_volume(root: Path, runs: list[dict[str, Any]], utc: bool) -> dict[str, Any] | None:
    """Records over time of an app's newest runs (their main logs, newest parts first,
    `HISTOGRAM_BYTES` in all): the chart above the app's runs."""
    points: list[tuple[float, int]] = []
    budget = HISTOGRAM_BYTES
    complete = True
    for row in runs[:APP_VOLUME_RUNS]:
        if budget <= 0:
            complete = False
            break
        names = [str(f["name"]) for f in list_dir_files(root, row["path"])]
        for name in reversed(families(names).get("main.log", [])):
            if budget <= 0:
                complete = False
                break
            try:
                with open_under_root(root, f"{row['path']}/{name}") as handle:
                    part = _part(handle, name)
                    found, whole = scan_times(
                        part.source(), "run", lambda f: record_epoch(f, "run", utc), budget
                    )
                    budget -= part.size
            except (WebError, ValueError):
                continue
            points += found
            complete = complete and whole
    if len(runs) > APP_VOLUME_RUNS:
        complete = False
    return _volume(points, complete)


def events(
    root: Path, query: dict[str, str | None], bounds: dict[str, str | None], limit: int | None
) -> list[dict[str, Any]]:
    """`logd-ctl events --json`: ``bounds`` are ``since``/``until`` already parsed."""
    with ReadOnlyIndex(root) as index:
        if not index.has_table("events"):
            return []
        try:
            filters = event_filters({**query, **bounds})
        except ControlError as exc:  # a level below ERROR: the index keeps no such records
            raise BadRequest(exc.message) from None
        try:
            return index.events.query(**filters, limit=1000 if limit is None else limit)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None


DAEMON_APP = "logd"  # `write.timeline.APP`: the daemon files its own facts as this app
DAEMON_TIMELINE = 100


def daemon_timeline(root: Path, limit: int = DAEMON_TIMELINE) -> list[dict[str, Any]]:
    """The daemon's own events (start, stop, reload, rotation, disk, cleanup, I/O
    errors), newest first: what the status page shows, even with the daemon down."""
    with ReadOnlyIndex(root) as index:
        if not index.has_table("events"):
            return []
        return list(reversed(index.events.query(app=DAEMON_APP, limit=limit)))
