"""A full disk, with real daemons and producers: nothing acknowledged is lost or counted
twice, stopping and starting stay clean, `logd-ctl` keeps answering, and once space
returns the books (metadata.json, the registry, the files) agree.

The root is on a small filesystem of the test's own (`tests/e2e/disk.py`).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.disk import SmallDisk
from tests.e2e.procs import DaemonProcess, wait_for

pytestmark = pytest.mark.e2e

APP = "full"
# Reads commands from stdin: `log <first> <count>`, `flush <seconds>`, `run`; exits at EOF.
PRODUCER = r"""
import logging, sys
import logd_client as logd

logd.install(app=sys.argv[1], exit_flush_timeout_s=1)
log = logging.getLogger(sys.argv[1] + ".work")
for line in sys.stdin:
    command, *args = line.split()
    if command == "log":
        first, count = int(args[0]), int(args[1])
        for i in range(first, first + count):
            log.info("n=%s:%d %s", sys.argv[2], i, "x" * 100)
        print("logged", flush=True)
    elif command == "flush":
        print(logd.flush(float(args[0])), flush=True)
    elif command == "run":
        print(logd.run_id(), flush=True)
"""
NUMBER = re.compile(r" - n=(\w+):(\d+) x+$")
# More than fits in the free part of a tmpfs page: a batch of it needs a new block.
CHUNK = 100


class Producer:
    """A real producer process driven line by line; remembers what `flush()` confirmed."""

    def __init__(self, daemon: DaemonProcess, name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PRODUCER, APP, name],
            env=daemon.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.logged = 0
        self.acked = 0
        self._flushing = 0
        self.run_id = self._ask("run")

    def log(self, count: int = CHUNK) -> None:
        assert self._ask(f"log {self.logged} {count}") == "logged"
        self.logged += count

    def flush(self, timeout: float) -> bool:
        self.start_flush(timeout)
        return self.flushed()

    def start_flush(self, timeout: float) -> None:
        """Ask for a flush without waiting for its answer (`flushed()`), so that several
        producers wait out their timeouts at the same time."""
        self._flushing = self.logged
        self._tell(f"flush {timeout}")

    def flushed(self) -> bool:
        """The answer to `start_flush()`."""
        ok = self._answer() == "True"
        if ok:
            self.acked = self._flushing
        return ok

    def finish(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0
        self._close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._close()

    def _ask(self, line: str) -> str:
        self._tell(line)
        return self._answer()

    def _tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _answer(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def _close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()


@pytest.fixture
def disk(tmp_path: Path, socket_dir: Path) -> Iterator[SmallDisk]:
    small = SmallDisk(tmp_path, socket_dir)
    try:
        yield small
    finally:
        small.close()


def ctl(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    control = daemon.socket.parent / "ctl.sock"
    return subprocess.run(
        [sys.executable, "-m", "logd.ctl", "--control", str(control), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=daemon.env,
    )


def runs(daemon: DaemonProcess) -> list[dict[str, Any]]:
    done = ctl(daemon, "--json", "runs", "--app", APP)
    assert done.returncode == 0, done.stderr
    listed: list[dict[str, Any]] = json.loads(done.stdout)
    return listed


def run_folders(root: Path) -> list[Path]:
    runs_dir = root / APP / "runs"
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.is_symlink())


def leftovers(root: Path) -> list[str]:
    """Temp files anywhere, and run folders without metadata.json."""
    found = [str(p) for p in root.rglob("*.tmp")]
    return found + [str(p) for p in run_folders(root) if not (p / "metadata.json").exists()]


def assert_books_agree(daemon: DaemonProcess, producers: list[Producer]) -> None:
    """Each run's metadata.json, its `logd-ctl runs` row and its files tell one story,
    and every record a producer had confirmed is in the files exactly once."""
    assert leftovers(daemon.root) == []
    rows = {row["run_id"]: row for row in runs(daemon)}
    seen: Counter[tuple[str, int]] = Counter()
    for folder in run_folders(daemon.root):
        meta = json.loads((folder / "metadata.json").read_text())
        lines = (folder / "main.log").read_text().splitlines()
        row = rows.pop(folder.name)
        assert meta["records"] == len(lines), folder.name
        for key in ("records", "counts", "bytes", "files", "end_reason"):
            assert row[key] == meta[key], (folder.name, key)
        on_disk = {p.name: p.stat().st_size for p in folder.iterdir() if p.suffix == ".log"}
        assert sorted(on_disk) == meta["files"]
        assert sum(on_disk.values()) == meta["bytes"]
        for line in lines:
            if match := NUMBER.search(line):
                seen[(match[1], int(match[2]))] += 1
    assert rows == {}, "registry rows without a run folder"
    for producer in producers:
        for i in range(producer.acked):
            assert seen[(producer.name, i)] == 1, (producer.name, i, seen[(producer.name, i)])


def ended(daemon: DaemonProcess, *run_ids: str) -> bool:
    by_id = {row["run_id"]: row for row in runs(daemon)}
    return all(run_id in by_id and not by_id[run_id]["active"] for run_id in run_ids)


def test_a_batch_refused_by_a_full_disk_leaves_no_run_folder_behind(disk: SmallDisk) -> None:
    """Item 5: a run appears (folder, metadata.json, registry row) with its first batch
    that gets through; a refused one leaves nothing, whether or not it comes again."""
    daemon = disk.start_daemon()
    disk.fill()
    stays, dies = Producer(daemon, "stays"), Producer(daemon, "dies")
    for producer in (stays, dies):
        producer.log()
        producer.start_flush(2)
    for producer in (stays, dies):
        assert not producer.flushed()
    assert run_folders(disk.root) == []
    assert leftovers(disk.root) == []
    assert runs(daemon) == []
    dies.kill()
    disk.free()
    assert stays.flush(30)
    stays.log()
    assert stays.flush(30)
    stays.finish()
    wait_for(lambda: ended(daemon, stays.run_id))
    assert [p.name for p in run_folders(disk.root)] == [stays.run_id]
    assert_books_agree(daemon, [stays])
    # The daemon's own timeline has the refusal on record once it is over (#16 item 12).
    # Each refusal is written once it is over, as a pair: refused, then recovered.
    wait_for(lambda: any(e["kv"]["batches"] >= 2 for e in disk_events(daemon)), 10)
    events = disk_events(daemon)
    assert len(events) % 2 == 0
    for refused, recovered in zip(events[::2], events[1::2], strict=True):
        assert (refused["kv"]["state"], recovered["kv"]["state"]) == ("refused", "recovered")
        assert "full" in refused["kv"]["error"] or "No space" in refused["kv"]["error"]
        assert refused["kv"]["bytes"] > 0
        assert recovered["kv"]["duration_ms"] >= 0
        assert recovered["ts"] >= refused["ts"]
    assert daemon.stop() == 0


def disk_events(daemon: DaemonProcess) -> list[dict[str, Any]]:
    done = ctl(daemon, "--json", "events", "--app", "logd", "--type", "system:disk")
    assert done.returncode == 0, done.stderr
    return sorted(json.loads(done.stdout), key=lambda e: (e["ts"], e["kv"]["state"] != "refused"))


def test_sigterm_on_a_full_disk_exits_cleanly_and_the_next_start_takes_over(
    disk: SmallDisk,
) -> None:
    """Item 6: what a stop cannot write is logged once, the exit status is 0, and the
    next start carries on from the registry rows, so the counts still add up."""
    daemon = disk.start_daemon()
    producer = Producer(daemon, "p")
    for _ in range(3):  # batches after the first leave metadata.json behind for a while
        producer.log()
        assert producer.flush(10)
    disk.fill()
    producer.log()
    assert not producer.flush(2)
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.stderr
    assert daemon.stderr.count("stopped without writing") == 1
    disk.free()
    daemon = disk.start_daemon()
    assert producer.flush(30)
    producer.finish()
    wait_for(lambda: ended(daemon, producer.run_id))
    assert_books_agree(daemon, [producer])
    assert daemon.stop() == 0


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_the_daemon_starts_on_a_full_disk_and_recovers_once_space_returns(
    disk: SmallDisk, stop: signal.Signals
) -> None:
    """Item 7: with runs left open by the previous daemon (stopped or crashed), a start
    on a full disk serves, acknowledges nothing, and finishes recovery when it can."""
    first = disk.start_daemon()
    gone, alive = Producer(first, "gone"), Producer(first, "alive")
    for producer in (gone, alive):
        producer.log()
        assert producer.flush(10)
    first.proc.send_signal(stop)
    first.proc.wait(timeout=30)
    gone.kill()
    disk.fill()
    daemon = disk.start_daemon()
    assert ctl(daemon, "status").returncode == 0
    if disk.tmpfs:
        # (RLIMIT_FSIZE also refuses the daemon's reads of a crashed daemon's WAL, which
        # need a write to its -shm; a full disk does not.)
        assert {row["run_id"] for row in runs(daemon)} == {gone.run_id, alive.run_id}
    alive.log()
    assert not alive.flush(3)
    assert daemon.proc.poll() is None
    disk.free()
    assert alive.flush(30)
    wait_for(lambda: ended(daemon, gone.run_id))
    assert {row["run_id"]: row["end_reason"] for row in runs(daemon)}[gone.run_id] == "lost"
    alive.finish()
    wait_for(lambda: ended(daemon, alive.run_id))
    assert_books_agree(daemon, [gone, alive])
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.stderr


def test_read_only_control_requests_answer_while_the_disk_is_full(disk: SmallDisk) -> None:
    """Item 8: status, runs, sessions, calls, events and tail never need to write."""
    daemon = disk.start_daemon()
    producer = Producer(daemon, "p")
    producer.log()
    assert producer.flush(10)
    disk.fill()
    producer.log()
    assert not producer.flush(2)

    metadata = disk.root / APP / "runs" / producer.run_id / "metadata.json"

    def every_batch_fails() -> bool:
        # Once the run's metadata is due again (10 s after it was written), every batch
        # the writer runs is refused, a status request's own included.
        status = ctl(daemon, "--json", "status")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["last_error"].startswith("write failed")
        return time.time() - metadata.stat().st_mtime > 12

    wait_for(every_batch_fails, 30)
    for args in (
        ["runs"],
        ["run", "current", "--app", APP],
        ["sessions"],
        ["calls"],
        ["events"],
        ["tail", "--app", APP],
    ):
        done = ctl(daemon, *args)
        assert done.returncode == 0, (args, done.stderr)
    assert producer.run_id in ctl(daemon, "runs").stdout
    disk.free()
    assert producer.flush(30)
    producer.finish()
    assert daemon.stop() == 0


def reloads(daemon: DaemonProcess) -> int:
    """SIGHUPs the daemon answered (in a batch the disk refused, the reload fails)."""
    return sum(daemon.stderr.count(text) for text in ("configuration reloaded", "reload failed"))


def test_the_daemons_own_log_degrades_quietly_on_a_full_disk(disk: SmallDisk) -> None:
    """Item 9: no logging-error tracebacks; stderr hears of the episode once, and
    logd.log notes the gap once it can write again."""
    daemon = disk.start_daemon()
    disk.fill()
    producer = Producer(daemon, "p")
    producer.log()
    assert not producer.flush(2)
    for _ in range(3):  # more lines the own log cannot take
        count = reloads(daemon)
        daemon.proc.send_signal(signal.SIGHUP)

        def reloaded(before: int = count) -> bool:
            return reloads(daemon) > before

        wait_for(reloaded)
    stderr = daemon.stderr
    assert "cannot write, not acknowledging" in stderr
    assert stderr.count("logd.log") == 1, stderr
    assert "Logging error" not in stderr
    assert "Traceback" not in stderr
    disk.free()
    assert producer.flush(30)
    daemon.proc.send_signal(signal.SIGHUP)
    own_log = disk.root / "logd.log"
    wait_for(lambda: "configuration reloaded" in own_log.read_text())
    assert "line(s) missing here" in own_log.read_text()
    producer.finish()
    assert daemon.stop() == 0
    assert "Logging error" not in daemon.stderr
