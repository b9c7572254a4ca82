"""The daemon's books on the paths users walk: a session across runs and daemon restarts,
runs replayed from a spool, and a spool delivered by another live process.

Each test checks the registry, the metadata, `logd-ctl` and the web's data against the
files, not only that the lines arrived.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from logd.web import views
from tests.e2e.procs import DaemonProcess, start_daemon, wait_for

pytestmark = pytest.mark.e2e

SESSION = "s-42"


def ctl_json(socket_dir: Path, env: dict[str, str], *args: str) -> Any:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "logd.ctl",
            "--control",
            str(socket_dir / "ctl.sock"),
            "--json",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def produce(env: dict[str, str], body: str, app: str = "shop") -> list[str]:
    """Run a producer process to its end; returns what it printed, line by line."""
    script = (
        "import logging, os, time, logd_client as logd\n"
        f"logd.install(app={app!r}, exit_flush_timeout_s=0.5)\n"
        "log = logging.getLogger('shop.agent')\n"
        "print(logd.run_id(), os.getpid(), flush=True)\n" + body
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def ms(iso: str) -> int:
    """An ISO 8601 time (any offset) as ms since the epoch."""
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def session_lines(root: Path) -> list[dict[str, Any]]:
    path = root / "shop" / "sessions" / f"session_{SESSION}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def events_of(root: Path, app: str) -> list[list[str]]:
    return [line.split("|", 3) for line in (root / app / "events.log").read_text().splitlines()]


def test_a_session_accumulates_across_runs_restarts_and_reuse(
    log_root: Path, socket_dir: Path
) -> None:
    """Two runs, a daemon restart, a third run, then `end_session` and the same id used
    again: one session row whose records, runs and first time match its file."""
    in_session = f"with logd.session({SESSION!r}):\n    log.info('turn %d', {{n}})\n"
    daemon = start_daemon(log_root, socket_dir)
    runs = []
    try:
        for n in (1, 2):
            runs.append(produce(daemon.env, in_session.format(n=n))[0].split()[0])
    finally:
        assert daemon.stop() == 0
    daemon = start_daemon(log_root, socket_dir)
    try:
        runs.append(produce(daemon.env, in_session.format(n=3))[0].split()[0])
        (row,) = ctl_json(socket_dir, daemon.env, "sessions", "--app", "shop")
        lines = session_lines(log_root)
        assert [line["msg"] for line in lines] == ["turn 1", "turn 2", "turn 3"]
        assert row["records"] == 3
        assert row["runs"] == runs
        assert ms(row["first_ts"]) == ms(lines[0]["time"])
        assert row["active"] is True

        ended = f"logd.end_session({SESSION!r})\nassert logd.flush(10)\n"
        runs.append(produce(daemon.env, ended)[0].split()[0])
        wait_for(
            lambda: not ctl_json(socket_dir, daemon.env, "sessions", "--app", "shop")[0]["active"]
        )
        runs.append(produce(daemon.env, in_session.format(n=5))[0].split()[0])
        (row,) = ctl_json(socket_dir, daemon.env, "sessions", "--app", "shop")
        lines = session_lines(log_root)
        assert row["records"] == len(lines) == 5, "the session:end record is in the file too"
        assert row["runs"] == runs
        assert ms(row["first_ts"]) == ms(lines[0]["time"]), "a reused id is the same session"
        assert ms(row["last_ts"]) == ms(lines[-1]["time"])
        assert row["active"] is True, "reopened by its new record"
        for run_id in runs:
            # What the web's run page (and its /api twin) lists as "Sessions in this run".
            page = views.run_page(
                log_root, "shop", run_id, file=None, level=None, q=None, before=None
            )
            assert [s["session_id"] for s in page["sessions"]] == [SESSION], run_id
    finally:
        assert daemon.stop() == 0


SPOOLED = (
    "log.info('first')\n"
    "time.sleep(0.3)\n"  # the run lasts a while on the producer's clock
    "log.info('last')\n"
)


def assert_times_are_the_producers(log_root: Path, run_id: str) -> dict[str, Any]:
    """Start and end of a run are its app:start and app:shutdown records' own times."""
    meta: dict[str, Any] = json.loads(
        (log_root / "shop" / "runs" / run_id / "metadata.json").read_text()
    )
    times = {kind: ts for ts, kind, _, _ in events_of(log_root, "shop")}
    assert meta["end_reason"] == "shutdown"
    assert ms(meta["start_time"]) == ms(times["app:start"])
    assert ms(meta["end_time"]) == ms(times["app:shutdown"])
    assert 300 <= ms(meta["end_time"]) - ms(meta["start_time"]) < 5000
    return meta


def test_a_run_replayed_from_a_spool_keeps_the_producers_times(
    log_root: Path, socket_dir: Path, spool_dir: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGD_")}
    env["LOGD_ADDRESS"] = f"unix:{socket_dir / 'logd.sock'}"
    env["LOGD_SPOOL_DIR"] = str(spool_dir)
    run_id = produce(env, SPOOLED)[0].split()[0]
    assert list(spool_dir.glob("spool-*.msgpack")), "the producer spooled: no daemon yet"
    daemon = start_daemon(log_root, socket_dir)
    try:
        wait_for(lambda: not list(spool_dir.glob("spool-*.msgpack")))
        wait_for(lambda: ctl_json(socket_dir, daemon.env, "run", run_id)["end_reason"])
        meta = assert_times_are_the_producers(log_root, run_id)
        (listed,) = ctl_json(socket_dir, daemon.env, "runs", "--app", "shop")
        assert ms(listed["end_time"]) == ms(meta["end_time"])
    finally:
        assert daemon.stop() == 0


def test_a_spool_delivered_by_another_live_process_is_not_adopted_by_it(
    log_root: Path, socket_dir: Path, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """X spools and exits; live process Y delivers X's spool. X's run ends by its own
    app:shutdown while Y lives, without Y's pid, and `status` shows Y under its app only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGD_")}
    env["LOGD_ADDRESS"] = f"unix:{socket_dir / 'logd.sock'}"
    env["LOGD_SPOOL_DIR"] = str(spool_dir)
    x_run, x_pid = produce(env, SPOOLED)[0].split()
    assert list(spool_dir.glob("spool-*.msgpack"))
    # The daemon spools elsewhere, so delivering X's spool is left to Y.
    monkeypatch.setenv("LOGD_SPOOL_DIR", str(socket_dir / "daemon-spool"))
    daemon: DaemonProcess = start_daemon(log_root, socket_dir)
    relay = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import logging, os, sys, logd_client as logd\n"
            "logd.install(app='relay')\n"
            "logging.getLogger('relay').info('here')\n"
            "assert logd.flush(10)\n"
            "print(os.getpid(), flush=True)\n"
            "sys.stdin.readline()\n",
        ],
        env={**env, "LOGD_ADDRESS": f"unix:{daemon.socket}"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert relay.stdout is not None
        y_pid = int(relay.stdout.readline())
        wait_for(lambda: not list(spool_dir.glob("spool-*.msgpack")))
        wait_for(lambda: ctl_json(socket_dir, daemon.env, "run", x_run)["end_reason"])
        meta = assert_times_are_the_producers(log_root, x_run)
        assert meta["pids"] == [int(x_pid)]
        assert y_pid not in meta["pids"]
        status = ctl_json(socket_dir, daemon.env, "status")
        (client,) = [c for c in status["clients"] if c["pid"] == y_pid]
        assert client["apps"] == ["relay"]
        assert x_run not in client["runs"]
        assert relay.poll() is None, "Y was alive all along"
    finally:
        relay.communicate("\n", timeout=30)
        assert daemon.stop() == 0


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_reconnecting_fluent_tcp_client_carries_on_its_run(
    log_root: Path, socket_dir: Path
) -> None:
    """fluent-logger (PyPI) over TCP opens a new connection after each close and after a
    daemon restart; within the grace period it is still the same run."""
    from fluent import sender

    port = free_port()

    def emit(message: str) -> None:
        client = sender.FluentSender("shop", host="127.0.0.1", port=port)
        assert client.emit("web", {"message": message}), client.last_error
        client.close()

    def main_logs() -> list[Path]:
        runs = log_root / "shop" / "runs"
        return sorted(p for p in runs.glob("*/main.log") if not p.parent.is_symlink())

    def lines() -> list[int]:
        return [p.read_text().count("\n") for p in main_logs()]

    daemon = start_daemon(log_root, socket_dir, args=("--tcp", f"127.0.0.1:{port}"))
    try:
        emit("one")
        wait_for(lambda: lines() == [1])
        emit("two")  # a new connection from a new port
        wait_for(lambda: lines() == [2])
    finally:
        assert daemon.stop() == 0
    daemon = start_daemon(log_root, socket_dir, args=("--tcp", f"127.0.0.1:{port}"))
    try:
        emit("three")
        wait_for(lambda: sum(lines()) == 3)
        assert lines() == [3], "one run across reconnects and a daemon restart"
        assert [line.rsplit(" - ", 1)[1] for line in main_logs()[0].read_text().splitlines()] == [
            "one",
            "two",
            "three",
        ]
    finally:
        assert daemon.stop() == 0
    # Counts reach metadata.json and the registry every 10 s, and at a clean stop.
    meta = json.loads((main_logs()[0].parent / "metadata.json").read_text())
    assert meta["records"] == 3
    assert meta["end_time"] is None, "still open: within the TCP grace period"
    assert meta["opened_by"] == "daemon"
