"""What the control socket reads: listings, a run, event queries and tail backlogs.

Blocking: each call opens its own read-only connection to ``index.sqlite3`` (WAL lets
readers run beside the writer; see `ReadOnlyIndex`, which never needs the disk to have
room) and reads log files; the control server runs it in a worker thread, never on the
event loop. Bad requests become `ControlError`s.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from logd.control import requests as control
from logd.control.requests import ControlError, Request
from logd.index.names import safe_name
from logd.index.reader import ReadOnlyIndex
from logd.index.store import RegistryStore

__all__ = ["disk_bytes", "query"]

TAIL_READ_BYTES = 1024 * 1024


def query(root: Path, req: Request, utc: bool) -> Any:
    """The result of a read-only request: runs, run, sessions, calls, events, tail backlog.

    Raises:
        ControlError: a bad argument, nothing by that id, or an index that cannot be read.
    """
    try:
        return _query(root, req, utc)
    except sqlite3.Error as exc:
        raise ControlError("index-unreadable", f"index.sqlite3: {exc}") from exc


def _query(root: Path, req: Request, utc: bool) -> Any:
    args = req.args
    with ReadOnlyIndex(root) as index:
        if index.conn is None:  # no index yet: nothing was written
            if req.command == "run":
                raise ControlError("not-found", f"no run {args['run_id']!r}")
            return []
        if req.command == "events":
            try:
                return index.events.query(
                    **control.event_filters(args), limit=args.get("limit", 1000)
                )
            except ValueError as exc:
                raise ControlError("bad-argument", str(exc)) from exc
        return _registry_query(root, index, req, utc)


def _registry_query(root: Path, index: ReadOnlyIndex, req: Request, utc: bool) -> Any:
    args = req.args
    store = index.registry
    if req.command == "runs":
        return store.list_runs(
            app=args.get("app"), active=args.get("active"), limit=args.get("limit")
        )
    if req.command == "run":
        return _run(root, store, args["run_id"], args.get("app"))
    if req.command == "sessions":
        return store.list_sessions(
            app=args.get("app"), active=args.get("active"), limit=args.get("limit")
        )
    if req.command == "calls":
        return store.list_calls(
            app=args.get("app"),
            day=args.get("date"),
            bot_id=args.get("bot"),
            active=args.get("active"),
            limit=args.get("limit"),
        )
    assert req.command == "tail"
    return _backlog(root, index, args, utc)


def _run(root: Path, store: RegistryStore, run_id: str, app: str | None) -> dict[str, Any]:
    if run_id == "current":
        run_id = _current_run(root, store, app)
    row = store.get_run(app, run_id)
    if row is None:
        where = f" of app {app!r}" if app else ""
        raise ControlError("not-found", f"no run {run_id!r}{where}")
    return row


def _current_run(root: Path, store: RegistryStore, app: str | None) -> str:
    if app is not None:
        try:
            text = (root / safe_name(app) / "runs" / "current.txt").read_text(encoding="utf-8")
            return text.strip()
        except OSError:
            raise ControlError("not-found", f"app {app!r} has no runs") from None
    newest = store.list_runs(limit=1)
    if not newest:
        raise ControlError("not-found", "there are no runs yet")
    return str(newest[0]["run_id"])


def _backlog(root: Path, index: ReadOnlyIndex, args: dict[str, Any], utc: bool) -> list[Any]:
    n = args.get("n", 10)
    app = args.get("app")
    store = index.registry
    if args.get("events"):
        rows = index.events.query(
            app=app,
            type_pattern=args["events"],
            session_id=args.get("session"),
            run_id=args.get("run"),
            call_id=args.get("call"),
            limit=n,
        )
        return [_event_item(row) for row in rows]
    if args.get("call"):
        calls = store.list_calls(app=app)
        call = next((c for c in calls if c["call_id"] == args["call"]), None)
        if call is None:
            raise ControlError("not-found", f"no call {args['call']!r}")
        base = {"app": call["app"], "run_id": call["run_id"], "call_id": call["call_id"]}
        return control.items_from_lines(
            _tail_lines(root / call["path"], n), utc=utc, n=n, base=base
        )
    if args.get("session"):
        sessions = store.list_sessions(app=app)
        session = next((s for s in sessions if s["session_id"] == args["session"]), None)
        if session is None:
            raise ControlError("not-found", f"no session {args['session']!r}")
        return [_session_item(line) for line in _tail_lines(root / session["path"], n)]
    if args.get("run"):
        run = _run(root, store, args["run"], app)
        runs = [run]
    else:
        runs = [r for r in store.list_runs(app=app, limit=None if app else 50) if r["active"]]
        runs = runs or store.list_runs(app=app, limit=1)
    items: list[dict[str, Any]] = []
    for run in runs:
        base = {"app": run["app"], "run_id": run["run_id"]}
        lines = _tail_lines(root / str(run["path"]) / "main.log", n)
        items += control.items_from_lines(lines, utc=utc, n=n, base=base)
    items.sort(key=lambda item: item["time"])
    return items[-n:] if n else []


def _event_item(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "time": row["ts"],
        "app": row["app"],
        "run_id": row["run_id"],
        "session_id": row["session_id"],
        "call_id": row["call_id"],
        "event_type": row["event_type"],
        "level": "INFO",
        "logger": row["source"],
        "msg": row["message"],
        "line": row["raw_line"],
    }


def _session_item(line: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except ValueError:
        return {"line": line}
    if not isinstance(obj, dict):
        return {"line": line}
    session = obj.get("session_id") or "in-progress"
    text = f"[{session}] - {obj.get('time')} - {obj.get('logger')} - {obj.get('level')} - "
    return {**obj, "line": text + str(obj.get("msg", ""))}


def _tail_lines(path: Path, n: int) -> list[str]:
    """The last lines of a file holding at least `n` records (more when lines continue)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = max(0, size - TAIL_READ_BYTES)
            handle.seek(start)
            data = handle.read()
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if start > 0:
        lines = lines[1:]
    return lines[-(n * 50 + 1000) :]


def disk_bytes(root: Path) -> int:
    """Bytes allocated under `root`, links not followed; unreadable entries count as 0."""
    total = 0
    stack = [os.fspath(root)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                continue
    return total
