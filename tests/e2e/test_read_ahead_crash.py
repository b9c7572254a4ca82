"""A daemon killed while its writer holds a batch and the connection has read the next
messages ahead: none of them was acknowledged, so the producer sends all of them again,
and after the restart each record is in every file, the index and the registry once.

Real processes throughout: `tests.e2e.held_daemon` is logd with its writer stopped after
a batch's writes (lines on disk, not committed) while a hold file exists; it gets a
SIGKILL there. A plain `logd serve` then starts on the same root.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import struct
import termios
from pathlib import Path

import pytest
from logd_client import wire

from tests.e2e.procs import ctl_json, start_daemon, wait_for
from tests.e2e.test_crash_window import (
    PER_BATCH,
    RUN,
    assert_written_once,
    family_lines,
    message_entries,
    numbers,
    send_all,
)

pytestmark = pytest.mark.e2e

MESSAGES = 5
CONFIG = '[limits]\nread_ahead_bytes = "1 MiB"\n'


def unread(sock: socket.socket) -> int:
    """Bytes this Unix socket sent that the peer has not read yet (unix(7) SIOCOUTQ)."""
    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", raw)[0])


def test_messages_read_ahead_when_the_daemon_is_killed_are_written_once_after_the_resend(
    log_root: Path, socket_dir: Path
) -> None:
    config = socket_dir / "logd.toml"
    config.write_text(CONFIG)
    hold, busy = socket_dir / "hold", socket_dir / "busy"
    hold.touch()
    held = start_daemon(
        log_root,
        socket_dir,
        args=("--config", str(config)),
        module="tests.e2e.held_daemon",
        extra_env={"HELD_WHILE": str(hold), "HELD_BUSY": str(busy), "HELD_APP": "shop"},
    )
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(os.fspath(held.socket))
            messages = [message_entries(seq) for seq in range(MESSAGES)]
            tag, entries, option = messages[0]
            sock.sendall(wire.encode_forward(tag, entries, chunk=option["chunk"]))
            wait_for(busy.exists)  # message 0's lines are written, its sync held
            for tag, entries, option in messages[1:]:
                sock.sendall(wire.encode_forward(tag, entries, chunk=option["chunk"]))
            wait_for(lambda: unread(sock) == 0)  # the daemon has read all of it
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(4096)  # and acknowledged none of it
            held.proc.send_signal(signal.SIGKILL)
            assert held.proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if held.proc.poll() is None:
            held.proc.kill()
            held.proc.wait()
    run_dir = log_root / "shop" / "runs" / RUN
    # The crash came where it hurts: message 0's lines were on disk, uncommitted.
    assert numbers(family_lines(run_dir, "main.log")) == list(range(PER_BATCH))

    hold.unlink()
    daemon = start_daemon(log_root, socket_dir, args=("--config", str(config)))
    try:
        send_all(daemon.socket, range(MESSAGES))  # the producer's resend: every message
        (session,) = ctl_json(daemon, "sessions", "--app", "shop")
        (run,) = ctl_json(daemon, "runs", "--app", "shop")
    finally:
        assert daemon.stop() == 0
    assert session["records"] == run["records"] == MESSAGES * PER_BATCH
    assert_written_once(log_root, MESSAGES * PER_BATCH)
    assert "back to the last committed batch" in daemon.stderr
