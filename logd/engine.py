"""The writer's synchronous core: turns batches of jobs into files, index rows and metadata.

Only the writer task calls `Engine.process`, one batch at a time (in a worker thread),
so the engine owns every file handle and the SQLite connection without locks. The trio
side never touches the disk.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from logd_client import wire

from logd.config import Config
from logd.dedup import ChunkKey, Dedup, chunk_key
from logd.events import EventIndex, EventRow
from logd.records import Unroutable, normalize
from logd.registry import Peer, Registry, RunState, pid_alive
from logd.routing import Kind, Write, day_text, rejected_write, route, run_dir, safe_name
from logd.sinks import Sinks, point_current, write_json_atomic

log = logging.getLogger("logd.engine")


@dataclass(slots=True)
class Ingest:
    """One decoded message from one connection; `done` is set once it is durable."""

    peer: Peer
    entries: wire.Entries
    ok: bool = False
    duplicate: bool = False


@dataclass(slots=True)
class ConnClosed:
    peer: Peer
    by_daemon: bool


@dataclass(slots=True)
class Tick:
    """Periodic housekeeping: runs whose processes vanished, metadata refresh."""


Job = Ingest | ConnClosed | Tick


@dataclass(slots=True)
class Totals:
    records_in: int = 0
    records_written: int = 0
    events_indexed: int = 0
    rejected: int = 0
    dropped_by_clients: int = 0
    messages: int = 0
    duplicates: int = 0
    write_errors: int = 0
    last_error: str | None = None


@dataclass(slots=True)
class _Batch:
    writes: list[Write] = field(default_factory=list)
    rows: list[EventRow] = field(default_factory=list)
    run_of_path: dict[str, RunState] = field(default_factory=dict)
    new_runs: list[RunState] = field(default_factory=list)
    ended_runs: list[RunState] = field(default_factory=list)
    closing: list[str] = field(default_factory=list)
    chunks: set[ChunkKey] = field(default_factory=set)


class Engine:
    """Routes records into files and keeps run metadata; see module docstring.

    Resource handling: owns the `Sinks` descriptors and the `EventIndex` connection;
    `close()` flushes and releases both.
    """

    def __init__(
        self,
        config: Config,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        pid_alive: Callable[[int], bool] = pid_alive,
    ) -> None:
        self.config = config
        self.root = config.root
        self.root.mkdir(parents=True, exist_ok=True)
        self.clock_ns = clock_ns
        self.layout = config.layout
        self.sinks = Sinks(
            self.root,
            open_files=config.limits.open_files,
            fsync=config.fsync,
            rotation=config.rotation,
            clock=lambda: clock_ns() / 1e9,
        )
        self.index = EventIndex(self.root / "index.sqlite3")
        self.registry = Registry(utc=config.layout.utc, pid_alive=pid_alive)
        self.totals = Totals()
        self._dedup = Dedup()
        self.host = socket.gethostname()

    # --- the batch ---------------------------------------------------------------

    def process(self, jobs: Sequence[Job]) -> None:
        """Carry out a batch; on return every `Ingest` in it is written and marked ok.

        Raises:
            OSError: the disk refused a write. Nothing in this batch may be acknowledged.
        """
        now = self.clock_ns()
        batch = _Batch()
        for job in jobs:
            if isinstance(job, Ingest):
                self._ingest(job, batch, now)
            elif isinstance(job, ConnClosed):
                batch.ended_runs += self.registry.connection_closed(
                    job.peer.conn_id, by_daemon=job.by_daemon, now_ns=now
                )
            else:
                batch.ended_runs += self.registry.tick(now)
        for run in batch.new_runs:
            self._write_metadata(run, now)
            if self.registry.newest.get(run.app) is run:
                point_current(self.root / safe_name(run.app) / "runs", safe_name(run.run_id))
        try:
            written = self.sinks.write_many(batch.writes)
            self.sinks.sync()
            if batch.rows:
                self.index.insert_many(batch.rows)
        except (OSError, sqlite3.Error) as exc:
            self.sinks.rollback()
            self.totals.write_errors += 1
            self.totals.last_error = f"write failed: {exc}"
            if isinstance(exc, OSError):
                raise
            raise OSError(f"index: {exc}") from exc
        self.sinks.commit()
        self.totals.events_indexed += len(batch.rows)
        self._dedup.commit(batch.chunks)
        for path, count in written.items():
            owner = batch.run_of_path.get(path)
            if owner is not None:
                owner.bytes += count
                owner.files.add(path.rsplit("/", 1)[1])
        for path in batch.closing:
            self.sinks.close_file(path)
        for run in batch.ended_runs:
            self._write_metadata(run, now)
        for run in self.registry.due_metadata(now):
            self._write_metadata(run, now)
        if batch.ended_runs:
            self.registry.forget_ended()
        for job in jobs:
            if isinstance(job, Ingest):
                job.ok = True
                if not job.duplicate:
                    self.totals.records_written += len(job.entries.entries)

    def _ingest(self, job: Ingest, batch: _Batch, now: int) -> None:
        entries = job.entries
        peer = job.peer
        self.totals.messages += 1
        key = chunk_key(entries.chunk)
        if key is not None:
            if key in batch.chunks or self._dedup.already_written(key):
                job.duplicate = True
                self.totals.duplicates += 1
                return
            batch.chunks.add(key)
        self.totals.records_in += len(entries.entries) + len(entries.invalid)
        for invalid in entries.invalid:
            self._reject(batch, now, invalid.reason, entries.tag, invalid.raw, peer)
        layout = self.layout
        for time_ns, raw in entries.entries:
            try:
                record = normalize(entries.tag, time_ns, raw)
            except Unroutable as exc:
                self._reject(batch, now, str(exc), entries.tag, raw, peer)
                continue
            run, created = self.registry.run_for(record, peer, now)
            if created:
                batch.new_runs.append(run)
            self.registry.note_record(run, record)
            call_day = None
            if record.call_id is not None:
                call_day = self.registry.call_day(record, day_text(record.time_ns, layout.utc))
            routed = route(record, run.run_id, layout, call_day=call_day)
            batch.writes += routed.writes
            if routed.event is not None:
                batch.rows.append(routed.event)
            for write in routed.writes:
                if write.kind is Kind.RUN:
                    batch.run_of_path[write.path] = run
            event_type = record.event_type
            if event_type == "logd:dropped":
                count = record.kv.get("count")
                if isinstance(count, int):
                    self.totals.dropped_by_clients += count
            elif event_type == "call:end" and record.call_id is not None:
                self.registry.end_call(record.app, record.call_id)
                batch.closing += [w.path for w in routed.writes if w.kind is Kind.CALL]
            elif event_type == "session:end":
                batch.closing += [w.path for w in routed.writes if w.kind is Kind.SESSION]

    def _reject(
        self, batch: _Batch, now: int, reason: str, tag: str, raw: object, peer: Peer
    ) -> None:
        self.totals.rejected += 1
        batch.writes.append(rejected_write(now, reason, tag, raw, peer.as_dict()))

    def _write_metadata(self, run: RunState, now: int) -> None:
        path = self.root / run_dir(run.app, run.run_id) / "metadata.json"
        write_json_atomic(path, run.metadata(self.layout.utc))
        run.dirty = False
        run.written_ns = now

    # --- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Flush everything and write the metadata of runs still open (they stay open)."""
        now = self.clock_ns()
        try:
            self.sinks.close()
            for run in self.registry.runs.values():
                if run.dirty:
                    self._write_metadata(run, now)
        finally:
            self.index.close()


def ensure_root(root: Path) -> None:
    """Create the root and check it is writable, so a bad root fails at start."""
    root.mkdir(parents=True, exist_ok=True)
    probe = root / f".probe.{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()
