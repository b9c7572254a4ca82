"""Temp files a SIGKILL left in the tree go at the next cleanup, and nothing else does."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.procs import ctl_json, start_daemon

pytestmark = pytest.mark.e2e

PRODUCER = r"""
import logging, sys
import logd_client as logd

logd.install(app="shop")
with logd.session("s1"):
    logging.getLogger("shop").info("an order")
print(logd.run_id(), flush=True)
sys.exit(0 if logd.flush(20) else 3)
"""


def test_a_cleanup_after_a_crash_removes_the_temp_files_it_left(
    log_root: Path, socket_dir: Path
) -> None:
    daemon = start_daemon(log_root, socket_dir)
    produced = subprocess.run(
        [sys.executable, "-c", PRODUCER],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    run_id = produced.stdout.strip()
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait()
    # What a SIGKILL in the middle of replacing metadata.json or runs/current, or of a
    # gzip written through a hidden name, leaves behind.
    run_dir = log_root / "shop" / "runs" / run_id
    leftovers = {
        f"shop/runs/{run_id}/.metadata.json.tmp": "{",
        "shop/runs/.current.txt.tmp": run_id,
        "shop/sessions/.session_s1.jsonl.1.gz.tmp": "\x1f\x8b",
    }
    for rel, text in leftovers.items():
        (log_root / rel).write_text(text)
    (log_root / "shop/runs/.current.tmp").symlink_to(run_id)
    daemon = start_daemon(log_root, socket_dir)
    try:
        report = ctl_json(daemon, "cleanup")
        assert isinstance(report, dict)
        assert sorted(report["deleted"]) == sorted([*leftovers, "shop/runs/.current.tmp"])
        assert report["freed_bytes"] > 0
        for rel in report["deleted"]:
            assert not (log_root / rel).is_symlink()
            assert not (log_root / rel).exists()
        assert json.loads((run_dir / "metadata.json").read_text())["run_id"] == run_id
        assert (log_root / "shop/sessions/session_s1.jsonl").read_text().count("an order") == 1
        runs = ctl_json(daemon, "runs")
        assert isinstance(runs, list)
        assert [r["run_id"] for r in runs] == [run_id]
        again = ctl_json(daemon, "cleanup")
        assert isinstance(again, dict)
        assert again["deleted"] == []
    finally:
        assert daemon.stop() == 0
