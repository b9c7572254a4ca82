"""The writer's synchronous core: turns batches of jobs into files, index rows and metadata.

Only the writer task calls the engine, one step at a time (in a worker thread), so the
engine owns every file handle and the SQLite connections without locks. The trio side
never touches the disk. A batch is gathered in memory, written (`begin`) and committed
once durable (`land`); `process` does all three, and `overlap` gathers the next batch
while one syncs.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from logd.config import Config, Layout
from logd.index.events import EventIndex
from logd.index.registry import Registry, pid_alive
from logd.index.states import RunState, SessionState
from logd.index.store import RegistryStore
from logd.write.batch import (
    Batch,
    Totals,
    batch_bytes,
)
from logd.write.books import Books, no_room, unique
from logd.write.dedup import Dedup, highest
from logd.write.durable import SYNCED, Syncing
from logd.write.flight import Flight, Gathered
from logd.write.gather import Gatherer
from logd.write.jobs import Ingest, Job, Maintain, Note
from logd.write.maintain import Maintainer
from logd.write.pending import Tally
from logd.write.sinks import Sinks
from logd.write.timeline import Fact, Timeline, writes_for

if TYPE_CHECKING:
    from logd.forward.hub import Hub

log = logging.getLogger("logd.engine")


class Engine:
    """Routes records into files and keeps the registry; see module docstring.

    Resource handling: owns the `Sinks` descriptors and the index connections;
    `close()` flushes and releases them.
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
        self.sinks = Sinks(
            self.root,
            open_files=config.limits.open_files,
            fsync=config.fsync,
            rotation=config.rotation,
            clock=lambda: clock_ns() / 1e9,
        )
        self.registry = Registry(
            utc=config.layout.utc,
            pid_alive=pid_alive,
            lookup=self._lookup,
            lookup_session=self._lookup_session,
        )
        self.books = Books(self.root, self.registry)
        self.totals = Totals()
        self.timeline = Timeline()
        self.maintainer = Maintainer(
            self.registry, self.books, self.sinks, self.timeline, self.totals, self.reload
        )
        self._dedup = Dedup()
        self.gather = Gatherer(config.layout, self.registry, self.totals, self._dedup)
        self.gather.events_off = config.events.off
        # Live-tail items, built only while someone is following (set by the server).
        self.publish = False
        self.published: list[dict[str, Any]] = []
        # [[forward]] output buffers (set by the server): fed after each commit.
        self.forward: Hub | None = None
        try:
            self._open_index()
        except (OSError, sqlite3.Error) as exc:
            if not no_room(exc):
                raise
            # Start anyway: serve, acknowledge nothing, and open it when space returns.
            self._refused(exc)
            log.error("index.sqlite3 cannot be opened, the disk is full: %s", exc)

    @property
    def layout(self) -> Layout:
        return self.config.layout

    @property
    def store(self) -> RegistryStore:
        return self.books.store

    @property
    def index(self) -> EventIndex:
        return self.books.index

    # --- the batch ---------------------------------------------------------------

    def process(self, jobs: Sequence[Job]) -> None:
        """Carry out a batch; on return every `Ingest` in it is written and marked ok.

        Raises:
            OSError: the disk or the index refused. Files are cut back to where the batch
                began; nothing in it may be acknowledged.
        """
        self.land(self.begin(jobs))

    def begin(self, jobs: Sequence[Job]) -> Flight:
        """Gather a batch and write its files; it is durable once `land()` returns.

        Raises:
            OSError: as `process()`; the batch is refused and needs no `land()`.
        """
        return self._write(self.gather_jobs(jobs))

    def overlaps(self, jobs: Sequence[Job]) -> bool:
        """Whether `jobs` may be gathered while the batch in flight syncs (`overlap()`):
        only records, with no follower or forward output to hand them to early."""
        return (
            self.books.opened
            and not self.publish
            and self.forward is None
            and all(isinstance(job, Ingest) for job in jobs)
        )

    def overlap(self, jobs: Sequence[Job], flight: Flight) -> Flight:
        """Gather `jobs` while `flight` syncs, land `flight`, then write `jobs`' files.

        The disk flushes one batch while the next is worked out in memory; no file of
        the next batch is written before the first is committed, so the crash intent
        stays one batch's. `overlaps(jobs)` must be true.

        Raises:
            OSError: `flight` was refused (then `jobs` are too: what they gathered
                built on it), or `jobs` were.
        """
        self.gather.inflight = flight.batch.chunks  # a resend of them is not new
        try:
            gathered = self.gather_jobs(jobs)
        except BaseException:
            self.land(flight)  # it is written: it lands whatever became of these
            raise
        finally:
            self.gather.inflight = set()
        self.land(flight, next_batch=gathered)
        return self._write(gathered)

    def gather_jobs(self, jobs: Sequence[Job]) -> Gathered:
        """Work out a batch in memory: its lines, rows and registry changes. Every batch
        starts here, whichever way it is carried out.

        Raises:
            OSError: the index cannot be opened (the batch is refused).
        """
        now = self.clock_ns()
        for job in jobs:
            if isinstance(job, Maintain) and job.action == "snapshot":
                # Reads only: answered even when the disk is full.
                self.maintainer.maintain(job, now, self.config)
        if not self.books.opened:
            try:
                self._open_index()
            except (OSError, sqlite3.Error) as exc:
                self._refused(exc)
                if isinstance(exc, OSError):
                    raise
                raise OSError(f"index: {exc}") from exc
        batch = Batch()
        self.gather.jobs(
            jobs,
            batch,
            now,
            session_idle_ns=int(self.config.limits.session_idle_s * 1e9),
            forward=self.forward is not None,
            published=self.published if self.publish else None,
        )
        facts = self.timeline.take()
        facts += [
            Fact(j.ts_ns, j.event_type, j.text, j.fields) for j in jobs if isinstance(j, Note)
        ]
        if facts:
            own_writes, own_rows = writes_for(facts)
            batch.lines.add(own_writes)
            batch.rows += own_rows
        return Gathered(now, jobs, batch, facts)

    def _write(self, gathered: Gathered) -> Flight:
        """Write a gathered batch's files and start their sync; its rows are taken now,
        so the next batch may change the registry before this one lands."""
        now, batch = gathered.now, gathered.batch
        books, pending = self.books, self.books.pending
        # Metadata follows the lines: a run appears with its first batch that got through.
        described = unique(
            [*batch.new_runs, *batch.ended_runs, *pending.runs.values()],
            self.registry.due_metadata(now),
        )
        new_files: list[Path] = []
        syncing = SYNCED
        try:
            if batch.lines.by_path:
                # Before any line: where the files stand, so a crash before the commit
                # below is cut back at the next start (write/intent.py).
                intent = self.sinks.intent(batch.lines)
                self.store.begin_batch(intent)
            written = self.sinks.write_many(batch.lines)
            # The disk flushes while the rows below are worked out; they commit after it.
            syncing = self.sinks.start_sync()
            batch.lines.release(sum(written.values()))
            run_dirs = batch.run_dirs
            for path, count in written.items():
                folder, _, name = path.rpartition("/")
                owner = run_dirs.get(folder)
                if owner is not None:
                    owner.bytes += count
                    owner.files.add(name)
            new_files = [books.metadata_path(run) for run in batch.new_runs]
            new_files = [meta for meta in new_files if not meta.exists()]
            run_rows = [books.write_metadata(run, now) for run in described]
            # Each run the batch counted records for gets its registry row in the batch's
            # transaction: what a restart takes over, even when metadata.json lags behind.
            done = {id(run) for run in described}
            run_rows += [books.row(r) for r in unique(batch.run_dirs.values()) if id(r) not in done]
            if batch.rows:
                self.index.insert_many(batch.rows)
            rows = self.store.prepare(
                runs=run_rows,
                sessions=list((pending.sessions | batch.sessions).values()),
                calls=[c.row() for c in (pending.calls | batch.calls).values()],
                producers=[(p, seq, now) for p, seq in highest(batch.chunks).items()],
            )
        except (OSError, sqlite3.Error) as exc:
            self._refuse(exc, gathered, described, new_files, syncing)
        newest = self.registry.newest
        return Flight(
            gathered,
            described,
            new_files,
            syncing,
            rows,
            tallies=Tally.taken(batch.run_dirs.values()),
            current=[(r.app, r) for r in batch.new_runs if newest.get(r.app) is r],
            ended=any(not run.active for run in described),
        )

    def land(self, flight: Flight, next_batch: Gathered | None = None) -> None:
        """Commit a batch once its files are durable; then its `Ingest` jobs are ok.

        `next_batch` is the batch gathered meanwhile (`overlap()`): refused with this one.

        Raises:
            OSError: as `process()`.
        """
        gathered = flight.gathered
        now, batch, jobs = gathered.now, gathered.batch, gathered.jobs
        books, pending = self.books, self.books.pending
        try:
            self.store.write_prepared(
                flight.rows, batch_done=bool(batch.lines.by_path), before_commit=flight.syncing.wait
            )
            flight.syncing.wait()
        except (OSError, sqlite3.Error) as exc:
            if next_batch is not None:
                self._take_back(next_batch)
            self._refuse(exc, gathered, flight.described, flight.new_files, flight.syncing)
        self.sinks.commit()
        self.timeline.committed(now)
        # Sessions the next batch ended are not in the rows yet: they stay until it lands.
        self.registry.committed(keep=next_batch.batch.sessions if next_batch else ())
        books.committed(flight)
        self.totals.events_indexed += len(batch.rows)
        self._dedup.commit(batch.chunks)
        if batch.outbound and self.forward is not None:
            # After the commit, before producers get their acks: a crash in between
            # makes them resend, so upstream still gets every acknowledged record.
            self.forward.offer(batch.outbound)
        for path in batch.closing:
            self.sinks.close_file(path)
        if flight.ended:
            self.registry.forget_ended()
            pending.forget_missing(self.registry.runs)
        for job in jobs:
            if isinstance(job, Ingest):
                job.ok = True
                self.totals.records_written += job.written
            elif isinstance(job, Maintain) and not job.done:
                self.maintainer.maintain(job, now, self.config)
        self.timeline.rotated(now, self.sinks.rotator.take_rotations())

    def _refuse(
        self,
        exc: OSError | sqlite3.Error,
        gathered: Gathered,
        described: list[RunState],
        new_files: list[Path],
        syncing: Syncing,
    ) -> NoReturn:
        """The disk or the index refused a batch it wrote to: cut its files back, take its
        registry changes back, and raise."""
        with contextlib.suppress(OSError):
            syncing.wait()  # before any file is cut back or closed
        for meta in new_files:
            meta.unlink(missing_ok=True)
        self.sinks.rollback()
        self._take_back(gathered, rewritten=described)
        self.timeline.rotated(gathered.now, self.sinks.rotator.take_rotations())
        self._refused(exc, batch_bytes(gathered.batch))
        if isinstance(exc, OSError):
            raise exc
        raise OSError(f"index: {exc}") from exc

    def _take_back(self, gathered: Gathered, rewritten: Sequence[RunState] = ()) -> None:
        """A batch will not be acknowledged: its contexts, registry changes and facts go
        back (`Books.take_back`)."""
        self.gather.forget_contexts()
        self.books.take_back(gathered.batch, rewritten)
        self.timeline.restore(gathered.facts)

    def _open_index(self) -> None:
        marks = self.books.open(self.clock_ns(), max_producers=self._dedup.max_producers)
        self._dedup.commit(marks)

    def _lookup(self, app: str, run_id: str) -> RunState | None:
        return self.books.lookup(app, run_id)

    def _lookup_session(self, app: str, session_id: str, now: int) -> SessionState | None:
        return self.books.lookup_session(app, session_id, now)

    def _refused(self, exc: OSError | sqlite3.Error, nbytes: int = 0) -> None:
        """Count a batch the disk or the index refused, and keep it for the timeline."""
        self.totals.write_errors += 1
        self.timeline.refused(self.clock_ns(), str(exc), nbytes, no_room=no_room(exc))
        if self.books.opened:
            self.totals.last_error = f"write failed: {exc}"
        else:
            self.totals.last_error = f"index.sqlite3 cannot be opened: {exc}"

    # --- maintenance ---------------------------------------------------

    def reload(self, config: Config) -> None:
        """Apply a new configuration, except `root` and `[listen]` (they need a restart)."""
        config = replace(config, root=self.config.root, listen=self.config.listen)
        self.config = config
        self.gather.relayout(config.layout)
        self.gather.events_off = config.events.off
        self.sinks.rotator.rotation = config.rotation
        self.sinks.fsync = config.fsync
        self.sinks.open_files = max(1, config.limits.open_files)
        self.registry.utc = config.layout.utc

    def close(self) -> None:
        """Flush everything and write the metadata of runs still open (they stay open).

        Error handling: stopping never fails. What a full disk refuses is logged once and
        left for the next start (`Books.close`).
        """
        unwritten = []
        try:
            self.sinks.close()
        except OSError as exc:
            unwritten.append(f"the last lines' fsync ({exc})")
        if (books := self.books.close(self.clock_ns())) is not None:
            unwritten.append(books)
        if unwritten:
            log.warning("stopped without writing %s; left for the next start", "; ".join(unwritten))
