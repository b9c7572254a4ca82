"""What the writer does between batches at an operator's request, besides rotate and
reload: the status snapshot, and retention cleanup with the registry, handles and index
rows following the files. Runs in the writer's thread, like `Engine.process`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from logd.index.eventline import iso_utc_ms
from logd.retention.cleanup import CleanupReport, run_cleanup

if TYPE_CHECKING:
    from logd.write.engine import Engine

log = logging.getLogger("logd.engine")
# How long a producer's last written sequence is remembered: a client resends within
# minutes, a spool may wait for days.
PRODUCER_MARKS_KEPT_NS = 30 * 86_400 * 1_000_000_000


def snapshot(engine: Engine) -> dict[str, Any]:
    """What `logd-ctl status` needs from the writer's state, taken between batches."""
    registry = engine.registry
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
        "open_files": engine.sinks.open_count,
        "newest": {app: run.run_id for app, run in registry.newest.items()},
        "totals": asdict(engine.totals),
        "last_cleanup": engine.last_cleanup,
    }


def cleanup(engine: Engine, *, dry_run: bool, now_ns: int) -> CleanupReport:
    """Apply the retention policy now; registry rows and handles follow the files."""
    registry = engine.registry
    engine.sinks.settle()  # no rotated copy half compressed while the tree is scanned
    report = run_cleanup(
        engine.root,
        engine.config.retention,
        now_ns / 1e9,
        active_runs={(r.app, r.run_id) for r in registry.runs.values() if r.active},
        active_sessions=set(registry.sessions),
        active_calls={(c.app, c.day, c.call_id) for c in registry.calls.values()},
        utc=engine.layout.utc,
        dry_run=dry_run,
    )
    if not dry_run:
        engine.sinks.forget(report.deleted)
        engine.store.delete_paths(report.deleted)
        cutoff = now_ns - int(engine.config.retention.events_days * 86400e9)
        engine.index.delete_before(iso_utc_ms(max(cutoff, 0)))
        engine.store.forget_producers(now_ns - PRODUCER_MARKS_KEPT_NS)
    engine.last_cleanup = {
        "time": iso_utc_ms(now_ns),
        **report.as_dict(),
        "errors": report.errors,
    }
    for error in report.errors:
        log.warning("cleanup: %s", error)
    return report
