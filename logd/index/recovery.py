"""Runs a previous daemon left behind, read back from their registry rows and
``metadata.json``: adopted while their processes live, else ended as lost.

Synchronous reads, in the writer's thread: the engine calls these at start and when a
record names a run it no longer holds in memory. Lifecycle rules stay in `Registry`
(`adopt`, `pid_alive`); this module only reads and reports, and the engine writes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from logd.index.registry import Registry
from logd.index.states import RunState
from logd.index.store import RegistryStore

__all__ = ["persisted_run", "read_metadata", "recover_open_runs"]

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


def persisted_run(store: RegistryStore, root: Path, app: str, run_id: str) -> RunState | None:
    """A run this daemon does not hold in memory, from its registry row and metadata."""
    row = store.get_run(app, run_id)
    if row is None:
        return None
    try:
        return RunState.from_metadata(read_metadata(root / str(row["path"]) / "metadata.json"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recover_open_runs(store: RegistryStore, registry: Registry, now: int) -> list[RunState]:
    """Runs a previous daemon left open: adopted if their processes live, else lost.

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
        run.end_ns, run.end_reason = now, "lost"
        lost.append(run)
    return lost
