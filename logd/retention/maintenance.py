"""What the writer does between batches at an operator's request, besides rotate and
reload: the status snapshot, and retention cleanup with the registry, handles and index
rows following the files. Runs in the writer's thread, like `Engine.process`.

Everything it touches is passed in by the engine, so retention never imports the writer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from logd.config import Retention
from logd.index.eventline import iso_utc_ms
from logd.index.events import EventIndex
from logd.index.registry import Registry
from logd.index.store import RegistryStore
from logd.retention.cleanup import CleanupReport, run_cleanup

log = logging.getLogger("logd.engine")
# How long a producer's last written sequence is remembered: a client resends within
# minutes, a spool may wait for days.
PRODUCER_MARKS_KEPT_NS = 30 * 86_400 * 1_000_000_000


class Handles(Protocol):
    """The writer's open files, as cleanup needs them (`write.sinks.Sinks`)."""

    def settle(self) -> None: ...
    def forget(self, deleted: Iterable[str]) -> None: ...


def snapshot(
    registry: Registry,
    *,
    open_files: int,
    totals: Mapping[str, Any],
    last_cleanup: dict[str, Any] | None,
) -> dict[str, Any]:
    """What `logd-ctl status` needs from the writer's state, taken between batches."""
    conn_runs: dict[int, list[tuple[str, str]]] = {}
    for run in registry.runs.values():
        for conn in run.conns:
            conn_runs.setdefault(conn, []).append((run.app, run.run_id))
    return {
        "active": {
            "runs": sum(1 for run in registry.runs.values() if run.active),
            "sessions": len(registry.sessions),
            "calls": len(registry.calls),
        },
        "conn_runs": conn_runs,
        "open_files": open_files,
        "newest": {app: run.run_id for app, run in registry.newest.items()},
        "totals": dict(totals),
        "last_cleanup": last_cleanup,
    }


def cleanup(
    root: Path,
    retention: Retention,
    *,
    registry: Registry,
    handles: Handles,
    store: RegistryStore,
    index: EventIndex,
    utc: bool,
    dry_run: bool,
    now_ns: int,
) -> tuple[CleanupReport, dict[str, Any]]:
    """Apply the retention policy now; registry rows and handles follow the files.

    Returns the report and what `logd-ctl status` shows as the last cleanup.
    """
    handles.settle()  # no rotated copy half compressed while the tree is scanned
    report = run_cleanup(
        root,
        retention,
        now_ns / 1e9,
        active_runs={(r.app, r.run_id) for r in registry.runs.values() if r.active},
        active_sessions=set(registry.sessions),
        active_calls={(c.app, c.day, c.call_id) for c in registry.calls.values()},
        utc=utc,
        dry_run=dry_run,
    )
    if not dry_run:
        handles.forget(report.deleted)
        store.delete_paths(report.deleted)
        cutoff = now_ns - int(retention.events_days * 86400e9)
        index.delete_before(iso_utc_ms(max(cutoff, 0)))
        store.forget_producers(now_ns - PRODUCER_MARKS_KEPT_NS)
    last = {"time": iso_utc_ms(now_ns), **report.as_dict(), "errors": report.errors}
    for error in report.errors:
        log.warning("cleanup: %s", error)
    return report, last
