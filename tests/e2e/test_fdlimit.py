"""The daemon's descriptor budget against a low soft RLIMIT_NOFILE, as a shell gives it."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from logd.config import Limits
from logd.fdlimit import RESERVED, descriptors_needed
from tests.e2e.procs import DaemonProcess, ctl_status, start_daemon, wait_for

pytestmark = pytest.mark.e2e

SESSIONS = 600  # past the shell's soft limit below, and far past the old budget of 256
PRODUCER = r"""
import logging, sys
import logd_client as logd

logd.install(app="many")
log = logging.getLogger("many")
for turn in range(2):
    for n in range(int(sys.argv[1])):
        with logd.session(f"s{n:04d}"):
            log.info("turn %d of session %d", turn, n)
sys.exit(0 if logd.flush(30) else 3)
"""


def soft_nofile(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no 'Max open files' in /proc/<pid>/limits")


def limit_soft(soft: int, hard: int | None = None) -> None:
    _, old_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, old_hard if hard is None else hard))


def run_producer(daemon: DaemonProcess, sessions: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PRODUCER, str(sessions)],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_a_low_soft_limit_is_raised_and_every_live_session_keeps_its_file_open(
    log_root: Path, socket_dir: Path
) -> None:
    needed = descriptors_needed(Limits())
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard == resource.RLIM_INFINITY or hard >= needed, f"hard limit {hard} < {needed}"
    daemon = start_daemon(log_root, socket_dir, preexec_fn=lambda: limit_soft(256))
    try:
        assert soft_nofile(daemon.proc.pid) == needed
        run_producer(daemon, SESSIONS)
        files = sorted(log_root.glob("many/sessions/session_*.jsonl"))
        assert len(files) == SESSIONS
        assert all(len(f.read_text().splitlines()) == 2 for f in files)
        # Held open, not closed and reopened per batch: the budget covers them all.
        open_files = ctl_status(daemon)["open_files"]
        assert isinstance(open_files, int)
        assert open_files > SESSIONS
        assert "open file limit" not in daemon.stderr
    finally:
        assert daemon.stop() == 0


def test_a_hard_limit_below_the_need_is_one_warning_and_the_daemon_still_writes(
    log_root: Path, socket_dir: Path
) -> None:
    daemon = start_daemon(log_root, socket_dir, preexec_fn=lambda: limit_soft(200, 200))
    try:
        assert soft_nofile(daemon.proc.pid) == 200
        warnings = [line for line in daemon.stderr.splitlines() if "open file limit" in line]
        assert len(warnings) == 1
        assert "200" in warnings[0]
        assert "LimitNOFILE" in warnings[0]
        run_producer(daemon, 20)
        assert len(list(log_root.glob("many/sessions/session_*.jsonl"))) == 20
    finally:
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.stderr


def test_a_reload_that_raises_open_files_raises_the_limit_too(
    log_root: Path, socket_dir: Path
) -> None:
    config = socket_dir / "logd.toml"
    config.write_text("[limits]\nopen_files = 100\nmax_connections = 100\n")
    daemon = start_daemon(
        log_root, socket_dir, preexec_fn=lambda: limit_soft(128), args=("--config", str(config))
    )
    try:
        assert soft_nofile(daemon.proc.pid) == 100 + 100 + RESERVED
        config.write_text("[limits]\nopen_files = 1000\nmax_connections = 100\n")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in daemon.stderr)
        assert soft_nofile(daemon.proc.pid) == 1000 + 100 + RESERVED
        run_producer(daemon, SESSIONS)  # more live sessions than the first budget held
        open_files = ctl_status(daemon)["open_files"]
        assert isinstance(open_files, int)
        assert open_files > SESSIONS
    finally:
        assert daemon.stop() == 0
