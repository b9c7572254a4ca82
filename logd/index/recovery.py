"""Runs a previous daemon left behind, read back from their registry rows and
``metadata.json``: adopted while their processes live, else ended.

Synchronous reads, in the writer's thread: the engine calls these at start and when a
record names a run it no longer holds in memory. Lifecycle rules stay in `Registry`
(`adopt`, `pid_alive`); this module only reads and reports, and the engine writes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from logd.index.registry import Registry
from logd.index.states import CallState, RunState, SessionState
from logd.index.store import RegistryStore

__all__ = [
    "persisted_run",
    "persisted_session",
    "read_metadata",
    "recover_open_runs",
    "reset_to_committed",
    "run_from_row",
]

# These lines came from the engine before this module existed; they keep its logger name.
log = logging.getLogger("logd.engine")


def read_metadata(path: Path) -> dict[str, Any]:
    """A run's ``metadata.json``.

    Raises:
        OSError: unreadable; ValueError: not JSON, or not an object.
    """
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError("metadata is not an object")
    return data


def run_from_row(root: Path, row: dict[str, Any]) -> RunState:
    """A run as its registry row has it: committed with each batch that touched it, so
    exact after a crash, where ``metadata.json`` may be up to 10 s behind. A row from
    before the row held every field falls back to the file.

    Raises:
        OSError, ValueError, KeyError, TypeError: neither can be read.
    """
    try:
        return RunState.from_metadata(row)
    except (ValueError, KeyError, TypeError):
        return RunState.from_metadata(read_metadata(root / str(row["path"]) / "metadata.json"))


def persisted_run(store: RegistryStore, root: Path, app: str, run_id: str) -> RunState | None:
    """A run this daemon does not hold in memory, from its registry row."""
    row = store.get_run(app, run_id)
    if row is None:
        return None
    try:
        return run_from_row(root, row)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def persisted_session(
    store: RegistryStore, app: str, session_id: str, now: int
) -> SessionState | None:
    """A session this daemon does not hold in memory, from its registry row."""
    row = store.get_session(app, session_id)
    if row is None:
        return None
    try:
        return SessionState.from_row(row, now)
    except (KeyError, ValueError, TypeError):
        log.warning("session %s/%s: unreadable registry row; counted anew", app, session_id)
        return None


def recover_open_runs(store: RegistryStore, registry: Registry, now: int) -> list[RunState]:
    """Runs a previous daemon left open: adopted if their processes live, else ended:
    as `shutdown` when their app:shutdown was written, else as `lost`.

    A run's registry row is committed with every batch that counted records for it, so
    it is read rather than ``metadata.json``, which may lag behind (it is rewritten at
    most every few seconds, and a stop on a full disk cannot write it at all).

    Args:
        now: ns since the epoch; the end time of the runs found lost.

    Returns:
        The runs found lost, for the caller to write: nothing here writes, so a daemon
        can start (and recover) on a full disk.
    """
    lost = []
    for row in store.open_runs():
        try:
            run = RunState.from_metadata(row)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning(
                "run %s/%s: unreadable registry row (%s); left as it is",
                row["app"],
                row["run_id"],
                exc,
            )
            continue
        if run.pids and any(registry.pid_alive(pid) for pid in run.pids):
            registry.adopt(run)
            continue
        if run.tcp or run.container:
            # A TCP peer (or a container, behind dockerd) has no pid to ask about: it gets
            # the grace period to reconnect and carry on, as after an idle close, and ends
            # as disconnected without.
            run.idle_since_ns = now
            registry.adopt(run)
            continue
        if run.shutdown_seen and run.shutdown_ns is not None:
            # Its app:shutdown was written; the daemon stopped before its connection
            # closed. A clean end, at the producer's time.
            run.end_ns, run.end_reason = max(run.shutdown_ns, run.last_ns), "shutdown"
        else:
            # The last record's own time: when the run was last known alive.
            run.end_ns, run.end_reason = max(run.last_ns, run.start_ns) or now, "lost"
        lost.append(run)
    return lost


def reset_to_committed(
    store: RegistryStore,
    *,
    sessions: Iterable[SessionState],
    calls: Iterable[CallState],
) -> None:
    """A batch failed (the disk refused) and its producers will send it again: put the
    counts it added to its sessions and calls back to their registry rows, which are
    the last committed batch's (a row is committed with every batch that touches it).
    Else the resend would be counted twice. Units the batch created start again from
    zero; runs are `write.pending`'s.
    """
    for session in sessions:
        kept = persisted_session(store, session.app, session.session_id, session.seen_ns)
        if kept is None:
            session.records, session.runs = 0, []
            continue
        session.records, session.runs = kept.records, kept.runs
        session.first_ns, session.last_ns = kept.first_ns, kept.last_ns
    for call in calls:
        call_row = store.get_call(call.app, call.call_id, call.day)
        if call_row is None:
            call.records = call.errors = 0
            continue
        call.records, call.errors = int(call_row["records"]), int(call_row["errors"])
