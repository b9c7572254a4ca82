"""A backlog in one Forward message, as Fluent clients send it when logd comes back.

Real `logd serve` processes; a hand-built PackedForward message of 120,000 records over a
real socket, and real Node Fluent clients (`@fluent-org/logger`, `fluent-logger`) that
buffered while logd was down. Messages are bounded by bytes (SPEC §3), so all of it is
written and acked. A message over a limit is refused loudly: logged, counted, never acked.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from logd_client import wire

from logd.config import Limits
from tests.e2e.npm import node_modules
from tests.e2e.procs import DaemonProcess, start_daemon, wait_for
from tests.helpers import assert_same_sequence, read_rotated_lines

pytestmark = pytest.mark.e2e

DAEMON_LIMIT = Limits().max_message_bytes  # the default [limits] max_message_bytes

BACKLOG = 120_000
PACKAGES = {"@fluent-org/logger": "1.0.10", "fluent-logger": "3.4.1"}
NODE_BACKLOG = Path(__file__).with_name("node") / "backlog.js"
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z


def answer_to(sock_path: Path, message: bytes, seconds: float) -> wire.Ack | wire.Closed:
    """Send one message; return the daemon's ack, or Closed when it closed without one."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(seconds)
        sock.connect(os.fspath(sock_path))
        decoder = wire.ResponseDecoder()
        try:
            sock.sendall(message)
            while (event := decoder.next_event()) is None:
                data = sock.recv(65536)
                if data:
                    decoder.receive_data(data)
                else:
                    decoder.receive_eof()
        except (BrokenPipeError, ConnectionResetError):
            return wire.Closed()  # closed while we were still sending
        assert isinstance(event, wire.Ack | wire.Closed), event
        return event


def status(daemon: DaemonProcess) -> dict[str, Any]:
    """`logd-ctl --json status`, once the control socket answers."""
    command = [
        sys.executable,
        "-m",
        "logd.ctl",
        "--control",
        str(daemon.socket.parent / "ctl.sock"),
    ]
    result: list[subprocess.CompletedProcess[str]] = []

    def answered() -> bool:
        result[:] = [
            subprocess.run(
                [*command, "--json", "status"],
                env=daemon.env,
                capture_output=True,
                text=True,
                timeout=30,
            )
        ]
        return result[0].returncode == 0

    wait_for(answered)
    reply: dict[str, Any] = json.loads(result[0].stdout)
    return reply


def backlog_lines(app_dir: Path) -> list[str]:
    """The messages in the main.log of the app's one run, in order."""
    (run_dir,) = [p for p in (app_dir / "runs").iterdir() if p.is_dir() and not p.is_symlink()]
    lines = read_rotated_lines(run_dir / "main.log")
    return [line.decode().rsplit(" - ", 1)[1] for line in lines]


EXPECTED = [f"backlog record {i}" for i in range(BACKLOG)]


def test_a_120000_record_packed_forward_message_is_written_and_acked(
    daemon: DaemonProcess,
) -> None:
    entries = [(T0 + i, {"msg": f"backlog record {i}"}) for i in range(BACKLOG)]
    message = wire.encode_packed_forward("backlog", entries, chunk="backlog-1")
    assert len(message) < DAEMON_LIMIT // 3  # far under the byte limit

    assert answer_to(daemon.socket, message, 120) == wire.Ack("backlog-1")

    assert_same_sequence(backlog_lines(daemon.root / "backlog"), EXPECTED, "lines")
    reply = status(daemon)
    assert reply["errors"] == {}
    assert reply["totals"]["records_written"] == BACKLOG


LIMITS = """
[limits]
max_message_bytes = "1 MiB"
max_records = 1000
"""


@pytest.fixture
def limited(log_root: Path, socket_dir: Path, tmp_path: Path) -> Iterator[DaemonProcess]:
    config = tmp_path / "logd.toml"
    config.write_text(LIMITS)
    d = start_daemon(log_root, socket_dir, args=("--config", str(config)))
    yield d
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


@pytest.mark.parametrize(
    ("code", "entries"),
    [
        ("message-too-large", [(T0, {"msg": "x" * 2_000_000})]),
        ("too-many-records", [(T0 + i, {"msg": "x"}) for i in range(1001)]),
    ],
)
def test_a_message_over_a_limit_is_logged_counted_and_never_acked(
    limited: DaemonProcess, code: str, entries: list[tuple[int, dict[str, Any]]]
) -> None:
    message = wire.encode_packed_forward("over", entries, chunk="over-1")

    assert answer_to(limited.socket, message, 30) == wire.Closed()

    wait_for(lambda: f"protocol error {code}" in limited.stderr)
    assert status(limited)["errors"] == {code: 1}
    assert not (limited.root / "over").exists()
    small = wire.encode_packed_forward("over", [(T0, {"msg": "fits"})], chunk="over-2")
    assert answer_to(limited.socket, small, 30) == wire.Ack("over-2")


def _lines_of(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


@pytest.mark.parametrize("library", sorted(PACKAGES))
def test_a_node_fluent_client_delivers_its_backlog_when_logd_comes_back(
    library: str, log_root: Path, socket_dir: Path, tmp_path: Path
) -> None:
    modules = node_modules(PACKAGES)
    sock = socket_dir / "logd.sock"
    errors = tmp_path / "node.stderr"
    with open(errors, "w") as stderr:
        node = subprocess.Popen(
            ["node", str(NODE_BACKLOG), library, str(sock), str(BACKLOG)],
            env={**os.environ, "NODE_PATH": str(modules)},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert node.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_lines_of, args=(node.stdout, lines), daemon=True)
    reader.start()
    daemon: DaemonProcess | None = None
    try:
        # Every record is queued in the client while logd is down...
        assert json.loads(lines.get(timeout=60)) == {"buffered": BACKLOG}
        assert not sock.exists()
        # ...and sent as one message once it is up.
        daemon = start_daemon(log_root, socket_dir)
        result = json.loads(lines.get(timeout=120))
        assert result == {"acked": BACKLOG, "failed": 0, "reasons": []}, errors.read_text()
        assert node.wait(timeout=30) == 0

        # The Node client's `seq` field rides in the line as an extra field (#16 item 8).
        expected = [f"{text} seq={i}" for i, text in enumerate(EXPECTED)]
        assert_same_sequence(backlog_lines(log_root / "nodeapp"), expected, "lines")
        reply = status(daemon)
        assert reply["errors"] == {}
        assert reply["totals"]["records_written"] == BACKLOG
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
        reader.join(timeout=10)
        node.stdout.close()
        if daemon is not None and daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
