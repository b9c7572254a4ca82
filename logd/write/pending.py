"""What a batch the disk refused must take back, and what it leaves for the next batch.

A refused batch is not acknowledged, so its producers send its records again: the counts
it added to runs are taken back and the runs it opened are forgotten, or a full disk
would count every retry. What will not come again (a run ended by a closed connection
or a tick, a run found lost at start, a session or call that ended) is kept here and
written with the next batch that succeeds. No I/O: the engine does the writing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from logd.index.states import CallState, RunState, SessionState

if TYPE_CHECKING:
    from logd.index.registry import Registry

__all__ = ["Pending", "Tally"]

RunKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Tally:
    """A run's counts as its last successful batch left them."""

    records: int
    counts: dict[str, int]
    bytes: int
    files: frozenset[str]
    dropped_by_client: int
    start_ns: int
    last_ns: int

    @staticmethod
    def taken(runs: Iterable[RunState]) -> dict[RunKey, Tally]:
        """The tallies of `runs` as they stand now, by run."""
        return {(run.app, run.run_id): Tally.of(run) for run in runs}

    @classmethod
    def of(cls, run: RunState) -> Tally:
        return cls(
            run.records,
            dict(run.counts),
            run.bytes,
            frozenset(run.files),
            run.dropped_by_client,
            run.start_ns,
            run.last_ns,
        )

    def restore(self, run: RunState) -> None:
        run.records = self.records
        run.counts = dict(self.counts)
        run.bytes = self.bytes
        run.files = set(self.files)
        run.dropped_by_client = self.dropped_by_client
        run.start_ns = self.start_ns
        run.last_ns = self.last_ns


@dataclass(slots=True)
class Pending:
    """The engine's memory of refused batches; see the module docstring."""

    tallies: dict[RunKey, Tally] = field(default_factory=dict)
    runs: dict[RunKey, RunState] = field(default_factory=dict)
    sessions: dict[tuple[str, str], SessionState] = field(default_factory=dict)
    calls: dict[tuple[str, str, str], CallState] = field(default_factory=dict)
    closing: list[str] = field(default_factory=list)
    # Apps whose `runs/current` should name this run once a batch gets through.
    current: dict[str, RunState] = field(default_factory=dict)

    def committed(self, runs: Iterable[RunState]) -> None:
        """A batch got through: these runs' counts are now what a refusal goes back to."""
        for run in runs:
            self.tallies[(run.app, run.run_id)] = Tally.of(run)

    def written(self) -> None:
        """The carried-over writes went out with a successful batch."""
        self.runs.clear()
        self.sessions.clear()
        self.calls.clear()
        self.closing.clear()

    def refused(
        self,
        registry: Registry,
        *,
        touched: Iterable[RunState],
        opened: Iterable[RunState],
        ended: Iterable[RunState],
        rewritten: Iterable[RunState],
        sessions: dict[tuple[str, str], SessionState],
        calls: dict[tuple[str, str, str], CallState],
        closing: Iterable[str],
    ) -> None:
        """Undo a refused batch in memory and keep what must still be written.

        Args:
            touched: runs the batch's records went to; their counts go back.
            opened: runs the batch opened (or took back from disk); forgotten, since
                their producers send the same records again.
            ended: runs the batch ended; written with the next batch that succeeds.
            rewritten: runs whose metadata the batch may have written: written again.
        """
        forgotten = set()
        for run in opened:
            registry.discard(run)
            forgotten.add(id(run))
            self.runs.pop((run.app, run.run_id), None)
        for run in touched:
            tally = self.tallies.get((run.app, run.run_id))
            if tally is not None and id(run) not in forgotten:
                tally.restore(run)
        for run in rewritten:
            run.dirty = True
            run.written_ns = 0
        for run in ended:
            if id(run) not in forgotten:
                self.runs[(run.app, run.run_id)] = run
        self.sessions.update(sessions)
        self.calls.update(calls)
        self.closing += closing

    def forget_missing(self, live: Iterable[RunKey]) -> None:
        """Drop the tallies of runs the registry no longer holds."""
        keep = set(live)
        self.tallies = {key: tally for key, tally in self.tallies.items() if key in keep}
