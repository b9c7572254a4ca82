"""The registry tables (runs, sessions, calls) in ``index.sqlite3``, beside ``events``.

A synchronous SQLite edge: the daemon's writer thread calls it one batch at a time;
readers (the control socket, ``logd web``) open their own :class:`RegistryStore` on the
same file, which WAL lets them do without blocking the writer. It holds no lifecycle
rules: those live in ``registry.py``, and this module only stores what it is given.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from logd.events import iso_utc_ms

__all__ = ["CallRow", "RegistryStore", "SessionEnd", "SessionRow", "iso_to_ns"]

SessionEnd = Literal["ended", "idle"]
BUSY_TIMEOUT_MS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    app TEXT NOT NULL,
    run_id TEXT NOT NULL,
    path TEXT NOT NULL,
    start_ts TEXT NOT NULL,
    end_ts TEXT,
    end_reason TEXT CHECK (end_reason IN ('shutdown', 'disconnected', 'lost')),
    start_time TEXT NOT NULL,
    end_time TEXT,
    pids_json TEXT NOT NULL,
    host TEXT,
    argv_json TEXT,
    client_version TEXT,
    records INTEGER NOT NULL,
    counts_json TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    files_json TEXT NOT NULL,
    dropped_by_client INTEGER NOT NULL,
    opened_by TEXT NOT NULL,
    peers_json TEXT NOT NULL,
    extra_json TEXT,
    PRIMARY KEY (app, run_id)
);
CREATE INDEX IF NOT EXISTS idx_runs_app_start ON runs (app, start_ts);
CREATE INDEX IF NOT EXISTS idx_runs_end ON runs (end_ts);
CREATE INDEX IF NOT EXISTS idx_runs_path ON runs (path);
CREATE TABLE IF NOT EXISTS sessions (
    app TEXT NOT NULL,
    session_id TEXT NOT NULL,
    runs_json TEXT NOT NULL,
    first_ts TEXT NOT NULL,
    last_ts TEXT NOT NULL,
    end_ts TEXT,
    end_reason TEXT CHECK (end_reason IN ('ended', 'idle')),
    records INTEGER NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (app, session_id)
);
CREATE INDEX IF NOT EXISTS idx_sessions_app_last ON sessions (app, last_ts);
CREATE INDEX IF NOT EXISTS idx_sessions_path ON sessions (path);
CREATE TABLE IF NOT EXISTS calls (
    app TEXT NOT NULL,
    call_id TEXT NOT NULL,
    bot_id TEXT NOT NULL,
    day TEXT NOT NULL,
    path TEXT NOT NULL,
    start_ts TEXT NOT NULL,
    end_ts TEXT,
    duration_ms REAL,
    records INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    run_id TEXT,
    session_id TEXT,
    PRIMARY KEY (app, call_id, day)
);
CREATE INDEX IF NOT EXISTS idx_calls_app_day ON calls (app, day);
CREATE INDEX IF NOT EXISTS idx_calls_bot ON calls (bot_id);
CREATE INDEX IF NOT EXISTS idx_calls_path ON calls (path);
"""


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_RUN_COLUMNS = _names(
    "app run_id path start_ts end_ts end_reason start_time end_time pids_json host argv_json"
    " client_version records counts_json bytes files_json dropped_by_client opened_by peers_json"
    " extra_json"
)
# Keys that have a column (or are derived on read, so a row read back can be written
# again); any other key rides in extra_json, so metadata can grow (e.g. opener_pid) and
# still come back whole without a schema change.
_RUN_KEYS = frozenset(
    _names(
        "run_id app path start_time end_time end_reason pids host argv client_version"
        " opened_by records counts bytes files dropped_by_client peers start_ts end_ts active"
    )
)
_SESSION_COLUMNS = _names(
    "app session_id runs_json first_ts last_ts end_ts end_reason records path"
)
_CALL_COLUMNS = _names(
    "app call_id bot_id day path start_ts end_ts duration_ms records errors run_id session_id"
)
# JSON columns and the key each is returned under.
_JSON_KEYS = {
    "pids_json": "pids",
    "argv_json": "argv",
    "counts_json": "counts",
    "files_json": "files",
    "peers_json": "peers",
    "runs_json": "runs",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _upsert_sql(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


_UPSERT_RUN = _upsert_sql("runs", _RUN_COLUMNS, ("app", "run_id"))
_UPSERT_SESSION = _upsert_sql("sessions", _SESSION_COLUMNS, ("app", "session_id"))
_UPSERT_CALL = _upsert_sql("calls", _CALL_COLUMNS, ("app", "call_id", "day"))


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One session as the registry stores it; times in ns since the epoch (UTC)."""

    app: str
    session_id: str
    runs: list[str]
    first_ns: int
    last_ns: int
    end_ns: int | None
    end_reason: SessionEnd | None
    records: int
    path: str


@dataclass(frozen=True, slots=True)
class CallRow:
    """One call as the registry stores it; ``day`` is its date folder, part of the key."""

    app: str
    call_id: str
    bot_id: str
    day: str
    path: str
    start_ns: int
    end_ns: int | None
    duration_ms: float | None
    records: int
    errors: int
    run_id: str | None
    session_id: str | None


def iso_to_ns(text: str) -> int:
    """ns since the epoch of an ISO 8601 time; one without a zone is taken as UTC.

    Raises:
        ValueError: not an ISO 8601 time.
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _run_params(meta: Mapping[str, Any]) -> tuple[Any, ...]:
    # metadata.json times carry their offset (local or UTC per layout); the index columns
    # are UTC `...Z` so they sort and compare as text, like events.ts.
    start_time = meta["start_time"]
    end_time = meta.get("end_time")
    return (
        meta["app"],
        meta["run_id"],
        meta["path"],
        iso_utc_ms(iso_to_ns(start_time)),
        iso_utc_ms(iso_to_ns(end_time)) if end_time is not None else None,
        meta.get("end_reason"),
        start_time,
        end_time,
        _dumps(list(meta.get("pids") or [])),
        meta.get("host"),
        _dumps(meta["argv"]) if meta.get("argv") is not None else None,
        meta.get("client_version"),
        int(meta.get("records", 0)),
        _dumps(dict(meta.get("counts") or {})),
        int(meta.get("bytes", 0)),
        _dumps(list(meta.get("files") or [])),
        int(meta.get("dropped_by_client", 0)),
        meta.get("opened_by", "client"),
        _dumps(list(meta.get("peers") or [])),
        _dumps(extra) if (extra := {k: v for k, v in meta.items() if k not in _RUN_KEYS}) else None,
    )


def _session_params(row: SessionRow) -> tuple[Any, ...]:
    return (
        row.app,
        row.session_id,
        _dumps(list(row.runs)),
        iso_utc_ms(row.first_ns),
        iso_utc_ms(row.last_ns),
        iso_utc_ms(row.end_ns) if row.end_ns is not None else None,
        row.end_reason,
        row.records,
        row.path,
    )


def _call_params(row: CallRow) -> tuple[Any, ...]:
    return (
        row.app,
        row.call_id,
        row.bot_id,
        row.day,
        row.path,
        iso_utc_ms(row.start_ns),
        iso_utc_ms(row.end_ns) if row.end_ns is not None else None,
        row.duration_ms,
        row.records,
        row.errors,
        row.run_id,
        row.session_id,
    )


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in zip(row.keys(), tuple(row), strict=True):
        name = _JSON_KEYS.get(key)
        if name is None:
            out[key] = value
        else:
            out[name] = json.loads(value) if value is not None else None
    extra = out.pop("extra_json", None)
    if extra is not None:
        out.update({k: v for k, v in json.loads(extra).items() if k not in out})
    out["active"] = out["end_ts"] is None
    return out


def _where(filters: Sequence[tuple[str, Any]], active: bool | None) -> tuple[str, list[Any]]:
    clauses = [f"{column} = ?" for column, value in filters if value is not None]
    params = [value for _, value in filters if value is not None]
    if active is not None:
        clauses.append("end_ts IS NULL" if active else "end_ts IS NOT NULL")
    return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params


def _limit(limit: int | None, params: list[Any]) -> str:
    if limit is None:
        return ""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    params.append(limit)
    return " LIMIT ?"


class RegistryStore:
    """Runs, sessions and calls tables in ``index.sqlite3`` (WAL).

    Opens its own connection to the file the :class:`~logd.events.EventIndex` uses, so
    the two are independent objects that share one database; each commits on its own.
    Synchronous, one thread at a time (``check_same_thread=False`` because that thread
    may be a worker thread, not the one that opened it). A reader in another thread
    opens its own instance rather than sharing this one.

    Resource handling: the instance owns its connection; call :meth:`close`.
    """

    def __init__(self, path: Path) -> None:
        # isolation_level=None: we issue BEGIN/COMMIT so one write() is one transaction.
        self._conn = sqlite3.connect(
            path,
            check_same_thread=False,
            isolation_level=None,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        try:
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def _migrate(self) -> None:
        # Columns added after a table first shipped: ADD COLUMN keeps existing rows.
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(runs)")}
        if "extra_json" not in have:
            self._conn.execute("ALTER TABLE runs ADD COLUMN extra_json TEXT")

    # --- writes ------------------------------------------------------------------

    def upsert_runs(self, runs: Sequence[Mapping[str, Any]]) -> None:
        """Insert or replace runs, each a ``RunState.metadata()`` dict plus ``"path"``."""
        self.write(runs=runs)

    def upsert_sessions(self, rows: Sequence[SessionRow]) -> None:
        """Insert or replace sessions (the row is the whole state, not a delta)."""
        self.write(sessions=rows)

    def upsert_calls(self, rows: Sequence[CallRow]) -> None:
        """Insert or replace calls (the row is the whole state, not a delta)."""
        self.write(calls=rows)

    def write(
        self,
        *,
        runs: Sequence[Mapping[str, Any]] = (),
        sessions: Sequence[SessionRow] = (),
        calls: Sequence[CallRow] = (),
    ) -> None:
        """Upsert runs, sessions and calls in ONE transaction: all of them or none.

        Raises:
            KeyError: a run mapping lacks ``app``, ``run_id``, ``start_time`` or ``path``.
            ValueError: a time is not ISO 8601 or is out of range.
            sqlite3.Error: a row breaks the schema (e.g. an unknown ``end_reason``);
                the whole batch is rolled back.
        """
        run_params = [_run_params(meta) for meta in runs]
        session_params = [_session_params(row) for row in sessions]
        call_params = [_call_params(row) for row in calls]
        if not (run_params or session_params or call_params):
            return
        self._transaction(
            (_UPSERT_RUN, run_params),
            (_UPSERT_SESSION, session_params),
            (_UPSERT_CALL, call_params),
        )

    def delete_paths(self, paths: Collection[str]) -> int:
        """Forget rows whose file or folder cleanup deleted; returns how many went.

        A path matches a row with that exact ``path`` or one below it, so deleting a call
        date folder (``app/calls/2025-01-01``) drops every call in it.
        """
        if not paths:
            return 0
        # "/" + 1 is "0": [p + "/", p + "0") is exactly the paths below p, as an index range.
        params = [(p, p + "/", p + "0") for p in paths]
        removed = 0
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for table in ("runs", "sessions", "calls"):
                sql = f"DELETE FROM {table} WHERE path = ? OR (path >= ? AND path < ?)"
                for one in params:
                    removed += self._conn.execute(sql, one).rowcount
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return removed

    def _transaction(self, *steps: tuple[str, list[tuple[Any, ...]]]) -> None:
        # IMMEDIATE takes the write lock up front, so a concurrent writer makes us wait
        # (busy_timeout) instead of failing half-way through with SQLITE_BUSY.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in steps:
                if params:
                    self._conn.executemany(sql, params)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # --- reads -------------------------------------------------------------------

    def open_runs(self) -> list[dict[str, Any]]:
        """Runs with no end, oldest first: at start, those whose pids are gone are lost."""
        return self._select(
            "SELECT * FROM runs WHERE end_ts IS NULL ORDER BY start_ts, app, run_id", []
        )

    def list_runs(
        self, *, app: str | None = None, active: bool | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Runs, newest start first; each is its metadata dict plus path, ``*_ts``, active."""
        where, params = _where([("app", app)], active)
        order = " ORDER BY start_ts DESC, app, run_id DESC"
        return self._select(f"SELECT * FROM runs{where}{order}{_limit(limit, params)}", params)

    def get_run(self, app: str | None, run_id: str) -> dict[str, Any] | None:
        """One run; with ``app`` None, the newest run of that id in any app."""
        rows = self._select(
            "SELECT * FROM runs WHERE run_id = ? AND (? IS NULL OR app = ?)"
            " ORDER BY start_ts DESC LIMIT 1",
            [run_id, app, app],
        )
        return rows[0] if rows else None

    def list_sessions(
        self, *, app: str | None = None, active: bool | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Sessions, most recently active first."""
        where, params = _where([("app", app)], active)
        order = " ORDER BY last_ts DESC, app, session_id"
        sql = f"SELECT * FROM sessions{where}{order}{_limit(limit, params)}"
        return self._select(sql, params)

    def get_session(self, app: str, session_id: str) -> dict[str, Any] | None:
        """One session, e.g. to resume its counts after a daemon restart."""
        rows = self._select(
            "SELECT * FROM sessions WHERE app = ? AND session_id = ?", [app, session_id]
        )
        return rows[0] if rows else None

    def list_calls(
        self,
        *,
        app: str | None = None,
        day: str | None = None,
        bot_id: str | None = None,
        active: bool | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Calls, newest start first."""
        where, params = _where([("app", app), ("day", day), ("bot_id", bot_id)], active)
        order = " ORDER BY start_ts DESC, app, call_id"
        return self._select(f"SELECT * FROM calls{where}{order}{_limit(limit, params)}", params)

    def get_call(self, app: str, call_id: str, day: str | None = None) -> dict[str, Any] | None:
        """One call; without ``day``, the newest call of that id (ids may recur by day)."""
        rows = self._select(
            "SELECT * FROM calls WHERE app = ? AND call_id = ? AND (? IS NULL OR day = ?)"
            " ORDER BY start_ts DESC LIMIT 1",
            [app, call_id, day, day],
        )
        return rows[0] if rows else None

    def counts(self) -> dict[str, int]:
        """Rows per table, for ``status`` and tests."""
        return {
            table: int(self._conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("runs", "sessions", "calls")
        }

    def _select(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        return [_decode(row) for row in self._conn.execute(sql, params)]

    def close(self) -> None:
        """Close the connection; idempotent."""
        self._conn.close()
