"""`logd-ctl` against a real daemon fed by real producer processes: tables and JSON."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from logd_client import wire

from logd.control.requests import request
from logd.control.tailing import ITEM_FIELDS
from tests.e2e.procs import DaemonProcess, start_daemon, wait_for

pytestmark = pytest.mark.e2e

EVENTS = 1200  # enough JSON to overflow a pipe, for the `| head` case
PRODUCER = r"""
import logging, sys
import logd_client as logd

app, events = sys.argv[1], int(sys.argv[2])
logd.install(app=app)
log = logging.getLogger(f"{app}.worker")
with logd.session("sess-a"):
    log.info("hello from session a")
    for i in range(events):
        logd.event("llm:request", "agent", model="llama3.2", n=i)
with logd.session("sess-b"):
    log.info("hello from session b")
with logd.call("call-1", bot_id="7"):
    log.warning("inside the call")
try:
    raise ValueError("boom")
except ValueError:
    log.exception("failed")
for i in range(5):
    log.info("tail line %d", i)
print(logd.run_id(), flush=True)
sys.exit(0 if logd.flush(20) else 3)
"""
HOLDER = r"""
import logging, sys
import logd_client as logd

logd.install(app="holder")
logging.getLogger("holder").info("here")
assert logd.flush(20)
print(logd.run_id(), flush=True)
sys.stdin.readline()
"""
ONE_RECORD = r"""
import logging, sys, time
import logd_client as logd

logd.install(app=sys.argv[1])
logging.getLogger("live").warning(sys.argv[2])
print(time.time(), flush=True)
sys.exit(0 if logd.flush(20) else 3)
"""
FLOOD = r"""
import logging, sys, time
import logd_client as logd

logd.install(app="flood")
log = logging.getLogger("flood")
start = time.monotonic()
for i in range(int(sys.argv[1])):
    log.info("flood record %d with some padding to make it a realistic line", i)
ok = logd.flush(120)
print(time.monotonic() - start, flush=True)
sys.exit(0 if ok else 3)
"""


def control_of(daemon: DaemonProcess) -> Path:
    return daemon.socket.parent / "ctl.sock"


def ctl_command(daemon: DaemonProcess, *args: str) -> list[str]:
    return [sys.executable, "-m", "logd.ctl", "--control", str(control_of(daemon)), *args]


def ctl(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ctl_command(daemon, *args), env=daemon.env, capture_output=True, text=True, timeout=60
    )


def ok(daemon: DaemonProcess, *args: str) -> str:
    result = ctl(daemon, *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "Traceback" not in result.stdout
    return result.stdout


def as_json(daemon: DaemonProcess, *args: str) -> Any:
    return json.loads(ok(daemon, "--json", *args))


def produce(daemon: DaemonProcess, script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def wait_ctl_ready(daemon: DaemonProcess) -> None:
    wait_for(lambda: ctl(daemon, "--json", "status").returncode == 0)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, str]]:
    """One daemon, one finished `shop` run: shared by the read-only tests below."""
    socket_dir = Path(tempfile.mkdtemp(prefix="logd-", dir="/tmp"))
    daemon = start_daemon(tmp_path_factory.mktemp("ctl") / "root", socket_dir)
    try:
        wait_ctl_ready(daemon)
        run_id = produce(daemon, PRODUCER, "shop", str(EVENTS))

        def settled() -> bool:
            run = as_json(daemon, "run", run_id, "--app", "shop")
            calls = as_json(daemon, "calls", "--app", "shop")
            return run["end_reason"] is not None and any(c["end_ts"] for c in calls)

        wait_for(settled)
        yield daemon, run_id
        assert daemon.stop() == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
        shutil.rmtree(socket_dir, ignore_errors=True)


# --- status -------------------------------------------------------------------------------------


def test_status_table_and_json_show_a_connected_client(daemon: DaemonProcess) -> None:
    wait_ctl_ready(daemon)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        env=daemon.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        run_id = holder.stdout.readline().strip()
        status = as_json(daemon, "status")
        assert {
            "version",
            "pid",
            "uptime_s",
            "listeners",
            "root",
            "clients",
            "totals",
            "rate_1m",
            "rate_series",
            "open_files",
            "active",
            "disk_bytes",
            "last_error",
            "last_cleanup",
            "errors",
        } <= status.keys()
        assert status["pid"] == daemon.proc.pid
        assert status["root"] == str(daemon.root)
        assert len(status["rate_series"]) == 60
        assert status["totals"]["records_in"] >= 2  # app:start and "here"
        assert status["active"]["runs"] >= 1
        (mine,) = [c for c in status["clients"] if c["pid"] == holder.pid]
        assert mine["apps"] == ["holder"]
        assert run_id in mine["runs"]
        assert mine["uid"] == os.getuid()

        text = ok(daemon, "status")
        lines = text.splitlines()
        assert lines[0].startswith("● logd ")
        assert f"pid {daemon.proc.pid}" in lines[0]
        assert all(len(line) <= 80 for line in lines)
        client_line = next(line for line in lines if f"{holder.pid} " in line)
        assert "holder" in client_line
        assert run_id in client_line
        for label in ("Listeners:", "Root:", "Records:", "Rate:", "Open files:", "Disk:"):
            assert label in text
    finally:
        holder.communicate("\n", timeout=30)


# --- listings -----------------------------------------------------------------------------------


def test_runs_and_run(shop: tuple[DaemonProcess, str]) -> None:
    daemon, run_id = shop
    runs = as_json(daemon, "runs", "--app", "shop")
    (run,) = [r for r in runs if r["run_id"] == run_id]
    assert run["app"] == "shop"
    assert run["active"] is False
    assert run["end_reason"] == "shutdown"
    assert run["records"] >= EVENTS + 8
    assert run["counts"]["ERROR"] == 1
    assert as_json(daemon, "runs", "--app", "nobody") == []
    assert run_id not in [r["run_id"] for r in as_json(daemon, "runs", "--active")]

    table = ok(daemon, "runs", "--app", "shop").splitlines()
    assert table[0].split() == ["RUN_ID", "APP", "START", "DURATION", "RECORDS", "ERRORS", "END"]
    row = next(line for line in table if line.startswith(run_id))
    assert row.split()[1] == "shop"
    assert row.split()[-1] == "shutdown"
    assert row.split()[-2] == "1"  # errors

    meta = as_json(daemon, "run", run_id)
    assert meta["run_id"] == run_id
    assert meta["app"] == "shop"
    assert meta["pids"]
    assert meta["argv"]
    assert as_json(daemon, "run", "current", "--app", "shop")["run_id"] == run_id
    text = ok(daemon, "run", run_id)
    assert f"{run_id} (shop)" in text
    assert "(shutdown)" in text


def test_sessions_and_calls(shop: tuple[DaemonProcess, str]) -> None:
    daemon, run_id = shop
    sessions = {s["session_id"]: s for s in as_json(daemon, "sessions", "--app", "shop")}
    assert {"sess-a", "sess-b"} <= sessions.keys()
    assert sessions["sess-a"]["runs"] == [run_id]
    assert sessions["sess-b"]["records"] == 1
    table = ok(daemon, "sessions", "--app", "shop").splitlines()
    assert table[0].split()[:2] == ["SESSION_ID", "APP"]
    assert any(line.startswith("sess-a ") for line in table)

    (call,) = as_json(daemon, "calls", "--app", "shop")
    assert call["call_id"] == "call-1"
    assert call["bot_id"] == "7"
    assert call["run_id"] == run_id
    assert call["records"] >= 1
    assert as_json(daemon, "calls", "--bot", "7", "--date", call["day"])[0]["call_id"] == "call-1"
    assert as_json(daemon, "calls", "--bot", "8") == []
    assert as_json(daemon, "calls", "--date", "2000-01-01") == []
    table = ok(daemon, "calls", "--app", "shop").splitlines()
    assert table[0].split()[:3] == ["CALL_ID", "APP", "BOT"]
    assert table[1].split()[:3] == ["call-1", "shop", "7"]


def test_events_query(shop: tuple[DaemonProcess, str]) -> None:
    daemon, run_id = shop
    llm = as_json(daemon, "events", "--app", "shop", "--type", "llm:*")
    assert len(llm) == 1000  # the default limit
    assert {e["event_type"] for e in llm} == {"llm:request"}
    assert {"ts", "source", "message", "app", "run_id", "kv", "raw_line"} <= llm[0].keys()
    assert all(e["run_id"] == run_id and e["session_id"] == "sess-a" for e in llm)
    newest = as_json(daemon, "events", "--type", "llm:*", "--limit", "3")
    assert sorted(e["kv"]["n"] for e in newest) == [EVENTS - 3, EVENTS - 2, EVENTS - 1]
    assert len(as_json(daemon, "events", "--since", "1h", "--limit", "5000")) > EVENTS
    assert as_json(daemon, "events", "--until", "1h") == []
    errors = as_json(daemon, "events", "--type", "error:*", "--app", "shop")
    assert len(errors) == 1
    assert "ValueError: boom" in errors[0]["raw_line"]
    in_b = as_json(daemon, "events", "--session", "sess-b")
    assert all(e["session_id"] == "sess-b" for e in in_b)

    table = ok(daemon, "events", "--type", "llm:*", "--limit", "2").splitlines()
    assert table[0].split() == ["TS", "TYPE", "SOURCE", "MESSAGE"]
    assert len(table) == 3
    assert all("llm:request" in line and "model=llama3.2" in line for line in table[1:])


def test_tail_backlog(shop: tuple[DaemonProcess, str]) -> None:
    """The last N records, oldest first; the run's last record is the client's app:shutdown."""
    daemon, run_id = shop
    out = ok(daemon, "tail", "--app", "shop", "-n", "4", "--json")
    items = [json.loads(line) for line in out.splitlines()]
    assert [i["msg"] or i["event_type"] for i in items] == [
        "tail line 2",
        "tail line 3",
        "tail line 4",
        "app:shutdown",
    ]
    assert all(i["run_id"] == run_id and i["level"] == "INFO" for i in items)
    assert list(items[0]) == list(ITEM_FIELDS)
    lines = ok(daemon, "tail", "--app", "shop", "-n", "2").splitlines()
    assert lines[0].startswith("[in-progress] - ")
    assert lines[0].endswith(" - shop.worker - INFO - tail line 4")
    assert lines[1].endswith(" - logd_client - INFO - app:shutdown")
    assert "\x1b[" not in "\n".join(lines), "no colour into a pipe"
    in_session = ok(daemon, "tail", "--session", "sess-b", "-n", "5").splitlines()
    assert in_session == [line for line in in_session if line.startswith("[sess-b] - ")]
    assert in_session[-1].endswith(" - hello from session b")
    call = ok(daemon, "tail", "--call", "call-1", "-n", "5").splitlines()
    assert any("inside the call" in line for line in call)
    errors = ctl(daemon, "tail", "--app", "shop", "--events", "error:*", "-n", "1").stdout
    assert "error:runtime ValueError: boom" in errors


def test_broken_pipe_is_quiet(shop: tuple[DaemonProcess, str]) -> None:
    daemon, _ = shop
    producer = subprocess.Popen(
        ctl_command(daemon, "--json", "events", "--limit", "5000"),
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert producer.stdout is not None
    head = subprocess.run(
        ["head", "-n", "1"], stdin=producer.stdout, capture_output=True, timeout=60
    )
    producer.stdout.close()
    _, stderr = producer.communicate(timeout=60)
    assert head.stdout == b"[\n"
    assert stderr == b""
    assert producer.returncode == 0


# --- live tail ----------------------------------------------------------------------------------


class LineReader:
    """Lines of a pipe through a thread, so a test can wait for one with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def join(self) -> None:
        """Wait for EOF (the process exited); the stream is closed then."""
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()

    def wait_for(self, text: str, seconds: float) -> tuple[str, float]:
        """The first line containing `text`, and the wall time it arrived."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if text in line:
                return line, time.time()
        pytest.fail(f"no line with {text!r} within {seconds} s")


def interruptible() -> None:
    """In the child before exec: take SIGINT as a terminal's Ctrl-C does.

    A shell starts background jobs (`pytest &`) with SIGINT ignored, and an ignored signal
    stays ignored across exec, so a tail started from them would never see the test's SIGINT.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Follower:
    """A `logd-ctl tail -f` process: its stdout read by a LineReader, killed if left running."""

    def __init__(self, daemon: DaemonProcess, *args: str) -> None:
        self.proc = subprocess.Popen(
            ctl_command(daemon, "tail", "-f", *args),
            env=daemon.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=interruptible,
        )
        assert self.proc.stdout is not None
        self.reader = LineReader(self.proc.stdout)
        self._result: tuple[int, str] | None = None

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish()

    def finish(self) -> tuple[int, str]:
        """Exit code and stderr, once the process ends."""
        if self._result is None:
            code = self.proc.wait(timeout=10)
            self.reader.join()
            assert self.proc.stderr is not None
            with self.proc.stderr:
                self._result = code, self.proc.stderr.read()
        return self._result


@pytest.mark.parametrize("json_output", [False, True], ids=["lines", "json"])
def test_tail_follow_sees_a_new_record_within_a_second(
    daemon: DaemonProcess, json_output: bool
) -> None:
    wait_ctl_ready(daemon)
    produce(daemon, ONE_RECORD, "live", "before the tail")
    args = ["--app", "live", "-n", "10"] + (["--json"] if json_output else [])
    with Follower(daemon, *args) as tail:
        reader = tail.reader
        # Producers' argv (in their app:start event) carry the text too: match the record.
        wanted = '"msg": "{}"' if json_output else " - WARNING - {}"
        reader.wait_for(wanted.format("before the tail"), 10)  # the backlog: it is subscribed
        logged_at = float(produce(daemon, ONE_RECORD, "live", "after the tail"))
        line, seen_at = reader.wait_for(wanted.format("after the tail"), 5)
        assert seen_at - logged_at < 1.0
        if json_output:
            item = json.loads(line)
            assert item["level"] == "WARNING"
            assert item["app"] == "live"
        else:
            assert line.endswith(" - live - WARNING - after the tail")
        produce(daemon, ONE_RECORD, "other-app", "not for this tail")
        produce(daemon, ONE_RECORD, "live", "third")
        reader.wait_for(wanted.format("third"), 5)
        assert not any("not for this tail" in line for line in reader.seen)
        tail.proc.send_signal(signal.SIGINT)
        assert tail.finish() == (0, "")


def test_stalled_tail_reader_does_not_slow_ingest(daemon: DaemonProcess) -> None:
    wait_ctl_ready(daemon)
    stalled = socket.socket(socket.AF_UNIX)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(str(control_of(daemon)))
    stalled.sendall(wire.encode_map(request("tail", n=0, follow=True)))
    try:
        started = time.monotonic()
        seconds = float(produce(daemon, FLOOD, "20000"))
        elapsed = time.monotonic() - started
        assert seconds < 20, f"20k records took {seconds:.1f} s with a stalled reader"
        assert elapsed < 60
        status = as_json(daemon, "status")
        assert status["totals"]["records_written"] >= 20000
        # The reader never read: it was told it skipped records, or it was let go. Read
        # what the daemon still holds for it until the socket is quiet: 5 s until a notice
        # came, then only 0.5 s, as what follows a notice is already on its way.
        stalled.settimeout(5)
        decoder = wire.MapDecoder()
        messages: list[dict[str, Any]] = []
        closed = False
        while not closed:
            try:
                data = stalled.recv(1 << 16)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if data:
                decoder.receive_data(data)
            else:
                decoder.receive_eof()
                closed = True
            while (event := decoder.next_event()) is not None and not isinstance(
                event, wire.Closed
            ):
                messages.append(event)
                if "notice" in event:
                    stalled.settimeout(0.5)
        items = sum("item" in m for m in messages)
        notices = [m["notice"] for m in messages if "notice" in m]
        assert items < 20000
        assert notices or closed, "a slow reader gets a notice or is let go"
    finally:
        stalled.close()


# --- maintenance --------------------------------------------------------------------------------


def test_cleanup_rotate_reload(daemon: DaemonProcess) -> None:
    wait_ctl_ready(daemon)
    produce(daemon, PRODUCER, "shop", "3")
    dry = as_json(daemon, "cleanup", "--dry-run")
    assert dry["dry_run"] is True
    assert isinstance(dry["deleted"], list)
    assert isinstance(dry["freed_bytes"], int)
    assert ok(daemon, "cleanup", "--dry-run").startswith("Would delete ")
    done = as_json(daemon, "cleanup")
    assert done["dry_run"] is False
    assert done["deleted"] == []  # nothing is old enough
    assert ok(daemon, "cleanup").startswith("Deleted 0 paths")

    rotated = as_json(daemon, "rotate")
    assert isinstance(rotated["rotated"], int)
    assert ok(daemon, "rotate").startswith("Rotated ")
    assert as_json(daemon, "reload") == {"reloaded": True, "restart_needed": []}
    assert ok(daemon, "reload") == "Configuration reloaded.\n"
    assert daemon.proc.poll() is None


# --- errors -------------------------------------------------------------------------------------


def test_no_daemon_exits_3_with_one_line(socket_dir: Path) -> None:
    missing = socket_dir / "ctl.sock"
    result = subprocess.run(
        [sys.executable, "-m", "logd.ctl", "--control", str(missing), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr == f"logd-ctl: logd is not running (no control socket at {missing})\n"


def test_stale_socket_file_exits_3(socket_dir: Path) -> None:
    stale = socket_dir / "ctl.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(stale))  # bound, never listening: like a daemon killed with -9
    result = subprocess.run(
        [sys.executable, "-m", "logd.ctl", "--control", str(stale), "--json", "runs"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert result.stderr == f"logd-ctl: logd is not running (nothing listens on {stale})\n"


def test_unknown_run_and_bad_time_exit_1(shop: tuple[DaemonProcess, str]) -> None:
    daemon, _ = shop
    for args in (["run", "no-such-run"], ["--json", "run", "no-such-run", "--app", "shop"]):
        result = ctl(daemon, *args)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.startswith("logd-ctl: ")
        assert result.stderr.count("\n") == 1
        assert "no-such-run" in result.stderr
    for args in (["events", "--since", "yesterday-ish"], ["events", "--until", "1 fortnight"]):
        result = ctl(daemon, *args)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1
        assert "is not a time" in result.stderr


def test_tail_follow_says_once_when_logd_stops_and_waits(daemon: DaemonProcess) -> None:
    wait_ctl_ready(daemon)
    produce(daemon, ONE_RECORD, "live", "before the stop")
    with Follower(daemon, "-n", "10") as tail:
        tail.reader.wait_for(" - WARNING - before the stop", 10)
        assert daemon.stop() == 0
        assert tail.proc.stderr is not None
        assert tail.proc.stderr.readline() == (
            "logd-ctl: lost the connection to logd; reconnecting,"
            " records written meanwhile will follow\n"
        )
        assert tail.proc.poll() is None, "it waits for logd to come back"
        tail.proc.send_signal(signal.SIGINT)
        assert tail.finish() == (0, "")


def test_control_socket_from_the_environment(daemon: DaemonProcess) -> None:
    wait_ctl_ready(daemon)
    env = dict(daemon.env, LOGD_CONTROL=str(control_of(daemon)))
    result = subprocess.run(
        [sys.executable, "-m", "logd.ctl", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pid"] == daemon.proc.pid
