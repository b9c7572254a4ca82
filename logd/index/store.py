"""The registry tables (runs, sessions, calls) in ``index.sqlite3``, beside ``events``.

A synchronous SQLite edge: the daemon's writer thread calls it one batch at a time;
readers (the control socket, ``logd web``) open their own :class:`RegistryStore` on the
same file, which WAL lets them do without blocking the writer. It holds no lifecycle
rules: those live in ``registry.py``, and this module only stores what it is given. The
schema and the row conversions are ``tables.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from logd.index.eventline import iso_utc_ms
from logd.index.store_reads import RegistryReads
from logd.index.tables import (
    SCHEMA,
    UPSERT_CALL,
    UPSERT_PRODUCER,
    UPSERT_RUN,
    UPSERT_SESSION,
    CallRow,
    SessionFields,
    SessionRow,
    call_params,
    run_params,
    session_params,
)

__all__ = ["Prepared", "RegistryStore"]

BUSY_TIMEOUT_MS = 5000
# Rows remembered as committed, per table, for `write()`'s count-only updates; past it
# the memory starts over (a row not remembered is upserted whole, which is always right).
MAX_KNOWN_ROWS = 100_000
_UPDATE_SESSION_COUNTS = (
    "UPDATE sessions SET last_ts = ?, records = ? WHERE app = ? AND session_id = ?"
)
_UPDATE_CALL_COUNTS = (
    "UPDATE calls SET records = ?, errors = ? WHERE app = ? AND call_id = ? AND day = ?"
)
_Key = tuple[str, ...]
_Rest = tuple[Any, ...]


def _session_rest(row: SessionFields) -> _Rest:
    """What a session row holds besides its last time and record count."""
    return (tuple(row.runs), row.first_ns, row.end_ns, row.end_reason, row.path)


def _call_rest(row: CallRow) -> _Rest:
    """What a call row holds besides its record and error counts."""
    return (
        row.bot_id,
        row.path,
        row.start_ns,
        row.end_ns,
        row.duration_ms,
        row.run_id,
        row.session_id,
    )


@dataclass(slots=True)
class Prepared:
    """One registry transaction's values, as `RegistryStore.prepare()` took them."""

    runs: list[tuple[Any, ...]] = field(default_factory=list)
    producers: list[tuple[str, int, int]] = field(default_factory=list)
    session_rests: list[tuple[_Key, _Rest]] = field(default_factory=list)
    session_values: list[tuple[Any, ...]] = field(default_factory=list)
    # (last_ts, records, app, session_id) of rows that changed only there.
    session_counts: list[tuple[Any, ...]] = field(default_factory=list)
    session_last_ns: list[int] = field(default_factory=list)
    call_rests: list[tuple[_Key, _Rest]] = field(default_factory=list)
    call_values: list[tuple[Any, ...]] = field(default_factory=list)
    call_counts: list[tuple[Any, ...]] = field(default_factory=list)
    counted_calls: list[CallRow] = field(default_factory=list)

    def counted_session_params(self) -> list[tuple[Any, ...]]:
        """Whole `UPSERT_SESSION` values of the rows taken as count-only updates: their
        rest (`_session_rest`), last time and count hold all of the row."""
        rests = dict(self.session_rests)
        values = []
        for (_, records, app, session_id), last_ns in zip(
            self.session_counts, self.session_last_ns, strict=True
        ):
            runs, first_ns, end_ns, end_reason, path = rests[(app, session_id)]
            row = SessionRow(
                app, session_id, list(runs), first_ns, last_ns, end_ns, end_reason, records, path
            )
            values.append(session_params(row))
        return values


class RegistryStore(RegistryReads):
    """Runs, sessions and calls tables in ``index.sqlite3`` (WAL); the queries over them
    are `RegistryReads`'.

    Opens its own connection to the file the :class:`~logd.index.events.EventIndex` uses, so
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
        # Each session's and call's row as last committed, but for its counts: a row that
        # changed only there is updated in place, at half an upsert's cost (a batch with
        # many live sessions or calls writes one row for each).
        self._known_sessions: dict[_Key, _Rest] = {}
        self._known_calls: dict[_Key, _Rest] = {}
        try:
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def _migrate(self) -> None:
        # Columns added after a table first shipped: ADD COLUMN keeps existing rows.
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(runs)")}
        if "extra_json" not in have:
            self._conn.execute("ALTER TABLE runs ADD COLUMN extra_json TEXT")
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(pending_batch)")}
        if "files" not in have:
            self._conn.execute("ALTER TABLE pending_batch ADD COLUMN files BLOB")

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
        sessions: Sequence[SessionFields] = (),
        calls: Sequence[CallRow] = (),
        producers: Sequence[tuple[str, int, int]] = (),
        batch_done: bool = False,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        """Upsert runs, sessions, calls and producer marks in ONE transaction.

        `producers` are `(producer, seq, now_ns)`: the highest chunk written per producer.
        With `batch_done`, the same transaction drops the batch's intent
        (`begin_batch`): the batch is committed. `before_commit` runs just before the
        commit (the writer waits there for its files' sync); what it raises rolls back.

        Raises:
            KeyError: a run mapping lacks ``app``, ``run_id``, ``start_time`` or ``path``.
            ValueError: a time is not ISO 8601 or is out of range.
            sqlite3.Error: a row breaks the schema (e.g. an unknown ``end_reason``);
                the whole batch is rolled back.
        """
        prepared = self.prepare(runs=runs, sessions=sessions, calls=calls, producers=producers)
        self.write_prepared(prepared, batch_done=batch_done, before_commit=before_commit)

    def prepare(
        self,
        *,
        runs: Sequence[Mapping[str, Any]] = (),
        sessions: Sequence[SessionFields] = (),
        calls: Sequence[CallRow] = (),
        producers: Sequence[tuple[str, int, int]] = (),
    ) -> Prepared:
        """`write()`'s values, taken now: the objects given may change before the
        transaction runs (the writer gathers its next batch meanwhile).

        Raises:
            KeyError, ValueError: as `write()`.
        """
        known_sessions, known_calls = self._known_sessions, self._known_calls
        prepared = Prepared(runs=[run_params(meta) for meta in runs], producers=list(producers))
        for row in sessions:
            key: _Key = (row.app, row.session_id)
            rest = _session_rest(row)
            prepared.session_rests.append((key, rest))
            if known_sessions.get(key) == rest:
                prepared.session_counts.append((iso_utc_ms(row.last_ns), row.records, *key))
                prepared.session_last_ns.append(row.last_ns)
            else:
                prepared.session_values.append(session_params(row))
        for call in calls:
            key = (call.app, call.call_id, call.day)
            rest = _call_rest(call)
            prepared.call_rests.append((key, rest))
            if known_calls.get(key) == rest:
                prepared.call_counts.append((call.records, call.errors, *key))
                prepared.counted_calls.append(call)
            else:
                prepared.call_values.append(call_params(call))
        return prepared

    def write_prepared(
        self,
        prepared: Prepared,
        *,
        batch_done: bool = False,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        """`write()` with values `prepare()` took; the same transaction and errors."""
        p = prepared
        if not (p.runs or p.session_rests or p.call_rests or p.producers or batch_done):
            return
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in (
                (UPSERT_RUN, p.runs),
                (UPSERT_SESSION, p.session_values),
                (UPSERT_PRODUCER, p.producers),
                (UPSERT_CALL, p.call_values),
            ):
                if params:
                    conn.executemany(sql, params)
            # A remembered row that is gone (cleanup, a reset) updates nothing: then
            # every such row of the batch is upserted whole after all.
            if p.session_counts and (
                conn.executemany(_UPDATE_SESSION_COUNTS, p.session_counts).rowcount
                != len(p.session_counts)
            ):
                conn.executemany(UPSERT_SESSION, p.counted_session_params())
            if p.call_counts and (
                conn.executemany(_UPDATE_CALL_COUNTS, p.call_counts).rowcount != len(p.call_counts)
            ):
                conn.executemany(UPSERT_CALL, [call_params(c) for c in p.counted_calls])
            if batch_done:
                conn.execute("DELETE FROM pending_batch")
            if before_commit is not None:
                before_commit()
            # COMMIT is where a full disk refuses (the WAL grows): it must roll back too.
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        known_sessions, known_calls = self._known_sessions, self._known_calls
        for known, rests in ((known_sessions, p.session_rests), (known_calls, p.call_rests)):
            if len(known) + len(rests) > MAX_KNOWN_ROWS:
                known.clear()
            known.update(rests)

    # --- the batch intent ----------------------------------------------------------

    def begin_batch(self, files: Sequence[tuple[str, int, int]]) -> None:
        """Record what a batch is about to write, before it writes.

        `files` are `(path, inode, size)` of each file as the batch finds it. They are
        kept packed in one row (path ``""``, with the highest event id so far as its
        size): a batch touching a thousand session files writes one row, not a thousand,
        and its commit deletes one. Until `write(batch_done=True)` commits the batch, a
        crash leaves this behind for `pending_batch()` at the next start. An intent
        still here now belongs to a batch the disk refused while this daemon ran: its
        files were cut back then, and its event rows (committed before the refusal) go
        now, so its resend is indexed once.
        """
        packed = msgpack.packb([list(stand) for stand in files])
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute(
                "DELETE FROM events WHERE id > (SELECT size FROM pending_batch WHERE path = '')"
            )
            self._conn.execute("DELETE FROM pending_batch")
            self._conn.execute(
                "INSERT INTO pending_batch (path, ino, size, files)"
                " SELECT '', 0, coalesce(max(id), 0), ? FROM events",
                [packed],
            )
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def pending_batch(self) -> tuple[list[tuple[str, int, int]], int] | None:
        """The intent of a batch that never committed: its files and the event id to
        keep up to; None when the last batch committed.

        Files come packed in the ``""`` row, or one row each as earlier builds wrote
        them (a crash under one of those, restarted under this one).
        """
        rows = self._conn.execute("SELECT path, ino, size, files FROM pending_batch").fetchall()
        if not rows:
            return None
        files = [(str(p), int(i), int(s)) for p, i, s, _ in rows if p]
        events_after = 0
        for path, _, size, packed in rows:
            if path:
                continue
            events_after = int(size)
            if packed is not None:
                files += [(str(p), int(i), int(s)) for p, i, s in msgpack.unpackb(packed)]
        return files, events_after

    def abandon_batch(self, events_after: int) -> int:
        """Forget an uncommitted batch: drop its event rows and its intent. Returns how
        many event rows went (its files are cut back by the caller)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            gone = self._conn.execute("DELETE FROM events WHERE id > ?", [events_after]).rowcount
            self._conn.execute("DELETE FROM pending_batch")
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        return int(gone)

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

    # --- reads -------------------------------------------------------------------

    def producer_marks(self, limit: int) -> list[tuple[str, int]]:
        """The most recently seen producers' highest written sequence, oldest first."""
        rows = self._conn.execute(
            "SELECT producer, seq FROM (SELECT * FROM producers ORDER BY seen_ns DESC LIMIT ?)"
            " ORDER BY seen_ns",
            (limit,),
        ).fetchall()
        return [(str(row[0]), int(row[1])) for row in rows]

    def forget_producers(self, before_ns: int) -> int:
        """Drop marks of producers not seen since `before_ns` (retention)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            count = self._conn.execute(
                "DELETE FROM producers WHERE seen_ns < ?", (before_ns,)
            ).rowcount
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return int(count)

    def close(self) -> None:
        """Close the connection; idempotent."""
        self._conn.close()
