"""Hostile input against a real daemon process: it stays up, serves others, stays bounded.

Each case sends its bad input on its own connection, then checks that a well-behaved
producer is still served, that nothing was written outside the root, and that the
daemon's memory stayed within a fixed bound.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
from logd_client import wire

from tests.e2e.procs import DaemonProcess
from tests.helpers import read_lines

pytestmark = pytest.mark.e2e

RSS_BOUND_MIB = 160
RUN = "20251105_143052_a1b2c3d4"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def connect(daemon: DaemonProcess) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(os.fspath(daemon.socket))
    return sock


def closed_by_daemon(sock: socket.socket) -> bool:
    """Read until EOF (True) or a timeout (False), ignoring acks."""
    try:
        while True:
            if not sock.recv(65536):
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def good_producer_is_served(daemon: DaemonProcess, n: int) -> None:
    with connect(daemon) as sock:
        record = {"msg": f"good {n}", "app": "good", "run_id": RUN, "level": "INFO"}
        sock.sendall(wire.encode_forward("good", [(time.time_ns(), record)], chunk=f"g{n}"))
        decoder = wire.ResponseDecoder()
        while (event := decoder.next_event()) is None:
            data = sock.recv(65536)
            assert data, "the daemon closed a good producer"
            decoder.receive_data(data)
        assert event == wire.Ack(f"g{n}")
    lines = read_lines(daemon.root / "good" / "runs" / RUN / "main.log")
    assert lines[-1].endswith(f" - good {n}")


def deep(levels: int) -> bytes:
    return b"\x91" * levels + b"\xc0"


def _random_bytes() -> bytes:
    return random.Random(7).randbytes(100_000)


CASES: dict[str, Callable[[], bytes]] = {
    "random-bytes": _random_bytes,
    "truncated": lambda: wire.encode_forward("t", [(1, {"msg": "x" * 100})])[:-10],
    "claims-4GiB-bin": lambda: b"\x93\xa1t\xc6" + struct.pack(">I", 0xFFFFFFFF) + b"xx",
    "claims-4GiB-array": lambda: b"\xdd" + struct.pack(">I", 0xFFFFFFFF),
    "claims-4GiB-map": lambda: b"\xdf" + struct.pack(">I", 0xFFFFFFFF),
    "deep-nesting": lambda: deep(100_000),
    "deep-record": lambda: b"\x93\xa1t\x01\x82\xa3msg\xa1x\xa2kv" + deep(500),
    "wrong-tag-type": lambda: msgpack.packb([1, 2, 3]),
    "wrong-entries-type": lambda: msgpack.packb(["t", 3.5, {"a": 1}]),
    "map-at-top": lambda: msgpack.packb({"tag": "t"}),
    "wrong-types-in-record": lambda: msgpack.packb(
        ["t", [[1, {"session_id": [1], "level": {"x": 1}, "kv": "no", "pid": "p"}]]]
    ),
    "ten-megabyte-string": lambda: msgpack.packb(
        ["big", [[int(time.time()), {"msg": "x" * 10_000_000, "run_id": RUN}]], {"chunk": "b"}]
    ),
    "hostile-ids": lambda: msgpack.packb(
        [
            "t",
            [
                [
                    int(time.time()),
                    {
                        "msg": "h",
                        "app": a,
                        "run_id": a,
                        "session_id": a,
                        "call_id": a,
                        "bot_id": a,
                        "logger": a,
                    },
                ]
                for a in ["../../x", "/etc", "a\x00b", "..", ".", "~", "%2e%2e", "x" * 5000]
            ],
        ]
    ),
    "bad-gzip": lambda: msgpack.packb(["t", b"\x1f\x8b\x08garbage", {"compressed": "gzip"}]),
    "gzip-bomb": lambda: msgpack.packb(
        ["t", __import__("gzip").compress(b"\0" * 64 * 1024 * 1024), {"compressed": "gzip"}]
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input(daemon: DaemonProcess, tmp_path: Path, name: str) -> None:
    with connect(daemon) as bad:
        try:
            bad.sendall(CASES[name]())
            bad.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed_by_daemon(bad)
    assert daemon.proc.poll() is None, "the daemon is still up"
    good_producer_is_served(daemon, 1)
    outside = [p for p in daemon.root.parent.iterdir() if p.name != daemon.root.name]
    assert outside == [], "nothing outside the root"
    for path in daemon.root.rglob("*"):
        assert path.resolve().is_relative_to(daemon.root.resolve())
    assert rss_mib(daemon.proc.pid) < RSS_BOUND_MIB


def test_thousand_idle_connections_and_a_reader_that_never_reads(daemon: DaemonProcess) -> None:
    idle = [connect(daemon) for _ in range(1000)]
    try:
        stubborn = connect(daemon)
        stubborn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stubborn.setblocking(False)
        record = {"msg": "x", "app": "stubborn", "level": "INFO"}
        sent = 0
        try:
            for i in range(20_000):
                chunk = f"{'c' * 64}{i}"
                stubborn.sendall(
                    wire.encode_forward("stubborn", [(time.time_ns(), record)], chunk=chunk)
                )
                sent += 1
        except BlockingIOError:
            pass  # the daemon stopped reading: its acks to us are not being read
        assert sent < 20_000, "a reader that never reads acks gets back-pressure"
        good_producer_is_served(daemon, 2)
        assert rss_mib(daemon.proc.pid) < RSS_BOUND_MIB
        stubborn.close()
    finally:
        for sock in idle:
            sock.close()
    good_producer_is_served(daemon, 3)
