"""What the writer gathers for one batch between taking its jobs and committing it: the
lines per file, the event rows, the runs, sessions and calls it touched and ended, and
the bookkeeping each record adds to them.

No I/O and no clock (`now` is an argument): the engine writes what is gathered here,
and the registry (passed in) keeps the lifecycle rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from logd.index.eventline import EventRow
from logd.index.registry import Registry
from logd.index.states import CallState, Peer, RunState, SessionState
from logd.write.dedup import ChunkKey
from logd.write.records import Record
from logd.write.routing import Kind, Write

__all__ = ["Batch", "Lines", "Totals", "batch_bytes", "lifecycle_event", "note_paths", "tick"]


class Lines:
    """One batch's lines grouped per file, in arrival order, as `Sinks.write_many` takes them.

    The writer appends to a file's list directly (`to()`), so no per-line object is made
    and nothing is regrouped when the batch is written.
    """

    __slots__ = ("by_path", "kinds", "released")

    def __init__(self, writes: Iterable[Write] = ()) -> None:
        self.by_path: dict[str, list[str]] = {}
        self.kinds: dict[str, Kind] = {}
        self.released = 0  # bytes of the lines `release()` let go
        self.add(writes)

    def to(self, kind: Kind, path: str) -> list[str]:
        """The list of the file's lines in this batch, to append to."""
        lines = self.by_path.get(path)
        if lines is None:
            self.by_path[path] = lines = []
            self.kinds[path] = kind
        return lines

    def add(self, writes: Iterable[Write]) -> None:
        for kind, path, line in writes:
            self.to(kind, path).append(line)

    def release(self, nbytes: int) -> None:
        """Let the text of `nbytes` of written lines go, keeping which files they went to.

        A batch waits for its sync and commit while the next one is gathered; its rendered
        lines (some 600 bytes a record) are not needed for that, only its files.
        """
        self.released += nbytes
        for lines in self.by_path.values():
            lines.clear()


@dataclass(slots=True)
class Totals:
    """The writer's counters since start, for `logd-ctl status`."""

    records_in: int = 0
    records_written: int = 0
    events_indexed: int = 0
    # Events not indexed because `[events] off` matched their type.
    events_off: int = 0
    rejected: int = 0
    dropped_by_clients: int = 0
    messages: int = 0
    duplicates: int = 0
    write_errors: int = 0
    last_error: str | None = None


@dataclass(slots=True)
class Batch:
    """One batch's gatherings; see the module docstring."""

    lines: Lines = field(default_factory=Lines)
    rows: list[EventRow] = field(default_factory=list)
    run_dirs: dict[str, RunState] = field(default_factory=dict)
    new_runs: list[RunState] = field(default_factory=list)
    ended_runs: list[RunState] = field(default_factory=list)
    sessions: dict[tuple[str, str], SessionState] = field(default_factory=dict)
    calls: dict[tuple[str, str, str], CallState] = field(default_factory=dict)
    closing: list[str] = field(default_factory=list)
    chunks: set[ChunkKey] = field(default_factory=set)
    outbound: list[tuple[Record, str, Peer]] = field(default_factory=list)


def note_paths(
    registry: Registry,
    record: Record,
    run: RunState,
    call: CallState | None,
    paths: Iterable[tuple[Kind, str]],
    batch: Batch,
    now: int,
) -> None:
    """Remember where a call's or session's file is, for the registry and cleanup."""
    for kind, path in paths:
        if kind is Kind.CALL and call is not None:
            call.path = path
        elif kind is Kind.SESSION and record.session_id is not None:
            session = registry.note_session(record, run.run_id, now)
            session.path = path
            batch.sessions[(session.app, session.session_id)] = session


def lifecycle_event(
    registry: Registry,
    totals: Totals,
    record: Record,
    paths: Iterable[tuple[Kind, str]],
    batch: Batch,
) -> None:
    """What an event record changes beyond its lines: a client's drop report, the end of
    a call or a session (their files close once the batch is committed)."""
    event_type = record.event_type
    if event_type == "logd:dropped":
        count = record.kv.get("count")
        if isinstance(count, int):
            totals.dropped_by_clients += count
    elif event_type == "call:end" and record.call_id is not None:
        call = registry.end_call(record.app, record.call_id, record.time_ns)
        if call is not None:
            batch.calls[(call.app, call.call_id, call.day)] = call
        batch.closing += [path for kind, path in paths if kind is Kind.CALL]
    elif event_type == "session:end" and record.session_id is not None:
        session = registry.end_session(record.app, record.session_id, "ended")
        if session is not None:
            batch.sessions[(session.app, session.session_id)] = session
        batch.closing += [path for kind, path in paths if kind is Kind.SESSION]


def tick(registry: Registry, batch: Batch, now: int, session_idle_ns: int) -> None:
    """The periodic check: runs whose processes are gone, sessions idle for too long."""
    batch.ended_runs += registry.tick(now)
    for session in registry.idle_sessions(now, session_idle_ns):
        batch.sessions[(session.app, session.session_id)] = session
        batch.closing.append(session.path)


def batch_bytes(batch: Batch) -> int:
    """How many bytes of lines a batch holds (what a refused batch failed to write)."""
    lines = batch.lines
    return lines.released + sum(len(line) for text in lines.by_path.values() for line in text)
