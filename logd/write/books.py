"""index.sqlite3 and each run's metadata.json, as the writer keeps them.

Opened at start or, when a full disk refuses even that, by the first batch after space
returns. A run's metadata.json follows its lines, `runs/current` its first batch that
got through; what a refused batch or a stop on a full disk could not write waits in
`pending` (`write.pending`). Synchronous, in the writer's thread, like `Engine.process`.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from logd.index.events import EventIndex
from logd.index.names import safe_name
from logd.index.rebuild import open_or_rebuild
from logd.index.recovery import (
    persisted_run,
    persisted_session,
    recover_open_runs,
    reset_to_committed,
)
from logd.index.registry import Registry
from logd.index.states import RunState, SessionState
from logd.index.store import RegistryStore
from logd.write.atomic import point_current, write_json_atomic
from logd.write.batch import Batch
from logd.write.flight import Flight
from logd.write.intent import cut_back
from logd.write.pending import Pending
from logd.write.routing import run_dir

__all__ = ["Books", "no_room", "unique"]

log = logging.getLogger("logd.engine")
# How a full disk (or quota, or file-size limit) shows: a write refused for lack of room.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class Books:
    """See the module docstring.

    Resource handling: owns the index connections once `open()` succeeded; `close()`
    releases them.
    """

    def __init__(self, root: Path, registry: Registry) -> None:
        self.root = root
        self.registry = registry
        self.pending = Pending()
        self.opened = False
        # Set by `open()`.
        self.store: RegistryStore
        self.index: EventIndex

    def open(self, now: int, *, max_producers: int) -> list[tuple[str, int]]:
        """Open index.sqlite3, take over the runs a previous daemon left open, and end as
        lost those whose processes are gone; returns the producers' dedup marks.

        Raises:
            OSError, sqlite3.Error: the index cannot be opened or read. (Writing the
                lost runs may fail: they are written with the next batch that succeeds.)
        """
        store, index, rebuilt = open_or_rebuild(self.root, utc=self.registry.utc)
        try:
            if rebuilt is not None:
                log.warning("index.sqlite3 rebuilt from the files: %s", rebuilt)
            self._cut_back_uncommitted(store)
            marks = store.producer_marks(max_producers)
            lost = recover_open_runs(store, self.registry, now)
        except BaseException:
            index.close()
            store.close()
            raise
        self.store, self.index, self.opened = store, index, True
        self.pending.committed(self.registry.runs.values())
        if lost:
            gone = sum(run.end_reason == "lost" for run in lost)
            log.info(
                "%d run(s) left open by the previous daemon ended (%d of them lost)",
                len(lost),
                gone,
            )
            self.pending.runs.update(((run.app, run.run_id), run) for run in lost)
            try:
                store.write(runs=[self.write_metadata(run, now) for run in lost])
            except (OSError, sqlite3.Error) as exc:
                log.error("lost runs are recorded when the disk has room again: %s", exc)
            else:
                self.pending.runs.clear()
        return marks

    def take_back(self, batch: Batch, rewritten: Iterable[RunState] = ()) -> None:
        """A batch will not be acknowledged: put what gathering it did to the registry
        back (its producers send it again) and keep what must still be written."""
        self.pending.refused(
            self.registry,
            touched=batch.run_dirs.values(),
            opened=batch.new_runs,
            ended=batch.ended_runs,
            rewritten=rewritten,
            sessions=batch.sessions,
            calls=batch.calls,
            closing=batch.closing,
        )
        if self.opened:
            reset_to_committed(
                self.store, sessions=batch.sessions.values(), calls=batch.calls.values()
            )

    def committed(self, flight: Flight) -> None:
        """A batch got through: what a refusal goes back to is now its state, what was
        carried over from refused batches went with it (their files close with its own)."""
        pending = self.pending
        pending.tallies.update(flight.tallies)
        flight.batch.closing += pending.closing
        pending.written()
        pending.current.update(flight.current)
        self.point_current()

    def lookup(self, app: str, run_id: str) -> RunState | None:
        """A run the registry does not hold (`Registry.lookup`): one ended and not written
        yet (found lost on a full disk) as it stands, else from its row and metadata.

        The unwritten state is newer than the row: read from the row, the run's records
        would be counted on a second object, and the first would be written over them.
        """
        unwritten = self.pending.runs.get((app, run_id))
        if unwritten is not None:
            return unwritten
        return persisted_run(self.store, self.root, app, run_id) if self.opened else None

    def lookup_session(self, app: str, session_id: str, now: int) -> SessionState | None:
        """A session the registry does not hold, from its row (`Registry.lookup_session`)."""
        return persisted_session(self.store, app, session_id, now) if self.opened else None

    def _cut_back_uncommitted(self, store: RegistryStore) -> None:
        """A crash left a batch half written and unacknowledged: undo it, so the resent
        batch is written once (`write.intent`)."""
        pending = store.pending_batch()
        if pending is None:
            return
        files, events_after = pending
        cut = cut_back(self.root, files)
        gone = store.abandon_batch(events_after)
        if cut or gone:
            log.warning(
                "cut %d file(s) and %d event row(s) back to the last committed batch "
                "(the daemon stopped in the middle of one; its producers send it again)",
                len(cut),
                gone,
            )

    def write_metadata(self, run: RunState, now: int) -> dict[str, Any]:
        """Write `metadata.json` atomically; returns the registry row for the same state."""
        meta = run.metadata(self.registry.utc)
        write_json_atomic(self.metadata_path(run), meta)
        run.dirty = False
        run.written_ns = now
        return {**meta, "path": run_dir(run.app, run.run_id)}

    def row(self, run: RunState) -> dict[str, Any]:
        """The registry row of a run's present state, without writing its metadata.json."""
        return {**run.metadata(self.registry.utc), "path": run_dir(run.app, run.run_id)}

    def metadata_path(self, run: RunState) -> Path:
        return self.root / run_dir(run.app, run.run_id) / "metadata.json"

    def point_current(self) -> None:
        """`runs/current` names each app's newest run; a full disk only delays it."""
        for app, run in list(self.pending.current.items()):
            if self.registry.newest.get(app) is run:
                try:
                    point_current(self.root / safe_name(app) / "runs", safe_name(run.run_id))
                except OSError as exc:
                    log.warning("%s/runs/current not updated yet: %s", app, exc)
                    continue
            del self.pending.current[app]

    def close(self, now: int) -> str | None:
        """Write the metadata of runs still open (they stay open) and close the index;
        returns what could not be written, if anything.

        Error handling: never raises for a refused write: the registry rows are as of the
        last acknowledged batch, and the next start takes the runs over from there.
        """
        if not self.opened:
            return None
        pending = self.pending
        dirty = (run for run in self.registry.runs.values() if run.dirty)
        runs = unique(pending.runs.values(), dirty)
        unwritten = None
        try:
            self.store.write(
                runs=[self.write_metadata(run, now) for run in runs],
                sessions=[s.row() for s in pending.sessions.values()],
                calls=[c.row() for c in pending.calls.values()],
            )
        except (OSError, sqlite3.Error) as exc:
            unwritten = f"the metadata of {len(runs)} run(s) ({exc})"
        self.index.close()
        self.store.close()
        self.opened = False
        return unwritten


def unique(*groups: Iterable[RunState]) -> list[RunState]:
    """The runs of all groups, each once (by identity), in order."""
    seen: dict[int, RunState] = {}
    for group in groups:
        for run in group:
            seen.setdefault(id(run), run)
    return list(seen.values())


def no_room(exc: OSError | sqlite3.Error) -> bool:
    """Whether a failure is the disk refusing a write for lack of room.

    SQLite reports that as SQLITE_FULL, or as an I/O error while sizing its -shm file.
    """
    if isinstance(exc, OSError):
        return exc.errno in _NO_ROOM
    name = getattr(exc, "sqlite_errorname", "")
    return bool(name == "SQLITE_FULL" or name.startswith("SQLITE_IOERR"))
