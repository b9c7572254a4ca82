"""What the gatherer remembers between records: each context's last plain record, and
the registry counts it has not noted yet.

A context is what a plain record's lines depend on besides its time and message (app,
run, logger, level, session). Records of a known context skip normalising, routing and
the per-record registry calls; their counts are noted once per message (`settle`).
Pure bookkeeping over the registry in memory: no I/O.
"""

from __future__ import annotations

from typing import Any

from logd.index.registry import Registry
from logd.index.states import CallState, RunState
from logd.write.batch import Batch
from logd.write.records import Record
from logd.write.routing import Kind, run_dir
from logd.write.templates import Template

__all__ = ["MAX_CONTEXTS", "Context", "Tally", "settle_tallies", "tally"]

# Contexts kept per (connection, tag) at most; past it they are worked out again.
MAX_CONTEXTS = 10_240


def _session_path(template: Template) -> str:
    return next(path for kind, path in template.paths if kind is Kind.SESSION)


class Context:
    """A context's last plain record on one connection, with what routing it worked out
    (and its call, for a call's record).

    Kept from message to message and batch to batch: with many sessions on a connection,
    a message holds only a few records of each, and working each context out again per
    message put a third of the records on the slow path. Its repeats (equal but for time
    and message) are counted here and noted in the run's and the session's registry rows
    at once (`settle`). `targets` are `batch`'s line lists of the template's files.
    """

    __slots__ = (
        "batch",
        "call",
        "count",
        "first_ns",
        "last_ns",
        "raw",
        "record",
        "run",
        "run_key",
        "session_path",
        "targets",
        "template",
    )

    def __init__(
        self,
        raw: dict[str, Any],
        record: Record,
        template: Template,
        targets: list[list[str]],
        run: RunState,
        batch: Batch,
        call: CallState | None = None,
    ) -> None:
        self.raw, self.record, self.template, self.run = raw, record, template, run
        self.targets, self.batch, self.call = targets, batch, call
        self.run_key = run_dir(run.app, run.run_id)
        self.session_path = _session_path(template) if record.session_id is not None else None
        self.count = 0
        self.first_ns = self.last_ns = record.time_ns

    @property
    def live(self) -> bool:
        """Whether its run (and call) still go on: an ended one is looked up afresh."""
        return self.run.active and (self.call is None or self.call.end_ns is None)

    def bind(self, batch: Batch) -> None:
        """Write into `batch` from now on: its line lists, its runs touched."""
        self.batch = batch
        to = batch.lines.to
        self.targets = [to(kind, path) for kind, path in self.template.paths]
        batch.run_dirs[self.run_key] = self.run

    def repeat(self, time_ns: int) -> None:
        """Count one more record of this context."""
        self.count += 1
        if time_ns > self.last_ns:
            self.last_ns = time_ns
        elif time_ns < self.first_ns:
            self.first_ns = time_ns

    def settle(self, registry: Registry, batch: Batch, now: int) -> None:
        """Note the repeats counted so far: what `note_record()` and `note_paths()` per
        record would have left, in one step each."""
        record, count = self.record, self.count
        if not count:
            return
        registry.note_repeats(self.run, record, count, self.last_ns)
        if self.session_path is not None:
            _note_session(
                registry,
                batch,
                now,
                record,
                self.run.run_id,
                self.session_path,
                count,
                self.first_ns,
                self.last_ns,
            )
        call = self.call
        if call is not None:  # below ERROR: no errors to count
            call.records += count
            batch.calls[(call.app, call.call_id, call.day)] = call
        self.count = 0
        self.first_ns = self.last_ns


class Tally:
    """A session's plain records routed one by one in a message, not yet noted."""

    __slots__ = ("count", "first_ns", "last_ns", "path", "record", "run_id")

    def __init__(self, record: Record, run_id: str, path: str, time_ns: int) -> None:
        self.record, self.run_id, self.path = record, run_id, path
        self.count, self.first_ns, self.last_ns = 0, time_ns, time_ns


def tally(
    tallies: dict[tuple[str, str, str], Tally],
    record: Record,
    run_id: str,
    template: Template,
    time_ns: int,
) -> None:
    """Count a plain session record; the registry hears of it once per message."""
    assert record.session_id is not None
    key = (record.app, record.session_id, run_id)
    found = tallies.get(key)
    if found is None:
        found = tallies[key] = Tally(record, run_id, _session_path(template), time_ns)
    found.count += 1
    if time_ns < found.first_ns:
        found.first_ns = time_ns
    elif time_ns > found.last_ns:
        found.last_ns = time_ns


def settle_tallies(
    tallies: dict[tuple[str, str, str], Tally], registry: Registry, batch: Batch, now: int
) -> None:
    """Apply the tallies: what `note_paths()` per record would have left, in one step each.

    Registry updates once per session per message rather than per record: with sessions
    interleaved (the normal case) this was a tenth of the writer's time.
    """
    for found in tallies.values():
        _note_session(
            registry,
            batch,
            now,
            found.record,
            found.run_id,
            found.path,
            found.count,
            found.first_ns,
            found.last_ns,
        )
    tallies.clear()


def _note_session(
    registry: Registry,
    batch: Batch,
    now: int,
    record: Record,
    run_id: str,
    path: str,
    count: int,
    first_ns: int,
    last_ns: int,
) -> None:
    """`count` records like `record` in its session, between `first_ns` and `last_ns`."""
    session = registry.note_session(record, run_id, now)
    session.records += count - 1
    session.first_ns = min(session.first_ns, first_ns)
    session.last_ns = max(session.last_ns, last_ns)
    session.path = path
    batch.sessions[(session.app, session.session_id)] = session
