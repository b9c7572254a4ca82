"""logd_client's disk spool: real files, a real Unix socket and the small Forward server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from logd_client import spool, wire
from logd_client.address import UnixAddress
from logd_client.transport import Transport

from tests.integration.client import test_transport as transport_tests
from tests.integration.client.test_transport import (
    WAIT_S,
    ForwardServer,
    enqueue_many,
    record,
)

# The transport tests' fixtures, under the same names (spool_dir is autouse, in conftest).
make_transport = transport_tests.make_transport
socket_path = transport_tests.socket_path


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def settled(transport: Transport, directory: Path, below: int) -> bool:
    """No spooling pass under way, none due, and what was spooled is in the file."""
    stats = transport.statistics()
    return (
        stats.queued_records < below
        and stats.queued_records + stats.spooled_records == stats.enqueued_records
        and stats.spool_bytes == spool.total_bytes(directory)
    )


def spool_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("spool-*.msgpack")) if directory.exists() else []


def numbers(msgs: list[str]) -> list[int]:
    return [int(m[1:]) for m in msgs if m.startswith("m")]


@pytest.fixture
def server_later(socket_path: str) -> Iterator[Callable[[], ForwardServer]]:
    started: list[ForwardServer] = []

    def start() -> ForwardServer:
        started.append(ForwardServer(socket_path))
        return started[-1]

    yield start
    for srv in started:
        srv.close()


def write_orphan(directory: Path, producer: str, messages: int, per_message: int = 2) -> Path:
    """A spool left by a producer that exited: `messages` frames of numbered records."""
    spool.prepare_directory(directory)
    claim = spool.Claim.create(directory, producer, pid=1)
    frames = []
    for m in range(messages):
        chunk = f"{producer}:{m + 1}"
        entries = [(0, record(m * per_message + i, app="old")) for i in range(per_message)]
        payload = wire.encode_forward("old", entries, chunk=chunk)
        frames.append(spool.encode_frame(chunk, payload, count=per_message))
    claim.append(frames, 0)
    claim.close()
    return claim.path


def test_records_past_the_memory_bound_are_spooled_then_delivered_first(
    socket_path: str,
    spool_dir: Path,
    make_transport: Callable[..., Transport],
    server_later: Callable[[], ForwardServer],
) -> None:
    transport = make_transport(socket_path, max_queue_records=40, max_batch_records=5)
    enqueue_many(transport, 35)  # past 3/4 of the bound: the oldest go to disk
    for start in (35, 45, 55, 65, 75, None):
        # Spooled below 3/4 of the bound (30), and the spooling pass over; then 10 more
        # stay within the bound (40) however late the sender is.
        assert wait_until(lambda: settled(transport, spool_dir, below=30))
        if start is not None:
            enqueue_many(transport, 10, start=start)
    stats = transport.statistics()
    assert stats.spooled_records + stats.queued_records == 85
    assert stats.spooled_records >= 55
    assert stats.dropped_records == 0
    (path,) = spool_files(spool_dir)
    assert path.name == f"spool-{transport.producer_id}-{os.getpid()}.msgpack"
    assert stats.spool_bytes == path.stat().st_size > 0
    assert not transport.flush(0.05)  # spooled is not acknowledged

    srv = server_later()
    assert transport.flush(WAIT_S)
    # Spooled (oldest) first, then memory: one run, no resends, nothing missing.
    assert numbers(srv.msgs()) == list(range(85))
    assert wait_until(
        lambda: spool_files(spool_dir) == [] and transport.statistics().spool_bytes == 0
    )
    assert transport.statistics().acked_records == 85


def test_the_byte_bound_starts_spooling_too(
    socket_path: str,
    spool_dir: Path,
    make_transport: Callable[..., Transport],
    server_later: Callable[[], ForwardServer],
) -> None:
    transport = make_transport(socket_path, max_queue_bytes=20_000, max_batch_records=2)
    big = "x" * 1000
    for i in range(14):  # about 1.3 kB each: past 3/4 of 20 kB, within 20 kB
        transport.enqueue("app", time.time_ns(), record(i, msg=f"m{i} {big}"), 20)
    assert wait_until(lambda: settled(transport, spool_dir, below=14))
    stats = transport.statistics()
    assert stats.spooled_records > 0
    assert stats.queued_bytes <= 10_000
    srv = server_later()
    assert transport.flush(WAIT_S)
    assert [m.split()[0] for m in srv.msgs()] == [f"m{i}" for i in range(14)]


def test_close_spools_what_is_unacknowledged_and_the_next_client_delivers_it(
    socket_path: str,
    spool_dir: Path,
    make_transport: Callable[..., Transport],
    server_later: Callable[[], ForwardServer],
) -> None:
    first = Transport(UnixAddress(socket_path), backoff_max_s=0.2)
    enqueue_many(first, 5)
    first.close()
    assert first.statistics().dropped_records == 0
    (path,) = spool_files(spool_dir)
    assert len(list(spool.read_messages(path))) == 1
    assert list(spool.orphans(spool_dir)) == [path]

    srv = server_later()
    second = make_transport(socket_path)
    second.enqueue("app", time.time_ns(), record(0, msg="new"), 20)
    assert second.flush(WAIT_S)
    assert wait_until(lambda: spool_files(spool_dir) == [])
    assert srv.msgs() == ["m0", "m1", "m2", "m3", "m4", "new"]
    producers = [str(m.chunk).split(":")[0] for m in srv.messages]
    assert producers == [first.producer_id, second.producer_id]
    assert second.statistics().orphan_records == 5
    assert second.statistics().acked_records == 1


def test_a_spool_interrupted_mid_delivery_is_resent_in_order(
    socket_path: str,
    spool_dir: Path,
    make_transport: Callable[..., Transport],
) -> None:
    first = Transport(UnixAddress(socket_path), max_batch_records=5)
    enqueue_many(first, 30)
    first.close()  # six spooled messages, left for the next client
    srv = ForwardServer(socket_path, close_after=2)  # breaks before acking the second
    try:
        second = make_transport(socket_path)
        enqueue_many(second, 1, start=30)
        assert second.flush(WAIT_S)
        assert wait_until(lambda: spool_files(spool_dir) == [])
        got = numbers(srv.msgs())
    finally:
        srv.close()
    assert srv.connections == 2
    assert list(dict.fromkeys(got)) == list(range(31))
    # The unacked message is sent again; so may the one before it, when its ack was still
    # in flight as the connection broke. Nothing else.
    assert len(got) - 31 <= 2 * 5


def test_a_producer_that_exits_with_the_daemon_down_leaves_a_spool_for_the_next_one(
    socket_path: str,
    spool_dir: Path,
    server_later: Callable[[], ForwardServer],
) -> None:
    def producer(app: str, *messages: str) -> None:
        script = textwrap.dedent(
            f"""
            import logging, logd_client as logd
            logd.install(app={app!r}, address="unix:{socket_path}", exit_flush_timeout_s=0.2)
            for text in {messages!r}:
                logging.getLogger("p").info(text)
            """
        )
        env = {k: v for k, v in os.environ.items() if k not in ("LOGD_RUN_ID", "LOGD_ADDRESS")}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, timeout=10, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert "lost" not in done.stderr

    producer("first", "a", "b")
    (path,) = spool_files(spool_dir)
    assert path.stat().st_mode & 0o777 == 0o600
    assert spool_dir.stat().st_mode & 0o777 == 0o700
    assert list(spool.orphans(spool_dir)) == [path]

    srv = server_later()
    producer("second", "c")
    assert wait_until(lambda: spool_files(spool_dir) == [])
    kinds = [(r["app"], r.get("event_type", r["msg"])) for r in srv.records()]
    assert kinds == [
        ("first", "app:start"),
        ("first", "a"),
        ("first", "b"),
        ("first", "app:shutdown"),
        ("second", "app:start"),
        ("second", "c"),
        ("second", "app:shutdown"),
    ]


def test_the_spool_of_a_live_producer_is_left_alone(
    socket_path: str,
    spool_dir: Path,
    make_transport: Callable[..., Transport],
    server_later: Callable[[], ForwardServer],
) -> None:
    orphan = write_orphan(spool_dir, "cd" * 8, messages=2)
    live = spool.Claim(orphan)  # as if its producer were still running
    srv = server_later()
    first = make_transport(socket_path)
    enqueue_many(first, 1, start=100)
    assert first.flush(WAIT_S)
    assert srv.msgs() == ["m100"]
    assert orphan.exists()

    live.close()  # the producer exits: the next client delivers its spool
    second = make_transport(socket_path)
    enqueue_many(second, 1, start=101)
    assert second.flush(WAIT_S)
    assert wait_until(lambda: not orphan.exists())
    assert srv.msgs() == ["m100", "m0", "m1", "m2", "m3", "m101"]


def test_a_truncated_orphan_delivers_its_complete_frames_and_reports_the_rest(
    socket_path: str,
    spool_dir: Path,
    make_transport: Callable[..., Transport],
    server_later: Callable[[], ForwardServer],
) -> None:
    orphan = write_orphan(spool_dir, "ef" * 8, messages=3)
    with open(orphan, "r+b") as file:
        file.truncate(orphan.stat().st_size - 5)  # the writer died inside its last append
    srv = server_later()
    transport = make_transport(socket_path)
    enqueue_many(transport, 1, start=100)
    assert transport.flush(WAIT_S)
    assert srv.wait_for(lambda s: any(r.get("event_type") == "logd:dropped" for r in s.records()))
    assert wait_until(lambda: not orphan.exists())
    records = srv.records()
    assert [r["msg"] for r in records if "event_type" not in r] == ["m0", "m1", "m2", "m3", "m100"]
    (report,) = [r for r in records if r.get("event_type") == "logd:dropped"]
    assert report["kv"] == {"count": 2}  # the cut frame's two records
    assert report["msg"] == "logd_client dropped 2 records: a spool file was damaged"
    assert transport.statistics().dropped_records == 2


def test_when_the_spool_is_full_records_are_dropped_counted_and_reported(
    socket_path: str,
    spool_dir: Path,
    make_transport: Callable[..., Transport],
    server_later: Callable[[], ForwardServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    max_spool_bytes = 1500
    transport = make_transport(
        socket_path, max_queue_records=20, max_batch_records=5, max_spool_bytes=max_spool_bytes
    )
    total = 200
    sent = 0
    while sent < total:
        enqueue_many(transport, 5, start=sent)
        sent += 5
        # Give the sender the chance to spool; once the spool is full, memory stays full.
        if not wait_until(lambda: transport.statistics().queued_records <= 12, 0.3):
            break
    enqueue_many(transport, total - sent, start=sent)
    stats = transport.statistics()
    assert stats.spooled_records > 0
    assert stats.dropped_records > 0
    assert sum(p.stat().st_size for p in spool_files(spool_dir)) <= max_spool_bytes

    srv = server_later()
    assert transport.flush(WAIT_S)
    assert srv.wait_for(lambda s: any(r.get("event_type") == "logd:dropped" for r in s.records()))
    records = srv.records()
    delivered = numbers([r["msg"] for r in records if "event_type" not in r])
    assert delivered == sorted(set(delivered))  # in order, once each
    dropped = transport.statistics().dropped_records
    assert len(delivered) + dropped == total
    reports = [r["kv"]["count"] for r in records if r.get("event_type") == "logd:dropped"]
    assert sum(reports) == dropped
    err = capsys.readouterr().err
    assert err.count("logd_client: the spool in") == 1  # warned once, not per record
    assert err.count("dropping records") == 1


def test_a_forked_child_leaves_the_parents_spool_and_lock_alone(
    socket_path: str,
    spool_dir: Path,
    make_transport: Callable[..., Transport],
    server_later: Callable[[], ForwardServer],
) -> None:
    transport = make_transport(socket_path, max_queue_records=20, max_batch_records=5)
    enqueue_many(transport, 18)
    assert wait_until(lambda: transport.statistics().spooled_records > 0)
    (parent_spool,) = spool_files(spool_dir)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            code = _child_checks(transport, parent_spool)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with pytest.raises(spool.SpoolBusy):  # the child did not unlock the parent's file
        spool.Claim(parent_spool)
    (child_spool,) = set(spool_files(spool_dir)) - {parent_spool}
    assert list(spool.orphans(spool_dir)) == [child_spool]

    srv = server_later()
    assert transport.flush(WAIT_S)
    assert wait_until(lambda: spool_files(spool_dir) == [])
    msgs = srv.msgs()
    assert sorted(msgs) == sorted([f"m{i}" for i in range(18)] + ["child"])
    assert numbers(msgs) == list(range(18))


def _child_checks(transport: Transport, parent_spool: Path) -> int:
    fd_dir = Path("/proc/self/fd")
    if fd_dir.exists():
        held = {os.path.realpath(fd_dir / fd) for fd in os.listdir(fd_dir)}
        if str(parent_spool) in held:
            return 2  # the inherited descriptor would keep the lock after the parent exits
    if transport.statistics().queued_records or transport.statistics().spool_bytes:
        return 3  # the parent's records are the parent's
    transport.enqueue("app", time.time_ns(), record(0, msg="child"), 20)
    transport.close()  # no daemon: into the child's own spool
    return 0
