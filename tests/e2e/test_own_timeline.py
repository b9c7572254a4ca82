"""The daemon's own timeline (#16 item 12): start, stop, rotation and reload as events of
app `logd`, in `<root>/logd/events.log` and the index, across a restart."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from logd.index.eventline import parse_event_line
from tests.e2e.procs import DaemonProcess, start_daemon, wait_for
from tests.e2e.test_ctl import as_json, produce, wait_ctl_ready

pytestmark = pytest.mark.e2e

PRODUCER = r"""
import logging, sys
import logd_client as logd

logd.install(app="busy")
for i in range(50):
    logging.getLogger("busy").info("record %d", i)
print(logd.run_id(), flush=True)
sys.exit(0 if logd.flush(20) else 3)
"""


def own_events(daemon: DaemonProcess) -> list[dict[str, Any]]:
    """The index's `logd` events, oldest first."""
    events: list[dict[str, Any]] = as_json(daemon, "events", "--app", "logd")
    return sorted(events, key=lambda e: e["ts"])


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event_type"] == event_type]


def test_start_rotate_stop_and_restart_are_on_the_daemons_timeline(
    log_root: Path, socket_dir: Path
) -> None:
    daemon = start_daemon(log_root, socket_dir)
    try:
        wait_ctl_ready(daemon)
        wait_for(lambda: of_type(own_events(daemon), "logd:start"), 10)
        (start,) = own_events(daemon)
        assert start["app"] == "logd"
        assert start["source"] == "logd"
        assert start["kv"]["pid"] == daemon.proc.pid
        assert start["kv"]["root"] == str(log_root)
        assert any(str(daemon.socket) in name for name in start["kv"]["listeners"])
        assert start["kv"]["version"]
        run_id = produce(daemon, PRODUCER)
        main_log = f"busy/runs/{run_id}/main.log"
        size = (log_root / main_log).stat().st_size
        as_json(daemon, "rotate")
        # Rotations are written with the next batch; the ticker makes one within seconds.
        wait_for(lambda: of_type(own_events(daemon), "system:log_rotated"), 10)
        rotated = {
            e["kv"]["file"]: e["kv"]["size"]
            for e in of_type(own_events(daemon), "system:log_rotated")
        }
        assert rotated[main_log] == size
        first_pid = daemon.proc.pid
    finally:
        assert daemon.stop() == 0
    daemon = start_daemon(log_root, socket_dir)
    try:
        wait_ctl_ready(daemon)
        wait_for(lambda: len(of_type(own_events(daemon), "logd:start")) == 2, 10)
        events = own_events(daemon)
        kinds = [e["event_type"] for e in events]
        stop = kinds.index("logd:stop")
        assert kinds[0] == "logd:start"
        assert kinds[-1] == "logd:start"
        assert 0 < stop < len(kinds) - 1
        assert events[stop]["kv"]["pid"] == first_pid
        assert events[stop]["kv"]["records_written"] >= 50
        assert events[-1]["kv"]["pid"] == daemon.proc.pid
    finally:
        assert daemon.stop() == 0
    daemon = start_daemon(log_root, socket_dir)
    try:
        wait_ctl_ready(daemon)
        third_pid = daemon.proc.pid
        own_events_after = [e for e in own_events(daemon) if e["kv"].get("pid") != third_pid]
    finally:
        assert daemon.stop() == 0
    # The books agree with the file: every indexed event is a line of logd/events.log.
    lines = [
        line
        for part in sorted((log_root / "logd").glob("events*"))
        for line in (
            gzip.decompress(part.read_bytes()).decode()
            if part.suffix == ".gz"
            else part.read_text()
        ).splitlines()
    ]
    parsed = [parse_event_line(line) for line in lines]
    kinds_in_file = [p.event_type for p in parsed]
    assert kinds_in_file.count("logd:start") == 3
    assert kinds_in_file.count("logd:stop") == 3
    assert kinds_in_file.count("system:log_rotated") == len(rotated)
    # The third daemon's own start and stop are in the file, not in what it was asked.
    assert len(parsed) == len(own_events_after) + 2
    assert sorted((e["ts"], e["event_type"]) for e in own_events_after) == sorted(
        (p.ts, p.event_type) for p in parsed if p.fields.get("pid") != third_pid
    )
