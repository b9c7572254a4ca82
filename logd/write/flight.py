"""A batch between the writer's steps: gathered in memory, then written and syncing.

`Engine.begin` gathers a batch and writes its files; `Engine.land` commits it once they
are durable. In between, the writer may gather the next batch (`Engine.overlap`), so
everything the commit needs is taken when the files are written. Plain data, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from logd.index.states import RunState
from logd.index.store import Prepared
from logd.write.batch import Batch
from logd.write.durable import Syncing
from logd.write.jobs import Job
from logd.write.pending import RunKey, Tally
from logd.write.timeline import Fact

__all__ = ["Flight", "Gathered"]


@dataclass(slots=True)
class Gathered:
    """A batch worked out in memory: its lines, rows and the facts it took."""

    now: int
    jobs: Sequence[Job]
    batch: Batch
    facts: list[Fact]


@dataclass(slots=True)
class Flight:
    """A written batch whose files are syncing, with what its commit will need as it
    stood when the files were written."""

    gathered: Gathered
    described: list[RunState]  # runs whose metadata it wrote
    new_files: list[Path]  # metadata files it created (removed if it is refused)
    syncing: Syncing
    rows: Prepared  # the registry transaction's values
    tallies: dict[RunKey, Tally] = field(default_factory=dict)
    current: list[tuple[str, RunState]] = field(default_factory=list)  # runs/current targets
    ended: bool = False  # whether it ended a run (the registry forgets it once committed)

    @property
    def batch(self) -> Batch:
        return self.gathered.batch
