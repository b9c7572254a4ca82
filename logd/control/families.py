"""Which files a `tail` reads, found in the registry, and the index rows it needs.

Blocking: a read-only connection to ``index.sqlite3`` (WAL lets it read beside the
writer), used from worker threads by `backlog`. A family is a live log file and its
rotated copies; every record sits in exactly one family of the kind a tail reads: a
run's ``main.log`` (all but call-scoped records), a call's file, or a session's file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from logd.control.lines import EventRows
from logd.control.requests import ControlError
from logd.index.events import type_glob
from logd.index.names import safe_name

__all__ = ["Family", "TailIndex"]

PAGE = 500
_IDS = (
    ("session", "sessions", "session_id"),
    ("call", "calls", "call_id"),
    ("run", "runs", "run_id"),
)


@dataclass(frozen=True, slots=True)
class Family:
    """One file family and what every record in it shares (app, run, call...)."""

    form: str  # "run" | "call" | "session"
    path: str  # the live file, relative to the root
    base: Mapping[str, Any]
    last: str | None = None  # the newest record's time, for families that have ended


class TailIndex:
    """The registry and event rows a tail needs.

    Raises:
        ControlError: the index cannot be opened or read.

    Resource handling: owns its connection; `close()` it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        uri = f"file:{quote(str((root / 'index.sqlite3').absolute()))}?mode=ro"
        try:
            self.db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ControlError("failed", f"cannot read the index: {exc}") from None
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    def _rows(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise ControlError("failed", f"cannot read the index: {exc}") from None

    def current_run(self, app: str | None) -> str:
        """What `--run current` means: the app's current run, or the newest of all.

        Raises:
            ControlError: there is none.
        """
        if app is not None:
            try:
                text = (self.root / safe_name(app) / "runs" / "current.txt").read_text("utf-8")
            except OSError:
                raise ControlError("not-found", f"app {app!r} has no runs") from None
            return text.strip()
        rows = self._rows("SELECT run_id FROM runs ORDER BY start_ts DESC LIMIT 1", ())
        if not rows:
            raise ControlError("not-found", "there are no runs yet")
        return str(rows[0]["run_id"])

    def missing(self, args: Mapping[str, Any]) -> str | None:
        """`no session 'S'` (or run, call) for the first id in `args` not in the registry."""
        app = args.get("app")
        for what, table, column in _IDS:
            ident = args.get(what)
            if ident is None:
                continue
            sql = f"SELECT 1 FROM {table} WHERE {column} = ? AND (? IS NULL OR app = ?) LIMIT 1"
            if not self._rows(sql, (ident, app, app)):
                where = f" in app {app!r}" if app is not None else ""
                return f"no {what} {ident!r}{where}"
        return None

    def _families(self, table: str, where: Mapping[str, Any], ended: bool | None) -> list[Family]:
        clauses = [f"{column} = ?" for column, value in where.items() if value is not None]
        params = [value for value in where.values() if value is not None]
        if ended is not None:
            clauses.append("end_ts IS NOT NULL" if ended else "end_ts IS NULL")
        sql = f"SELECT * FROM {table}" + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
        return [_family(table, row) for row in self._rows(sql, params)]

    def growing(self, args: Mapping[str, Any]) -> list[Family]:
        """The families a tail reads that may still grow: all of a session, a call or a
        run (with its calls); without those filters, the runs and calls still open."""
        app, run, session, call = (args.get(k) for k in ("app", "run", "session", "call"))
        if session is not None:
            return self._families("sessions", {"app": app, "session_id": session}, None)
        if call is not None:
            return self._families("calls", {"app": app, "run_id": run, "call_id": call}, None)
        if run is not None:
            found = self._families("runs", {"app": app, "run_id": run}, None)
            return found + self._families("calls", {"app": app, "run_id": run}, None)
        found = self._families("runs", {"app": app}, False)
        return found + self._families("calls", {"app": app}, False)

    def ended(self, app: str | None, since: str | None) -> Iterator[Family]:
        """Ended runs and calls (ended at `since` or later), the most recently ended first."""
        pages = {table: 0 for table in ("runs", "calls")}
        queues: dict[str, list[Family]] = {"runs": [], "calls": []}
        while True:
            for table, queue in queues.items():
                if not queue and pages[table] >= 0:
                    sql = (
                        f"SELECT * FROM {table} WHERE end_ts IS NOT NULL"
                        " AND (? IS NULL OR app = ?) AND (? IS NULL OR end_ts >= ?)"
                        " ORDER BY end_ts DESC LIMIT ? OFFSET ?"
                    )
                    rows = self._rows(sql, (app, app, since, since, PAGE, pages[table]))
                    queue.extend(_family(table, row) for row in rows)
                    pages[table] = pages[table] + PAGE if len(rows) == PAGE else -1
            heads = [(queue[0].last or "", table) for table, queue in queues.items() if queue]
            if not heads:
                return
            _, table = max(heads)
            yield queues[table].pop(0)

    def event_rows(self, family: Family, since: str, until: str) -> EventRows:
        """The index rows of a run's or a call's events between two times."""
        base = family.base
        sql = (
            "SELECT ts, event_type, source, message, kv_json, run_id, call_id FROM events"
            " WHERE app = ? AND ts >= ? AND ts <= ? AND run_id IS ? AND call_id IS ?"
            " AND event_type != ''"
        )
        call = base.get("call_id") if family.form == "call" else None
        found: dict[tuple[str, str | None, str | None], list[dict[str, Any]]] = {}
        for row in self._rows(sql, (base.get("app"), since, until, base.get("run_id"), call)):
            entry = dict(row)
            entry["kv"] = json.loads(entry["kv_json"]) if entry["kv_json"] else {}
            found.setdefault((entry["ts"], entry["run_id"], entry["call_id"]), []).append(entry)
        return found

    def last_event_id(self) -> int:
        (last,) = self._rows("SELECT coalesce(max(id), 0) FROM events", ())[0]
        return int(last)

    def events(
        self,
        args: Mapping[str, Any],
        *,
        last_id: int | None,
        before_id: int | None = None,
        oldest_first: bool = False,
        limit: int = PAGE,
    ) -> list[dict[str, Any]]:
        """`--events` rows matching `args` (ids up to `last_id`), newest first unless
        `oldest_first`; each with `kv` decoded."""
        clauses = ["(? IS NULL OR id <= ?)", "(? IS NULL OR id < ?)"]
        params: list[Any] = [last_id, last_id, before_id, before_id]
        for column, name in (
            ("app", "app"),
            ("run_id", "run"),
            ("session_id", "session"),
            ("call_id", "call"),
        ):
            if args.get(name) is not None:
                clauses.append(f"{column} = ?")
                params.append(args[name])
        clauses.append("event_type != '' AND event_type GLOB ?")
        params.append(type_glob(args["events"]))
        for bound, op in (("since", ">="), ("until", "<="), ("after", ">=")):
            if args.get(bound) is not None:
                clauses.append(f"ts {op} ?")
                params.append(args[bound])
        order = "id" if oldest_first else "id DESC"
        sql = f"SELECT * FROM events WHERE {' AND '.join(clauses)} ORDER BY {order} LIMIT ?"
        rows = [dict(row) for row in self._rows(sql, [*params, limit])]
        for row in rows:
            row["kv"] = json.loads(row["kv_json"]) if row.get("kv_json") else {}
        return rows


def _family(table: str, row: sqlite3.Row) -> Family:
    values = dict(row)
    last = values.get("end_ts")
    if table == "runs":
        base = {"app": values["app"], "run_id": values["run_id"]}
        return Family("run", f"{values['path']}/main.log", base, last)
    if table == "calls":
        base = {
            "app": values["app"],
            "run_id": values["run_id"],
            "call_id": values["call_id"],
            "bot_id": values["bot_id"],
            "session_id": values["session_id"],
        }
        return Family("call", str(values["path"]), base, last)
    base = {"app": values["app"], "session_id": values["session_id"]}
    return Family("session", str(values["path"]), base, None)
