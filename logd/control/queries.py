"""What the control socket reads: listings, a run and event queries (`tail` is `backlog`).

Blocking: each call opens its own read-only connection to ``index.sqlite3`` (WAL lets
readers run beside the writer; see `ReadOnlyIndex`, which never needs the disk to have
room) and reads log files; the control server runs it in a worker thread, never on the
event loop. Bad requests become `ControlError`s.
"""

from __future__ import annotations

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


def query(root: Path, req: Request, utc: bool) -> Any:
    """The result of a read-only request: runs, run, sessions, calls, events.

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
            app_or_container=args.get("app"), active=args.get("active"), limit=args.get("limit")
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
    raise ControlError("bad-request", f"{req.command} is not a query")


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
