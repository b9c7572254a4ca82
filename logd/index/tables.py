"""The registry tables (runs, sessions, calls) on paper: their schema, the row types, and
how a row becomes SQL parameters and comes back as a dict.

Pure: builds SQL text and values and never opens a connection (``store.py`` does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from logd.index.eventline import iso_utc_ms

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "SCHEMA",
    "UPSERT_CALL",
    "UPSERT_PRODUCER",
    "UPSERT_RUN",
    "UPSERT_SESSION",
    "CallRow",
    "SessionEnd",
    "SessionFields",
    "SessionRow",
    "call_params",
    "decode_row",
    "iso_to_ns",
    "limit_clause",
    "run_params",
    "session_params",
    "where_clause",
]

SessionEnd = Literal["ended", "idle"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending_batch (
    path TEXT PRIMARY KEY,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    files BLOB
);
CREATE TABLE IF NOT EXISTS producers (
    producer TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    seen_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_producers_seen ON producers (seen_ns);
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


UPSERT_RUN = _upsert_sql("runs", _RUN_COLUMNS, ("app", "run_id"))
UPSERT_SESSION = _upsert_sql("sessions", _SESSION_COLUMNS, ("app", "session_id"))
UPSERT_CALL = _upsert_sql("calls", _CALL_COLUMNS, ("app", "call_id", "day"))


class SessionFields(Protocol):
    """What a session row is written from: a `SessionRow`, or the registry's live
    `SessionState` itself (read at once, so no copy is needed: a batch with a thousand
    live sessions made a thousand rows only to write them)."""

    @property
    def app(self) -> str: ...
    @property
    def session_id(self) -> str: ...
    @property
    def runs(self) -> list[str]: ...
    @property
    def first_ns(self) -> int: ...
    @property
    def last_ns(self) -> int: ...
    @property
    def end_ns(self) -> int | None: ...
    @property
    def end_reason(self) -> SessionEnd | None: ...
    @property
    def records(self) -> int: ...
    @property
    def path(self) -> str: ...


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


def run_params(meta: Mapping[str, Any]) -> tuple[Any, ...]:
    """`UPSERT_RUN` values for a `RunState.metadata()` dict plus ``"path"``."""
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


def session_params(row: SessionFields) -> tuple[Any, ...]:
    """`UPSERT_SESSION` values."""
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


def call_params(row: CallRow) -> tuple[Any, ...]:
    """`UPSERT_CALL` values."""
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


def decode_row(row: sqlite3.Row) -> dict[str, Any]:
    """A row as a dict: JSON columns decoded, ``extra_json`` merged in, ``active`` added."""
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


def where_clause(filters: Sequence[tuple[str, Any]], active: bool | None) -> tuple[str, list[Any]]:
    """`` WHERE ...`` for the filters that are not None, and its parameters."""
    clauses = [f"{column} = ?" for column, value in filters if value is not None]
    params = [value for _, value in filters if value is not None]
    if active is not None:
        clauses.append("end_ts IS NULL" if active else "end_ts IS NOT NULL")
    return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params


def limit_clause(limit: int | None, params: list[Any]) -> str:
    """`` LIMIT ?`` (appending ``limit`` to ``params``), or nothing for None."""
    if limit is None:
        return ""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    params.append(limit)
    return " LIMIT ?"


# The highest chunk sequence written per producer: survives a crash, so a message resent
# after one is recognised (logd.write.dedup). MAX keeps it from going back.
UPSERT_PRODUCER = (
    "INSERT INTO producers (producer, seq, seen_ns) VALUES (?, ?, ?) "
    "ON CONFLICT (producer) DO UPDATE SET seq = MAX(seq, excluded.seq), "
    "seen_ns = excluded.seen_ns"
)
