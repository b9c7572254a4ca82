"""The SQLite ``events`` index: one row per canonical event line (``eventline.py``).

Records at ERROR and above that are not events get a row too (``event_type`` ``""``),
so errors can be listed across runs without a taxonomy for them (#16 item 11). Listings
show them only when asked for a level (``min_levelno``); ``count`` counts events.

:class:`EventIndex` is a synchronous SQLite edge; the daemon drives it from one worker
thread at a time, never from the event loop.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from logd.index.eventline import EventRow
from logd.index.levels import ERROR_LEVELNO, level_name

__all__ = ["EventIndex", "EventRow", "decorate", "type_glob"]


_COLUMNS = (
    "ts",
    "event_type",
    "source",
    "message",
    "app",
    "run_id",
    "session_id",
    "call_id",
    "kv_json",
    "raw_line",
    "levelno",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    event_type TEXT NOT NULL,
    source TEXT NOT NULL,
    message TEXT NOT NULL,
    app TEXT NOT NULL,
    run_id TEXT,
    session_id TEXT,
    call_id TEXT,
    kv_json TEXT,
    raw_line TEXT NOT NULL,
    levelno INTEGER
);
CREATE INDEX IF NOT EXISTS idx_events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS idx_events_type_ts ON events (event_type, ts);
CREATE INDEX IF NOT EXISTS idx_events_session_ts ON events (session_id, ts);
CREATE INDEX IF NOT EXISTS idx_events_app_ts ON events (app, ts);
"""

_INSERT = f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"
_GLOB_SPECIAL_RE = re.compile(r"[\[?]")


def _glob_literal(text: str) -> str:
    # In GLOB, "[x]" matches x literally; "]" alone and "*" (handled by the caller) are
    # the only other specials.
    return _GLOB_SPECIAL_RE.sub(lambda m: f"[{m.group()}]", text)


def type_glob(pattern: str) -> str:
    """An event type pattern with `*` wildcards (`llm:*`) as an SQLite GLOB pattern."""
    return "*".join(_glob_literal(p) for p in pattern.split("*"))


def _iso_bound(value: str, name: str) -> str:
    """Normalise an ISO time to the index's own format so string comparison is exact."""
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{name}: not an ISO 8601 time: {value!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T"
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond // 1000:03d}Z"
    )


def _build_query(
    *,
    app: str | None,
    type_pattern: str | None,
    since: str | None,
    until: str | None,
    session_id: str | None,
    run_id: str | None,
    call_id: str | None,
    limit: int,
    min_levelno: int | None = None,
) -> tuple[str, list[Any]]:
    """SQL and parameters for :meth:`EventIndex.query` (values are never spliced in)."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("app", app),
        ("session_id", session_id),
        ("run_id", run_id),
        ("call_id", call_id),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if type_pattern is not None:
        if "*" not in type_pattern:
            where.append("event_type = ?")
            params.append(type_pattern)
        else:
            prefix = type_pattern.split("*", 1)[0]
            if prefix:
                # An explicit range lets SQLite seek idx_events_type_ts whatever
                # its LIKE/GLOB optimisation decides; GLOB then checks the rest.
                where.append("event_type >= ?")
                params.append(prefix)
                last = prefix[-1]
                # Code point order is UTF-8 byte order (SQLite's BINARY collation);
                # stop short of the surrogates, which cannot be bound.
                if ord(last) < 0xD7FF:
                    where.append("event_type < ?")
                    params.append(prefix[:-1] + chr(ord(last) + 1))
            where.append("event_type GLOB ?")
            params.append(type_glob(type_pattern))
    if min_levelno is not None:
        where.append("levelno >= ?")
        params.append(min_levelno)
    else:
        where.append("event_type != ''")  # records are listed only by level
    if since is not None:
        where.append("ts >= ?")
        params.append(_iso_bound(since, "since"))
    if until is not None:
        where.append("ts <= ?")
        params.append(_iso_bound(until, "until"))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    sql = (
        f"SELECT * FROM (SELECT id, {', '.join(_COLUMNS)} FROM events {clause} "
        "ORDER BY ts DESC, id DESC LIMIT ?) ORDER BY ts ASC, id ASC"
    )
    params.append(limit)
    return sql, params


def decorate(row: dict[str, Any]) -> dict[str, Any]:
    """A row as readers take it: ``kv`` decoded, ``level`` named, a record's type None."""
    row["kv"] = json.loads(row["kv_json"]) if row.get("kv_json") else {}
    if row.get("event_type") == "":
        row["event_type"] = None
    levelno = row.get("levelno")
    row["level"] = level_name(levelno) if isinstance(levelno, int) else None
    return row


def _add_levels(conn: sqlite3.Connection) -> None:
    """Give an index made before levels were kept its ``levelno`` column: error:runtime
    rows read ERROR, every other event INFO (what events were logged at by default)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    if "levelno" in columns:
        return
    conn.execute("BEGIN")
    try:
        conn.execute("ALTER TABLE events ADD COLUMN levelno INTEGER")
        conn.execute(
            "UPDATE events SET levelno = CASE WHEN event_type = 'error:runtime' THEN ? ELSE 20 END",
            (ERROR_LEVELNO,),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class EventIndex:
    """SQLite (WAL) ``events`` table in ``index.sqlite3``.

    Synchronous: the daemon calls it from ONE worker thread at a time, which is why the
    connection is opened with ``check_same_thread=False``.

    Resource handling: the instance owns its connection; call :meth:`close`.
    """

    def __init__(self, path: Path) -> None:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so one insert_many call
        # is exactly one transaction.
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            _add_levels(self._conn)
        except BaseException:
            self._conn.close()
            raise

    def insert_many(self, rows: Sequence[EventRow]) -> None:
        """Insert a batch in one transaction (all or nothing)."""
        if not rows:
            return
        params = [tuple(getattr(row, c) for c in _COLUMNS) for row in rows]
        self._conn.execute("BEGIN")
        try:
            self._conn.executemany(_INSERT, params)
            # COMMIT is where a full disk refuses (the WAL grows): it must roll back too.
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def insert_taken(self, rows: Sequence[EventRow]) -> int:
        """Insert what SQLite takes, one by one once a batch is refused (e.g. a lone
        surrogate in a rebuilt line); returns how many rows went in."""
        try:
            self.insert_many(rows)
            return len(rows)
        except (sqlite3.Error, UnicodeEncodeError):
            pass
        inserted = 0
        for row in rows:
            try:
                self.insert_many([row])
                inserted += 1
            except (sqlite3.Error, UnicodeEncodeError):
                continue
        return inserted

    def query(
        self,
        *,
        app: str | None = None,
        type_pattern: str | None = None,
        since: str | None = None,
        until: str | None = None,
        session_id: str | None = None,
        run_id: str | None = None,
        call_id: str | None = None,
        limit: int = 1000,
        min_levelno: int | None = None,
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` events matching every given filter, oldest first.

        Args:
            type_pattern: an event type, or one with ``*`` wildcards (``llm:*``).
            since, until: ISO 8601 times, both inclusive; a time without zone is UTC.
            min_levelno: only rows at this level or above, records that are not
                events included (their ``event_type`` is None).

        Returns:
            One dict per row with every column, plus ``kv``: ``kv_json`` decoded
            (``{}`` when there is none) and ``level``, the level's name.

        Raises:
            ValueError: ``limit`` is negative or a time is not ISO 8601.
        """
        sql, params = _build_query(
            app=app,
            type_pattern=type_pattern,
            since=since,
            until=until,
            session_id=session_id,
            run_id=run_id,
            call_id=call_id,
            limit=limit,
            min_levelno=min_levelno,
        )
        cursor = self._conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [decorate(dict(zip(names, values, strict=True))) for values in cursor]

    def delete_before(self, ts: str) -> int:
        """Delete events older than ``ts`` (ISO 8601), for retention; returns the count."""
        cursor = self._conn.execute("DELETE FROM events WHERE ts < ?", (_iso_bound(ts, "ts"),))
        return cursor.rowcount

    def count(self) -> int:
        """Number of events (the lines of the `events.log` files), records not counted."""
        (n,) = self._conn.execute("SELECT count(*) FROM events WHERE event_type != ''").fetchone()
        return int(n)

    def close(self) -> None:
        """Close the connection; idempotent."""
        self._conn.close()
