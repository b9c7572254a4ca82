"""Carry out an operator's `Maintain` job between batches: the status snapshot, retention
cleanup (noted on the daemon's timeline), rotating every file now, or a reload.

Split from `engine.py` along its seam: the engine carries batches out; this answers the
operator, through the engine's parts passed in, so it never imports the engine. Runs in
the writer's thread, like `Engine.process`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from logd.config import Config
from logd.index.registry import Registry
from logd.retention import maintenance
from logd.write.batch import Totals
from logd.write.books import Books
from logd.write.jobs import Maintain
from logd.write.sinks import Sinks
from logd.write.timeline import Timeline

# A logd:cleanup event names this many deleted paths at most (the count is always there).
CLEANUP_PATHS_SHOWN = 50


class Maintainer:
    """Carries out `Maintain` jobs; keeps what the last cleanup did, for `logd-ctl status`.

    Args:
        registry, books, sinks, timeline, totals: the engine's, shared.
        reload: applies a new configuration (`Engine.reload`).
    """

    def __init__(
        self,
        registry: Registry,
        books: Books,
        sinks: Sinks,
        timeline: Timeline,
        totals: Totals,
        reload: Callable[[Config], None],
    ) -> None:
        self.registry = registry
        self.books = books
        self.sinks = sinks
        self.timeline = timeline
        self.totals = totals
        self.reload = reload
        self.last_cleanup: dict[str, Any] | None = None

    def maintain(self, job: Maintain, now: int, config: Config) -> None:
        """Carry out `job` under `config`, the engine's in force (its root is the engine's
        root: a reload keeps it), and mark it done."""
        job.done = True
        if job.action == "snapshot":
            job.result = maintenance.snapshot(
                self.registry,
                open_files=self.sinks.open_count,
                totals=asdict(self.totals),
                last_cleanup=self.last_cleanup,
            )
        elif job.action == "cleanup":
            report, self.last_cleanup = maintenance.cleanup(
                config.root,
                config.retention,
                registry=self.registry,
                handles=self.sinks,
                store=self.books.store,
                index=self.books.index,
                utc=config.layout.utc,
                dry_run=job.dry_run,
                now_ns=now,
            )
            job.result = report.as_dict()
            if report.deleted and not job.dry_run:
                self.timeline.note(
                    now,
                    "logd:cleanup",
                    f"deleted {len(report.deleted)} path(s)",
                    deleted=len(report.deleted),
                    freed_bytes=report.freed_bytes,
                    paths=report.deleted[:CLEANUP_PATHS_SHOWN],
                )
        elif job.action == "rotate":
            job.result = {"rotated": self.sinks.rotate_all()}
        elif job.action == "reload" and job.config is not None:
            self.reload(job.config)
            job.result = {"reloaded": True}
