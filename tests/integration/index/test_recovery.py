"""Runs a daemon left open when it stopped, as the next daemon ends them."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from logd_client import wire

from logd.index.states import Peer
from logd.index.store import RegistryStore
from logd.ingest.orphans import SPOOL_PEER
from logd.write.engine import Engine
from logd.write.jobs import Ingest, Tick
from tests.helpers import make_config

RUN = "20251105_143052_a1b2c3d4"
T0 = 1_764_000_000_000_000_000
MS = 1_000_000


def message(*events: str | None) -> Ingest:
    entries = []
    for i, event in enumerate(events):
        record: dict[str, Any] = {"msg": "m", "app": "a", "run_id": RUN, "pid": 999_999}
        if event is not None:
            record["event_type"] = event
        entries.append((T0 + i * 100 * MS, record))
    return Ingest(Peer(1, "unix", pid=999_999), [wire.Entries("a", entries, {}, [])])


@pytest.mark.parametrize(
    ("events", "reason", "end_ms"),
    [
        pytest.param(("app:start", None, "app:shutdown"), "shutdown", 200, id="shutdown-written"),
        pytest.param(("app:start", None, None), "lost", 200, id="no-shutdown"),
    ],
)
def test_a_run_left_open_ends_by_what_its_records_say(
    tmp_path: Path, events: tuple[str | None, ...], reason: str, end_ms: int
) -> None:
    """The daemon stopped after the run's last batch but before its connection closed
    (a SIGTERM or a kill at that moment); its process is gone by the next start. A run
    whose app:shutdown was written ended cleanly, at that record's time."""
    config = make_config(tmp_path / "root", tmp_path)
    first = Engine(config, pid_alive=lambda pid: True)
    first.process([message(*events)])
    first.close()
    second = Engine(config, pid_alive=lambda pid: pid == os.getpid())
    second.close()
    meta = json.loads((tmp_path / "root/a/runs" / RUN / "metadata.json").read_text())
    assert meta["end_reason"] == reason
    (row,) = _rows(tmp_path)
    assert row["end_reason"] == reason
    end = datetime.fromisoformat(meta["end_time"]).timestamp() * 1000
    assert round(end) == (T0 // MS) + end_ms


def _rows(tmp_path: Path) -> list[dict[str, Any]]:
    store = RegistryStore(tmp_path / "root" / "index.sqlite3")
    try:
        return store.list_runs(app="a")
    finally:
        store.close()


def test_a_containers_run_left_open_waits_for_dockerd_to_bring_it_back(tmp_path: Path) -> None:
    """After a restart, a container's run is not lost (dockerd's pid says nothing of the
    container): it gets the grace to reconnect, then ends as disconnected without."""
    config = make_config(tmp_path / "root", tmp_path)
    container = {"container_id": "cd" * 32, "container_name": "/web", "source": "stdout"}
    record = {"msg": "up", "app": "a", **container}
    job = Ingest(Peer(1, "unix", pid=4242), [wire.Entries("a.web", [(T0, record)], {}, [])])
    first = Engine(config, pid_alive=lambda pid: True, clock_ns=lambda: T0)
    first.process([job])
    first.close()
    now = [T0 + 60 * 1000 * MS]
    second = Engine(config, pid_alive=lambda pid: False, clock_ns=lambda: now[0])
    (row,) = _rows(tmp_path)
    assert (row["end_reason"], row["container_name"]) == (None, "web")
    second.process([Tick()])
    assert _rows(tmp_path)[0]["end_reason"] is None  # within the grace
    now[0] += 6 * 1000 * MS
    second.process([Tick()])
    second.close()
    (row,) = _rows(tmp_path)
    assert row["end_reason"] == "disconnected"
    assert row["container_id"] == "cd" * 32


def test_a_spool_for_a_run_found_lost_while_its_row_could_not_be_written_counts_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart finds a run lost (its process exited while no daemon ran, leaving a
    spool), but cannot write that yet: another writer holds index.sqlite3. When the
    spool arrives, its records reopen the run the registry holds as lost, and the books
    count them: the stale lost state must not be written over them."""
    monkeypatch.setattr("logd.index.store.BUSY_TIMEOUT_MS", 50)
    config = make_config(tmp_path / "root", tmp_path)
    first = Engine(config, pid_alive=lambda pid: True)
    first.process([message("app:start", None, None)])
    first.close()  # as a crash leaves it: the run open

    other = sqlite3.connect(tmp_path / "root" / "index.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the index
    # Opening the index finds the run lost, and cannot write that yet.
    second = Engine(config, pid_alive=lambda pid: pid == os.getpid())
    other.execute("ROLLBACK")
    other.close()
    spooled = [
        (T0 + (3 + i) * 100 * MS, {"msg": "late", "app": "a", "run_id": RUN, "pid": 999_999})
        for i in range(2)
    ]
    second.process([Ingest(SPOOL_PEER, [wire.Entries("a", spooled, {}, [])])])
    second.close()
    meta = json.loads((tmp_path / "root/a/runs" / RUN / "metadata.json").read_text())
    lines = (tmp_path / "root/a/runs" / RUN / "main.log").read_text().splitlines()
    (row,) = _rows(tmp_path)
    assert len(lines) == 5
    assert meta["records"] == row["records"] == 5
    # Reopened by its late records, as any record of an ended run does; it ends again
    # once its processes are known to be gone.
    assert meta["end_reason"] is None
    assert row["end_reason"] is None
    assert row["active"]
