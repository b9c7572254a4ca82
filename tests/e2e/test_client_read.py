"""The app reads and follows its own logs (#17): `read_events`, `read_records`, `follow`
and `afollow` against a real `logd serve`, including a daemon restart under a follower,
and events switched off on either side."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import logd_client
import pytest
from logd_client import DaemonError

from tests.e2e.procs import DaemonProcess, start_daemon, wait_for
from tests.e2e.test_ctl import as_json, ok, produce, wait_ctl_ready

pytestmark = pytest.mark.e2e

CHAT = r"""
import logging, sys
import logd_client as logd

app, session = sys.argv[1], sys.argv[2]
logd.install(app=app, console=False)
log = logging.getLogger(app)
with logd.session(session):
    log.info("hello %s", session)
    logd.event("llm:request", "agent", "asked", model="m1", tokens_in=5)
    logd.event("llm:response", "agent", "answered", latency_ms=12)
    logd.event("tool:call", "agent", "looked up")
    logd.event("conversation:turn", "agent", "turn 1", turn=1)
    log.warning("done")
stats = [h.transport.statistics() for h in logging.getLogger().handlers
         if isinstance(h, logd.LogdHandler)][0]
print(logd.run_id(), stats.events_off, flush=True)
sys.exit(0 if logd.flush(20) else 3)
"""
COUNT = r"""
import logging, sys, time
import logd_client as logd

app, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
logd.install(app=app, console=False)
log = logging.getLogger(app)
for i in range(first, first + count):
    log.info("rec %d", i)
    if i % 20 == 19:
        time.sleep(0.01)  # bursts: many records share a millisecond
sys.exit(0 if logd.flush(60) else 3)
"""
# Logs 0..TOTAL/2-1, waits for a line on stdin (the daemon restarted), logs the rest.
HALVES = r"""
import logging, sys, time
import logd_client as logd

total = int(sys.argv[1])
logd.install(app="steady", console=False)
log = logging.getLogger("steady")
for i in range(total):
    if i == total // 2:
        sys.stdin.readline()
    log.info("rec %d", i)
    if i % 20 == 19:
        time.sleep(0.01)  # bursts: many records share a millisecond
sys.exit(0 if logd.flush(60) else 3)
"""
TOTAL = 2000


def control_of(daemon: DaemonProcess) -> str:
    return str(daemon.socket.parent / "ctl.sock")


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, str]]:
    """One daemon; app `chat` logged session s-1 with `conversation:turn` switched off in
    the client, app `chat2` session s-2 with nothing switched off."""
    socket_dir = Path(tempfile.mkdtemp(prefix="logd-", dir="/tmp"))
    daemon = start_daemon(tmp_path_factory.mktemp("read") / "root", socket_dir)
    try:
        wait_ctl_ready(daemon)
        env = {**daemon.env, "LOGD_EVENTS_OFF": "conversation:turn, debug:*"}
        result = subprocess.run(
            [sys.executable, "-c", CHAT, "chat", "s-1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        run_id, events_off = result.stdout.split()
        assert events_off == "1"
        produce(daemon, CHAT, "chat2", "s-2")
        yield daemon, run_id
    finally:
        daemon.stop()


def test_read_events_are_the_ctl_events_json(
    chat: tuple[DaemonProcess, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, run_id = chat
    control = control_of(daemon)
    events = logd_client.read_events(app="chat", type="llm:*", since="1h", control=control)
    assert [e["event_type"] for e in events] == ["llm:request", "llm:response"]
    assert {e["run_id"] for e in events} == {run_id}
    assert events == as_json(daemon, "events", "--app", "chat", "--type", "llm:*", "--since", "1h")
    an_hour_ago = datetime.now() - timedelta(hours=1)
    monkeypatch.setenv("LOGD_CONTROL", control)  # found as logd-ctl finds it
    assert logd_client.read_events(app="chat", type="llm:*", since=an_hour_ago) == events
    later = datetime.now().astimezone() + timedelta(hours=1)
    assert logd_client.read_events(app="chat", since=later, control=control) == []
    assert len(logd_client.read_events(type="llm:*", limit=3, control=control)) == 3
    tools = logd_client.read_events(session="s-2", type="tool:*", control=control)
    assert [e["app"] for e in tools] == ["chat2"]


def test_events_off_in_the_client_are_not_sent(chat: tuple[DaemonProcess, str]) -> None:
    daemon, _ = chat
    control = control_of(daemon)
    turns = logd_client.read_events(type="conversation:*", control=control)
    assert [e["app"] for e in turns] == ["chat2"]
    records = logd_client.read_records(app="chat", n=100, control=control)
    assert "conversation:turn" not in {r["event_type"] for r in records}


def test_read_records_are_the_ctl_tail_json(chat: tuple[DaemonProcess, str]) -> None:
    daemon, run_id = chat
    records = logd_client.read_records(session="s-1", n=3, control=control_of(daemon))
    assert [r["msg"] for r in records][-1] == "done"
    assert len(records) == 3
    assert {(r["run_id"], r["session_id"]) for r in records} == {(run_id, "s-1")}
    lines = ok(daemon, "tail", "--json", "--session", "s-1", "-n", "3").splitlines()
    assert records == [json.loads(line) for line in lines]
    with pytest.raises(DaemonError, match="no call 'none'"):
        logd_client.read_records(run=run_id, call="none", control=control_of(daemon))


def test_errors_reach_the_caller(chat: tuple[DaemonProcess, str], socket_dir: Path) -> None:
    daemon, _ = chat
    missing = str(socket_dir / "ctl.sock")
    with pytest.raises(ConnectionError, match=f"logd is not running.*{missing}"):
        logd_client.read_events(control=missing)
    with pytest.raises(DaemonError) as info:
        logd_client.read_events(since="yesterday", control=control_of(daemon))
    assert info.value.code == "bad-time"
    with pytest.raises(ConnectionError):
        next(logd_client.follow(control=missing))

    async def first() -> object:
        return await anext(logd_client.afollow(control=missing))

    with pytest.raises(ConnectionError, match=missing):
        asyncio.run(first())


NOBODY = r"""
import os, sys
import logd_client
os.setgid(65534)  # nobody: after the imports, which read files under /root
os.setuid(65534)
try:
    logd_client.read_records(control=sys.argv[1])
except PermissionError as exc:
    print(exc)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_a_control_socket_refusing_the_user_is_a_permission_error(
    chat: tuple[DaemonProcess, str],
) -> None:
    """The daemon's control socket is 0600 and root's; `nobody` gets one clear error."""
    daemon, _ = chat
    path = Path(control_of(daemon))
    path.parent.chmod(0o755)  # so the socket itself decides
    env = {**daemon.env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    result = subprocess.run(
        [sys.executable, "-c", NOBODY, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"permission denied: {path}" in result.stdout
    assert "SocketMode=0660" in result.stdout
    assert "socket_group" in result.stdout


# --- follow across a restart -----------------------------------------------------------------


def _restart_under(daemon: DaemonProcess, seen: list[str], log_root: Path) -> DaemonProcess:
    """Log TOTAL records; restart the daemon once the follower has shown 300 of them. The
    second half is logged only once the new daemon runs, so a follower can only see it
    through a new connection."""
    producer = subprocess.Popen(
        [sys.executable, "-c", HALVES, str(TOTAL)],
        env=daemon.env,
        stdin=subprocess.PIPE,
        text=True,
    )
    assert producer.stdin is not None
    try:
        wait_for(lambda: "rec 300" in seen, 30)
        assert daemon.stop() == 0
        second = start_daemon(log_root, daemon.socket.parent)
        producer.stdin.write("go on\n")
        producer.stdin.close()
        assert producer.wait(timeout=120) == 0
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
    return second


def _check_each_once(seen: list[str]) -> None:
    records = [m for m in seen if m.startswith("rec ") and m != "rec -1"]
    assert len(records) == len(set(records)), "nothing twice"
    expected = [f"rec {i}" for i in range(TOTAL)]
    missing = sorted(set(expected) - set(records), key=lambda m: int(m.split()[1]))
    assert len(missing) == 0, f"{len(missing)} missing, first {missing[:5]}"
    # Same contents by now: only the order is left (no list compare: see the style guide).
    out_of_order = [i for i, (a, b) in enumerate(zip(records, expected, strict=True)) if a != b]
    assert len(out_of_order) == 0, f"out of order from {records[out_of_order[0]]!r}"


def test_follow_survives_a_daemon_restart(log_root: Path, socket_dir: Path) -> None:
    daemon = start_daemon(log_root, socket_dir)
    second: DaemonProcess | None = None
    seen: list[str] = []
    failure: list[BaseException] = []

    def consume() -> None:
        try:
            for record in logd_client.follow(app="steady", n=2, control=control_of(daemon)):
                seen.append(record["msg"])
                if record["msg"] == f"rec {TOTAL - 1}":
                    return  # leaving the for closes the connection
        except BaseException as exc:
            failure.append(exc)

    try:
        produce(daemon, COUNT, "steady", "-1", "1")  # the backlog (n=2) shows rec -1
        thread = threading.Thread(target=consume, daemon=True)
        thread.start()
        wait_for(lambda: "rec -1" in seen or failure, 20)
        second = _restart_under(daemon, seen, log_root)
        thread.join(60)
        assert not thread.is_alive()
        assert not failure, failure
        _check_each_once(seen)
    finally:
        for d in (daemon, second):
            if d is not None and d.proc.poll() is None:
                d.stop()


def test_afollow_survives_a_daemon_restart_and_cancels(log_root: Path, socket_dir: Path) -> None:
    daemon = start_daemon(log_root, socket_dir)
    second: DaemonProcess | None = None
    seen: list[str] = []
    outcome: list[Any] = []
    # Set once the producer has exited: its exit hook's `app:shutdown` event is written by
    # then. An idle follower opened earlier could get that event live (it was flaky so).
    producer_gone = threading.Event()

    async def consume() -> None:
        async for record in logd_client.afollow(app="steady", n=2, control=control_of(daemon)):
            seen.append(record["msg"])
            if record["msg"] == f"rec {TOTAL - 1}":
                break

    async def idle_then_cancelled() -> bool:
        """A follower waiting for a live record that never comes: cancelling ends it."""
        follower = logd_client.afollow(app="steady", n=1, control=control_of(daemon))
        await follower.__anext__()  # the backlog: from now on it waits on the socket
        task = asyncio.ensure_future(follower.__anext__())
        await asyncio.sleep(0)  # one turn of the loop: the task runs until it reads
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            await follower.aclose()
            return True
        return False

    async def main() -> None:
        await consume()
        if not await asyncio.to_thread(producer_gone.wait, 60):
            raise TimeoutError("the producer did not exit")
        outcome.append(await idle_then_cancelled())

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            outcome.append(exc)

    try:
        produce(daemon, COUNT, "steady", "-1", "1")
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        wait_for(lambda: "rec -1" in seen or outcome, 20)
        second = _restart_under(daemon, seen, log_root)
        producer_gone.set()
        thread.join(60)
        assert not thread.is_alive()
        assert outcome == [True]
        _check_each_once(seen)
    finally:
        for d in (daemon, second):
            if d is not None and d.proc.poll() is None:
                d.stop()


# --- [events] off in the daemon --------------------------------------------------------------


def test_events_off_in_the_daemon_are_written_not_indexed(
    log_root: Path, socket_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "logd.toml"
    config.write_text('[events]\noff = ["conversation:*", "tool:call"]\n')
    daemon = start_daemon(log_root, socket_dir, args=("--config", str(config)))
    try:
        produce(daemon, CHAT, "chat", "s-1")
        control = control_of(daemon)
        types = [e["event_type"] for e in logd_client.read_events(app="chat", control=control)]
        assert "conversation:turn" not in types
        assert "tool:call" not in types
        assert {"llm:request", "llm:response"} <= set(types)
        records = logd_client.read_records(session="s-1", n=100, control=control)
        assert {"conversation:turn", "tool:call"} <= {r["event_type"] for r in records}
        events_log = "".join(p.read_text() for p in log_root.rglob("events.log"))
        assert "llm:request" in events_log
        assert "conversation:turn" not in events_log
        assert as_json(daemon, "status")["totals"]["events_off"] == 2
    finally:
        daemon.stop()
