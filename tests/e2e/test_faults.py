"""Faults with real processes: the daemon killed, started late, out of disk; producers killed.

Each producer logs numbered records; the test then checks that every number is on disk.
`LOGD_FAULT_RECORDS` raises the per-producer count for a soak run (issue 3 asks for
4 x 50k); CI runs the short default.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.procs import DaemonProcess, start_daemon, wait_for

pytestmark = pytest.mark.e2e
RECORDS = int(os.environ.get("LOGD_FAULT_RECORDS", "3000"))

PRODUCER = r"""
import logging, sys, time
import logd_client as logd

name, count, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
logd.install(app="fault")
log = logging.getLogger("fault." + name)
for i in range(count):
    log.info("n=%s:%d", name, i)
    if pause and i % 100 == 0:
        time.sleep(pause)
sys.exit(0 if logd.flush(60) else 3)
"""
NUMBER = re.compile(r" - n=(\w+):(\d+)$")


def producer(
    daemon_env: dict[str, str], name: str, count: int, pause: float = 0.0
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PRODUCER, name, str(count), str(pause)],
        env=daemon_env,
        text=True,
    )


def numbers_on_disk(root: Path) -> Counter[tuple[str, int]]:
    seen: Counter[tuple[str, int]] = Counter()
    for main in (root / "fault" / "runs").glob("*/main.log"):
        if main.parent.is_symlink():
            continue
        for line in main.read_text(encoding="utf-8").splitlines():
            assert line.startswith("[in-progress] - "), f"a line that is not whole: {line!r}"
            if " - logd_client - " in line:
                continue
            match = NUMBER.search(line)
            assert match, f"a line that is not whole: {line!r}"
            seen[(match[1], int(match[2]))] += 1
    return seen


def assert_all_arrived(root: Path, names: list[str], count: int) -> int:
    """Every numbered record is on disk; returns how many arrived twice."""
    seen = numbers_on_disk(root)
    missing = [(n, i) for n in names for i in range(count) if (n, i) not in seen]
    assert not missing, f"{len(missing)} records lost, first {missing[:5]}"
    return sum(c - 1 for c in seen.values())


def test_daemon_killed_and_restarted_mid_stream(
    daemon: DaemonProcess, log_root: Path, socket_dir: Path
) -> None:
    names = [f"p{i}" for i in range(4)]
    producers = [producer(daemon.env, name, RECORDS, pause=0.005) for name in names]
    wait_for(lambda: sum(numbers_on_disk(log_root).values()) > RECORDS // 2)
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait()
    time.sleep(0.5)
    restarted = start_daemon(log_root, socket_dir)
    try:
        codes = [p.wait(timeout=120) for p in producers]
        assert codes == [0, 0, 0, 0]
        duplicates = assert_all_arrived(log_root, names, RECORDS)
        print(f"{duplicates} duplicates after kill -9 (acks lost with the daemon)")
    finally:
        assert restarted.stop() == 0


def test_producers_started_before_the_daemon(log_root: Path, socket_dir: Path) -> None:
    sock = socket_dir / "logd.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGD_")}
    env["LOGD_ADDRESS"] = f"unix:{sock}"
    env["XDG_CACHE_HOME"] = str(socket_dir / "cache")
    names = ["early0", "early1"]
    producers = [producer(env, name, 500) for name in names]
    time.sleep(1.0)
    daemon = start_daemon(log_root, socket_dir)
    try:
        assert [p.wait(timeout=60) for p in producers] == [0, 0]
        assert assert_all_arrived(log_root, names, 500) == 0
    finally:
        assert daemon.stop() == 0


def test_killed_producer_keeps_what_was_acknowledged(daemon: DaemonProcess) -> None:
    script = r"""
import logging, sys, logd_client as logd
logd.install(app="fault")
log = logging.getLogger("fault.victim")
i = 0
while True:
    log.info("n=victim:%d", i)
    i += 1
    if i % 200 == 0 and logd.flush(10):
        print(i, flush=True)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=daemon.env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    acked = 0
    while acked < 2000:
        acked = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert assert_all_arrived(daemon.root, ["victim"], acked) == 0


FSIZE_LIMIT = 256 * 1024


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, resource.RLIM_INFINITY))


def test_file_size_limit_stops_acks_then_recovers(log_root: Path, socket_dir: Path) -> None:
    """Past RLIMIT_FSIZE the daemon must not crash or ack; once lifted, nothing is lost."""
    daemon = start_daemon(log_root, socket_dir, preexec_fn=_limit_file_size)
    try:
        script = r"""
import logging, sys, logd_client as logd
logd.install(app="fault")
log = logging.getLogger("fault.big")
for i in range(6000):
    log.info("n=big:%d", i)
print("first flush", logd.flush(3), flush=True)
sys.stdin.readline()
print("second flush", logd.flush(60), flush=True)
"""
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            env=daemon.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "first flush False"
        assert daemon.proc.poll() is None, "the daemon survived the full disk"
        assert "cannot write, not acknowledging" in daemon.stderr
        resource.prlimit(
            daemon.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        )
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "second flush True"
        proc.wait(timeout=30)
        proc.stdin.close()
        proc.stdout.close()
        assert assert_all_arrived(log_root, ["big"], 6000) == 0
    finally:
        assert daemon.stop() == 0


def test_spool_of_an_exited_producer_is_written_by_the_daemon_at_start(
    log_root: Path, socket_dir: Path, spool_dir: Path
) -> None:
    """Nobody else comes back: the daemon itself delivers the orphaned spool."""
    sock = socket_dir / "logd.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGD_")}
    env["LOGD_ADDRESS"] = f"unix:{sock}"
    env["LOGD_SPOOL_DIR"] = str(spool_dir)
    script = r"""
import logging, logd_client as logd
logd.install(app="fault", exit_flush_timeout_s=0.5)
log = logging.getLogger("fault.orphan")
for i in range(300):
    log.info("n=orphan:%d", i)
"""
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    assert list(spool_dir.glob("spool-*.msgpack")), "the producer spooled at exit"
    daemon = start_daemon(log_root, socket_dir)
    try:
        wait_for(lambda: not list(spool_dir.glob("spool-*.msgpack")))
        assert assert_all_arrived(log_root, ["orphan"], 300) == 0
        # The daemon says so once the last spool is written, a moment after it is gone.
        wait_for(lambda: "spooled message(s) left by clients that exited" in daemon.stderr)
    finally:
        assert daemon.stop() == 0
