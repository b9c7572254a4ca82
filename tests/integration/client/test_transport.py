"""logd_client's transport against a real Unix socket and a small Forward server thread."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import logd_client as logd
import pytest
from logd_client import handler, wire
from logd_client.address import UnixAddress, parse_address
from logd_client.transport import Transport

WAIT_S = 2.0


class ForwardServer:
    """A tiny Forward daemon: records every message it receives and acks when told to.

    Args:
        path: the Unix socket to listen on; None for TCP on 127.0.0.1.
        ack: whether to answer chunks with acks (may be changed while running).
        close_after: close the connection on receiving this many messages in total,
            without acking the last one (once).
    """

    def __init__(
        self, path: str | None, *, ack: bool = True, close_after: int | None = None
    ) -> None:
        self.ack = ack
        self.close_after = close_after
        self.messages: list[wire.Entries] = []
        self.connections = 0
        self.cond = threading.Condition()
        self._stop = threading.Event()
        if path is None:  # TCP on a free loopback port
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.bind(("127.0.0.1", 0))
            self.path = ""
            self.address = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"
        else:
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind(path)
            self.path = path
            self.address = f"unix:{path}"
        self._listener.listen(16)
        self._listener.settimeout(0.02)
        self._threads = [threading.Thread(target=self._accept_loop, daemon=True)]
        self._threads[0].start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.cond:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        decoder = wire.ForwardDecoder()
        conn.settimeout(0.02)
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if data:
                    decoder.receive_data(data)
                else:
                    decoder.receive_eof()
                while (event := decoder.next_event()) is not None:
                    if isinstance(event, wire.Closed):
                        return
                    if not isinstance(event, wire.Entries):
                        continue
                    with self.cond:
                        self.messages.append(event)
                        self.cond.notify_all()
                        if self.close_after is not None and len(self.messages) >= self.close_after:
                            self.close_after = None
                            return
                        ack = self.ack
                    if ack and event.chunk is not None:
                        try:
                            conn.sendall(wire.encode_ack(event.chunk))
                        except OSError:  # the client gave up on this connection
                            return

    def records(self) -> list[dict[str, Any]]:
        """Every record received, in arrival order (resent ones again)."""
        with self.cond:
            return [record for m in self.messages for _, record in m.entries]

    def msgs(self) -> list[str]:
        return [r.get("msg", "") for r in self.records()]

    def wait_for(self, predicate: Callable[[ForwardServer], bool], timeout: float = WAIT_S) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(1.0)


@pytest.fixture
def socket_path() -> Iterator[str]:
    # sun_path holds 108 bytes: pytest's tmp_path can be longer than that.
    directory = tempfile.mkdtemp(prefix="logd-", dir="/tmp")
    yield os.path.join(directory, "s.sock")
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def server(socket_path: str) -> Iterator[ForwardServer]:
    srv = ForwardServer(socket_path)
    yield srv
    srv.close()


@pytest.fixture
def make_transport() -> Iterator[Callable[..., Transport]]:
    made: list[Transport] = []

    def make(path: str, **kwargs: Any) -> Transport:
        kwargs.setdefault("backoff_max_s", 0.2)
        transport = Transport(UnixAddress(path), **kwargs)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()


def record(i: int, **fields: Any) -> dict[str, Any]:
    return {"msg": f"m{i}", "level": "INFO", "logger": "t", **fields}


def enqueue_many(transport: Transport, n: int, start: int = 0, levelno: int = 20) -> None:
    for i in range(start, start + n):
        transport.enqueue("app", time.time_ns(), record(i), levelno)


def first_occurrences(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def test_records_arrive_in_order_with_their_fields(
    server: ForwardServer, make_transport: Callable[..., Transport]
) -> None:
    transport = make_transport(server.path, max_batch_records=7)
    t0 = time.time_ns()
    for i in range(50):
        transport.enqueue("myapp", t0 + i, record(i, kv={"n": i}), 20)
    assert transport.flush(WAIT_S)
    assert server.msgs() == [f"m{i}" for i in range(50)]
    assert {m.tag for m in server.messages} == {"myapp"}
    assert max(len(m.entries) for m in server.messages) <= 7
    first = server.messages[0].entries[0]
    assert first == (t0, {"msg": "m0", "level": "INFO", "logger": "t", "kv": {"n": 0}})
    chunks = [m.chunk for m in server.messages]
    assert all(isinstance(c, str) and c.startswith(transport.producer_id + ":") for c in chunks)
    assert len(set(chunks)) == len(chunks)
    stats = transport.statistics()
    assert (stats.acked_records, stats.inflight_records, stats.queued_records) == (50, 0, 0)


def test_a_backlog_goes_out_in_messages_bounded_by_bytes_not_by_record_count(
    socket_path: str, make_transport: Callable[..., Transport]
) -> None:
    # With the defaults, a message carries up to 1 MiB (estimated) of records however many
    # that is: each carries more records of every live session, and the daemon's cost per
    # file and batch is shared by them.
    transport = make_transport(socket_path)
    enqueue_many(transport, 6000)
    server = ForwardServer(socket_path)
    try:
        assert transport.flush(WAIT_S)
        sizes = [len(m.entries) for m in server.messages]
        assert sum(sizes) == 6000
        assert len(sizes) == 2
        assert min(sizes) > 1000
        assert server.msgs() == [f"m{i}" for i in range(6000)]
    finally:
        server.close()


def test_flush_is_false_without_acks_and_unacked_messages_are_resent(
    socket_path: str, make_transport: Callable[..., Transport]
) -> None:
    transport = make_transport(socket_path, ack_timeout_s=0.3)
    # Queued before anything listens, so all three travel in the first message. Enqueued
    # with a server up, the sender thread may take m0 alone; m1 and m2 then wait for its
    # ack (the hold-back rule) and are sent once, after acks are back on.
    enqueue_many(transport, 3)
    server = ForwardServer(socket_path, ack=False)
    try:
        assert not transport.flush(0.2)
        assert server.wait_for(lambda s: s.msgs()[:3] == ["m0", "m1", "m2"])
        assert len(server.messages[0].entries) == 3  # one message, sent without an ack
        server.ack = True
        # The ack timeout breaks the connection; the same message is resent on a new one.
        assert transport.flush(WAIT_S)
        assert server.connections >= 2
        assert first_occurrences(server.msgs()) == ["m0", "m1", "m2"]
        chunks = [m.chunk for m in server.messages]
        assert all(chunks.count(c) >= 2 for c in chunks)  # resent as they were, same chunk ids
    finally:
        server.close()


def test_reconnects_and_resends_when_the_server_closes_mid_stream(
    server: ForwardServer, make_transport: Callable[..., Transport]
) -> None:
    server.close_after = 3
    transport = make_transport(server.path, max_batch_records=5, window=2)
    enqueue_many(transport, 40)
    assert transport.flush(WAIT_S)
    got = [int(m[1:]) for m in server.msgs()]
    broken_at = int(server.messages[2].entries[0][1]["msg"][1:])
    assert first_occurrences([str(i) for i in got]) == [str(i) for i in range(40)]
    assert server.connections == 2
    # One run per connection, each in order without gaps: the second starts with the
    # resent records (from the unacked message on), before anything newer.
    runs: list[list[int]] = [[got[0]]]
    for i in got[1:]:
        if i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    assert len(runs) == 2
    assert runs[0][0] == 0
    assert runs[1][-1] == 39
    assert runs[1][0] == broken_at  # the message the server never acked comes first


def test_tcp_address() -> None:
    srv = ForwardServer(None)
    try:
        transport = Transport(parse_address(srv.address))
        try:
            enqueue_many(transport, 3)
            assert transport.flush(WAIT_S)
        finally:
            transport.close()
        assert srv.msgs() == ["m0", "m1", "m2"]
    finally:
        srv.close()


def test_records_wait_for_a_daemon_that_starts_late(
    socket_path: str, make_transport: Callable[..., Transport]
) -> None:
    transport = make_transport(socket_path)
    enqueue_many(transport, 5)
    assert not transport.flush(0.1)
    assert transport.statistics().queued_records == 5
    srv = ForwardServer(socket_path)
    try:
        assert transport.flush(WAIT_S)
        assert srv.msgs() == [f"m{i}" for i in range(5)]
    finally:
        srv.close()


def test_emit_stays_fast_and_silent_without_a_daemon(
    socket_path: str, clean_runtime: None, capsys: pytest.CaptureFixture[str]
) -> None:
    log_handler = handler.LogdHandler(app="fast", address=f"unix:{socket_path}")
    log = logging.getLogger("test_client_transport.fast")
    log.propagate = False
    log.addHandler(log_handler)
    log.setLevel(logging.INFO)
    try:
        n = 5000
        start = time.perf_counter()
        for i in range(n):
            log.info("x %d", i)
        per_call_s = (time.perf_counter() - start) / n
    finally:
        log.removeHandler(log_handler)
    # Generous bound for slow CI machines; measured around 5 us on a laptop.
    assert per_call_s < 100e-6
    assert log_handler.transport.statistics().queued_records == n + 1  # + app:start
    assert capsys.readouterr().err == ""


def test_queue_bound_drops_and_reports_the_count(
    socket_path: str,
    make_transport: Callable[..., Transport],
    capsys: pytest.CaptureFixture[str],
) -> None:
    transport = make_transport(socket_path, max_queue_records=10, use_spool=False)
    enqueue_many(transport, 15)  # INFO: the five newest are dropped
    transport.enqueue("app", time.time_ns(), record(99, level="ERROR"), 40)  # evicts m0
    stats = transport.statistics()
    assert stats.dropped_records == 6
    assert stats.queued_records == 11  # the bound, plus the pending drop report
    err = capsys.readouterr().err
    assert err.count("dropping records") == 1
    srv = ForwardServer(socket_path)
    try:
        assert transport.flush(WAIT_S)
        records = srv.records()
    finally:
        srv.close()
    assert [r["msg"] for r in records if "event_type" not in r] == [
        *(f"m{i}" for i in range(1, 10)),
        "m99",
    ]
    (report,) = [r for r in records if r.get("event_type") == "logd:dropped"]
    assert report["kv"] == {"count": 6}
    assert report["logger"] == "logd_client"
    assert report["msg"] == "logd_client dropped 6 records: its queue was full"


def test_queue_byte_bound_drops_what_does_not_fit(
    socket_path: str,
    make_transport: Callable[..., Transport],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The memory bound counts bytes as well as records: a few large records fill it."""
    transport = make_transport(socket_path, max_queue_bytes=10_000, use_spool=False)
    big = "x" * 1000
    for i in range(10):
        transport.enqueue("app", time.time_ns(), record(i, msg=f"m{i} {big}"), 20)
    transport.enqueue("app", time.time_ns(), record(99, msg=f"m99 {big}", level="ERROR"), 40)
    stats = transport.statistics()
    assert stats.queued_bytes <= 10_000 + 300  # plus the drop report
    assert stats.dropped_records == 10 - (stats.queued_records - 1) + 1
    assert capsys.readouterr().err.count("dropping records") == 1
    srv = ForwardServer(socket_path)
    try:
        assert transport.flush(WAIT_S)
        msgs = [m.split()[0] for m in srv.msgs() if m]
    finally:
        srv.close()
    assert msgs[-1] == "m99"  # the ERROR record took the place of the oldest INFO one
    assert "m0" not in msgs


def test_forked_child_has_its_own_transport(
    socket_path: str, make_transport: Callable[..., Transport]
) -> None:
    transport = make_transport(socket_path)
    enqueue_many(transport, 3)  # queued in the parent: the daemon is not there yet
    parent_producer = transport.producer_id
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            if transport.statistics().queued_records == 0:
                transport.enqueue("app", time.time_ns(), record(0, msg="child"), 20)
                code = 0 if transport.flush(5.0) else 2
        finally:
            os._exit(code)
    srv = ForwardServer(socket_path)
    try:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert transport.flush(WAIT_S)
        got = srv.msgs()
        producers = {str(m.chunk).split(":")[0] for m in srv.messages}
    finally:
        srv.close()
    assert sorted(got) == ["child", "m0", "m1", "m2"]
    assert parent_producer in producers
    assert len(producers) == 2


def test_install_delivers_lifecycle_events_and_records(
    server: ForwardServer, clean_runtime: None
) -> None:
    logd.install(app="demo", address=f"unix:{server.path}")
    log = logging.getLogger("demo.agent")
    with logd.session("s1"):
        log.info("hello %s", "world", extra={"user": "ann"})
        logd.event("llm:request", "agent", model="llama3.2", tokens_in=512)
    with logd.call("c1", bot_id="b1"):
        log.warning("in call")
    try:
        raise ValueError("boom")
    except ValueError as exc:
        logd.error("agent", exc, context="session s1")
    logd.end_session("s1")
    assert logd.flush(WAIT_S)
    records = server.records()
    kinds = [r.get("event_type", r["msg"]) for r in records]
    assert kinds == [
        "app:start",
        "hello world",
        "llm:request",
        "call:start",
        "in call",
        "call:end",
        "error:runtime",
        "session:end",
    ]
    run_id = logd.run_id()
    assert all(r["run_id"] == run_id and r["app"] == "demo" for r in records)
    start, hello, llm, call_start, in_call, call_end, err, end = records
    assert start["kv"]["pid"] == os.getpid()
    assert set(start["kv"]) == {"pid", "host", "argv", "client_version"}
    assert hello["session_id"] == "s1"
    assert hello["user"] == "ann"
    assert hello["logger"] == "demo.agent"
    assert hello["level"] == "INFO"
    assert llm["kv"] == {"model": "llama3.2", "tokens_in": 512}
    assert llm["logger"] == "agent"
    assert call_start["call_id"] == in_call["call_id"] == call_end["call_id"] == "c1"
    assert in_call["bot_id"] == "b1"
    assert "session_id" not in in_call
    assert call_end["kv"]["duration_ms"] >= 0
    assert err["level"] == "ERROR"
    assert err["msg"] == "session s1 - ValueError: boom"
    assert "Traceback" in err["exc"]
    assert end["session_id"] == "s1"


def test_exit_hook_sends_shutdown_and_never_hangs(server: ForwardServer, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import logging, logd_client as logd
        logd.install(app="exiting", address="unix:{server.path}")
        logging.getLogger("x").info("bye")
        """
    )
    absent = os.path.join(os.path.dirname(server.path), "absent.sock")
    hanging = textwrap.dedent(
        f"""
        import logging, logd_client as logd
        logd.install(app="exiting", address="unix:{absent}", exit_flush_timeout_s=0.3)
        logging.getLogger("x").info("lost")
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("LOGD_RUN_ID", "LOGD_ADDRESS")}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=10)
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", hanging], check=True, env=env, timeout=10)
    assert time.monotonic() - start < 3.0
    assert server.wait_for(lambda s: len(s.records()) >= 3)
    records = server.records()
    assert [r.get("event_type", r["msg"]) for r in records] == ["app:start", "bye", "app:shutdown"]
    assert records[0]["run_id"] == records[2]["run_id"]
