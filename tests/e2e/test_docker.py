"""Containers as runs (issue 19): Docker's `fluentd` log driver against a real `logd serve`.

Each case runs twice: through a private `dockerd` (tests/e2e/docker.py, skipped with the
reason where it cannot run) with busybox containers, and through `fluent-logger-golang`
(the library inside Docker's driver) posting what the driver posts, which runs wherever
Go is installed. Checked: a run per container with its metadata, every line once, stdout
and stderr as loggers, sub-second times, the end (`disconnected`) and a restart that
continues the run, `logd-ctl` by container name, a 100,000-line burst complete, and logd
restarted under a live container.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from logd.index.tables import decode_row
from tests.e2e.docker import IMAGE, Docker, private_dockerd
from tests.e2e.golang import go_sender, sent_count
from tests.e2e.procs import DaemonProcess, start_daemon, wait_for
from tests.helpers import read_rotated_lines

pytestmark = pytest.mark.e2e

APP = "ctr"  # the tag is ctr.<name>: the app is its first part
LINES = 60
BURST = 100_000
LINE_RE = re.compile(
    rb" (\d\d:\d\d:\d\d),(\d{3}) - (stdout|stderr) - INFO - (?:line )?(\d+)(?: |$)"
)
# Long enough for the grace after a container's stream closes and a writer tick or two.
END_WAIT_S = 30


@pytest.fixture(scope="module")
def docker() -> Iterator[Docker]:
    with private_dockerd() as running:
        yield running


# --------------------------------------------------------------------------- producers


class Producer(Protocol):
    """Something that makes a container's output reach logd as Docker's driver sends it."""

    def lines(self, name: str, count: int, *, first: int) -> str:
        """`line first` .. `line first+count-1` from container `name` (every third one on
        stderr), paced; returns the container's id once all were handed over."""
        ...

    def burst(self, name: str, count: int) -> str:
        """`0` .. `count-1` as fast as they come, in the driver's default blocking mode."""
        ...

    def start_stream(self, name: str) -> str:
        """Lines without end, without blocking on logd (`mode=non-blocking`); the id."""
        ...

    def stop_stream(self, name: str) -> None: ...


_SCRIPT = (
    # The container's own file counts its starts, so a restart carries on numbering.
    "n=$(cat /starts 2>/dev/null || echo 0); echo $((n + 1)) > /starts; i=$((n * {count})); "
    "end=$((i + {count})); while [ $i -lt $end ]; do "
    'if [ $((i % 3)) = 2 ]; then echo "line $i" >&2; else echo "line $i"; fi; '
    "usleep {pause_us}; i=$((i + 1)); done"
)


class DockerProducer:
    def __init__(self, docker: Docker, daemon: DaemonProcess) -> None:
        self.docker, self.socket = docker, daemon.socket
        self.ids: dict[str, str] = {}

    def lines(self, name: str, count: int, *, first: int) -> str:
        # The container numbers its lines itself, from how often it was started.
        if name in self.ids:
            self.docker.run("start", name)
        else:
            script = _SCRIPT.format(count=count, pause_us=1000)
            options = ("--label", f"image={IMAGE}", "--log-opt", "labels=image")
            self.ids[name] = self.docker.fluentd_run(
                self.socket, name, "sh", "-c", script, options=options
            )
        assert self.docker.wait(name) == 0
        return self.ids[name]

    def burst(self, name: str, count: int) -> str:
        self.ids[name] = self.docker.fluentd_run(self.socket, name, "seq", "0", str(count - 1))
        assert self.docker.wait(name) == 0
        return self.ids[name]

    def start_stream(self, name: str) -> str:
        script = 'i=0; while true; do echo "line $i"; i=$((i + 1)); usleep 2000; done'
        options = ("--log-opt", "mode=non-blocking", "--log-opt", "max-buffer-size=8m")
        self.ids[name] = self.docker.fluentd_run(
            self.socket, name, "sh", "-c", script, options=options
        )
        return self.ids[name]

    def stop_stream(self, name: str) -> None:
        self.docker.run("stop", "-t", "1", name)


class GoProducer:
    def __init__(self, daemon: DaemonProcess) -> None:
        self.socket = daemon.socket
        self.sender = go_sender()
        self.ids: dict[str, str] = {}
        self.streams: dict[str, subprocess.Popen[str]] = {}

    def _command(self, name: str, *args: str) -> list[str]:
        self.ids.setdefault(name, secrets.token_hex(32))
        command = [str(self.sender), "-address", str(self.socket), "-mode", "container"]
        command += ["-tag", f"{APP}.{name}", "-container-id", self.ids[name]]
        return [*command, "-container-name", name, "-sub-second", *args]

    def _run(self, command: list[str]) -> None:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]

    def lines(self, name: str, count: int, *, first: int) -> str:
        self._run(
            self._command(name, "-lines", str(count), "-from", str(first), "-pause-us", "1000")
        )
        return self.ids[name]

    def burst(self, name: str, count: int) -> str:
        self._run(self._command(name, "-lines", str(count), "-bare"))
        return self.ids[name]

    def start_stream(self, name: str) -> str:
        command = self._command(name, "-async", "-pause-us", "2000")
        self.streams[name] = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return self.ids[name]

    def stop_stream(self, name: str) -> None:
        proc = self.streams.pop(name)
        out, err = proc.communicate("stop\n", timeout=60)
        assert proc.returncode == 0, err[-2000:]
        assert sent_count(out) > 0


@pytest.fixture(params=["dockerd", "go"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_producer(kind: str, request: pytest.FixtureRequest) -> Any:
    def make(daemon: DaemonProcess) -> Producer:
        if kind == "dockerd":
            return DockerProducer(request.getfixturevalue("docker"), daemon)
        return GoProducer(daemon)

    return make


# --------------------------------------------------------------------------- reading


def ctl(daemon: DaemonProcess, *args: str) -> str:
    command = [
        sys.executable,
        "-m",
        "logd.ctl",
        "--control",
        str(daemon.socket.parent / "ctl.sock"),
    ]
    done = subprocess.run(
        [*command, *args], env=daemon.env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def runs_by_container(daemon: DaemonProcess) -> dict[str, dict[str, Any]]:
    """The app's container runs as the registry has them: read from the index directly,
    as polling through `logd-ctl` (a Python start each time) would take CPU from logd."""
    index = daemon.root / "index.sqlite3"
    if not index.exists():
        return {}
    db = sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=10)
    try:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM runs WHERE app = ?", (APP,)).fetchall()
    finally:
        db.close()
    runs = [decode_row(row) for row in rows]
    return {run["container_name"]: run for run in runs if run.get("container_name")}


class Seen:
    """A run's lines: the numbers, their loggers and whether any time has milliseconds."""

    def __init__(self, run_dir: Path) -> None:
        self.numbers: Counter[int] = Counter()
        self.loggers: dict[int, str] = {}
        self.milliseconds: set[str] = set()
        self.other: list[bytes] = []
        for line in read_rotated_lines(run_dir / "main.log"):
            found = LINE_RE.search(line)
            if found is None:
                self.other.append(line)
                continue
            number = int(found[4])
            self.numbers[number] += 1
            self.loggers[number] = found[3].decode()
            self.milliseconds.add(found[2].decode())

    def check_once(self, expected: range) -> None:
        """Every expected number exactly once, nothing else."""
        twice = [n for n, c in self.numbers.items() if c > 1]
        missing = set(expected) - self.numbers.keys()
        extra = self.numbers.keys() - set(expected)
        summary = (
            f"twice {sorted(twice)[:5]} ({len(twice)}), missing {sorted(missing)[:5]} "
            f"({len(missing)}), extra {sorted(extra)[:5]}, other lines {self.other[:3]}"
        )
        assert not twice, summary
        assert not missing, summary
        assert not extra, summary
        assert not self.other, summary


def stop(daemon: DaemonProcess) -> None:
    if daemon.proc.poll() is None:
        daemon.proc.kill()
        daemon.proc.wait()


def run_dir(daemon: DaemonProcess, run: dict[str, Any]) -> Path:
    return daemon.root / str(run["path"])


# --------------------------------------------------------------------------- the cases


def test_each_container_is_a_run_with_its_metadata_ended_and_continued(
    kind: str, make_producer: Any, log_root: Path, socket_dir: Path
) -> None:
    daemon = start_daemon(log_root, socket_dir)
    try:
        producer: Producer = make_producer(daemon)
        ids = {name: producer.lines(name, LINES, first=0) for name in ("alpha", "beta")}
        wait_for(lambda: len(runs_by_container(daemon)) == 2, 20)
        listed = json.loads(ctl(daemon, "runs", "--app", APP, "--json"))
        runs = {run["container_name"]: run for run in listed}
        assert set(runs) == {"alpha", "beta"}
        for name, container_id in ids.items():
            run = runs[name]
            assert run["container_id"] == container_id
            assert (run.get("image") == IMAGE) is (kind == "dockerd")  # from its label
            seen = Seen(run_dir(daemon, run))
            seen.check_once(range(LINES))
            wrong = [
                n for n, logger in seen.loggers.items() if (logger == "stderr") != (n % 3 == 2)
            ]
            assert not wrong, wrong[:5]
            assert seen.milliseconds - {"000"}, "no sub-second times"
            assert {"stdout.log", "stderr.log"} <= set(run["files"])
        assert runs["alpha"]["run_id"] != runs["beta"]["run_id"]

        # By container name: the runs table, `runs --app`, `tail --run`.
        table = ctl(daemon, "runs")
        assert "CONTAINER" in table.splitlines()[0]
        assert {"alpha", "beta"} <= set(table.split())
        (only,) = json.loads(ctl(daemon, "runs", "--app", "beta", "--json"))
        assert only["run_id"] == runs["beta"]["run_id"]
        tailed = ctl(daemon, "tail", "--run", "alpha", "-n", str(LINES * 2)).splitlines()
        assert len(tailed) == LINES
        assert all("container_name=/alpha" in line for line in tailed), tailed[:3]

        # Its stream closed when it exited: ended after the grace.
        wait_for(
            lambda: all(
                r["end_reason"] == "disconnected" for r in runs_by_container(daemon).values()
            ),
            END_WAIT_S,
        )
        # The same container again carries on its run.
        producer.lines("alpha", LINES, first=LINES)
        wait_for(lambda: runs_by_container(daemon)["alpha"]["records"] == 2 * LINES, 20)
        again = runs_by_container(daemon)
        assert again["alpha"]["run_id"] == runs["alpha"]["run_id"]
        assert len(again) == 2
        Seen(run_dir(daemon, again["alpha"])).check_once(range(2 * LINES))
        assert daemon.stop() == 0, daemon.stderr
    finally:
        stop(daemon)


def test_a_100000_line_burst_is_delivered_whole(
    make_producer: Any, log_root: Path, socket_dir: Path
) -> None:
    daemon = start_daemon(log_root, socket_dir)
    try:
        producer: Producer = make_producer(daemon)
        started = time.monotonic()
        producer.burst("burst", BURST)
        exited = time.monotonic() - started
        # Docker drops what its driver has not sent 10 s after the container exited;
        # what logd has by then is all it will ever get.
        records = -1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            records = runs_by_container(daemon).get("burst", {}).get("records", 0)
            if records == BURST:
                break
            time.sleep(0.1)
        print(f"{BURST:,} lines: exited after {exited:.1f} s, {records:,} written")
        Seen(run_dir(daemon, runs_by_container(daemon)["burst"])).check_once(range(BURST))
        assert daemon.stop() == 0, daemon.stderr
    finally:
        stop(daemon)


def test_logd_restarted_under_a_live_container_continues_its_run(
    make_producer: Any, log_root: Path, socket_dir: Path
) -> None:
    """Non-blocking: the container never waits for logd; its run carries on across the
    restart. Lines the driver wrote while logd stopped may be lost (it has no acks in
    this mode, README "Containers"), but none is written twice."""
    daemon = start_daemon(log_root, socket_dir)
    try:
        # Inside: where dockerd cannot run, this skips, and the daemon must still stop.
        producer: Producer = make_producer(daemon)
        producer.start_stream("live")
        wait_for(lambda: runs_by_container(daemon).get("live", {}).get("records", 0) >= 100, 20)
        before = runs_by_container(daemon)["live"]
        assert daemon.stop() == 0, daemon.stderr
        daemon = start_daemon(log_root, socket_dir)
        wait_for(
            lambda: runs_by_container(daemon)["live"]["records"] >= before["records"] + 100, 30
        )
        producer.stop_stream("live")
        after = runs_by_container(daemon)["live"]
        assert after["run_id"] == before["run_id"]
        seen = Seen(run_dir(daemon, after))
        twice = [n for n, c in seen.numbers.items() if c > 1]
        assert not twice, sorted(twice)[:5]
        highest = max(seen.numbers)
        lost = highest + 1 - len(seen.numbers)
        print(f"{len(seen.numbers)} lines, {lost} lost around the restart")
        assert highest >= before["records"] + 100  # it went on after the restart
        assert daemon.stop() == 0, daemon.stderr
    finally:
        stop(daemon)
