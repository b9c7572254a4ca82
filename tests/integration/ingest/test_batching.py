"""Messages a client wrote back to back reach the writer together (issue 18 goal 4): fewer
writer jobs than messages, acks in order, a message cut across reads waits for its rest,
and a bad message in the middle harms only itself."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial

import msgpack
import pytest
import trio
from logd_client import wire
from logd_client.wire.decode import READ_CHUNK

from logd.config import Config, Limits
from logd.ingest.batching import read_ahead_pool
from logd.server import LogdServer, serve_logd
from logd.write.engine import Engine
from logd.write.flight import Gathered
from logd.write.jobs import Ingest, Job
from tests.helpers import read_lines
from tests.integration.test_back_to_back import lines_of
from tests.integration.test_server import Producer, rec


class CountingEngine(Engine):
    """A real engine that notes how many messages each `Ingest` job carried."""

    jobs: list[int]

    def gather_jobs(self, jobs: Sequence[Job]) -> Gathered:
        type(self).jobs += [len(job.messages) for job in jobs if isinstance(job, Ingest)]
        return super().gather_jobs(jobs)


def message_mode(index: int, **fields: object) -> bytes:
    return wire.encode_message("cyc", time.time_ns(), rec(f"m{index}", **fields), chunk=f"c{index}")


def ack_list(count: int) -> list[wire.Ack]:
    return [wire.Ack(f"c{i}") for i in range(count)]


async def receive_acks(producer: Producer, count: int) -> list[object]:
    with trio.fail_after(20):
        return [await producer.receive() for _ in range(count)]


@pytest.fixture
def counting() -> type[CountingEngine]:
    CountingEngine.jobs = []
    return CountingEngine


async def test_a_burst_reaches_the_writer_in_few_jobs_and_is_acked_in_order(
    config: Config, counting: type[CountingEngine]
) -> None:
    count = 500
    async with trio.open_nursery() as nursery:
        server = LogdServer(config, engine_factory=counting)
        await nursery.start(partial(serve_logd, config, server=server))
        producer = await Producer.unix(config.listen.socket)
        await producer.send(b"".join(message_mode(i) for i in range(count)))
        acks = await receive_acks(producer, count)
        assert len(acks) == count
        wrong = [(i, a) for i, a in enumerate(acks) if a != wire.Ack(f"c{i}")]
        assert not wrong, wrong[:5]
        lines = lines_of(config.root)
        assert len(lines) == count
        out_of_order = [(i, line) for i, line in enumerate(lines) if line != f"m{i}"]
        assert not out_of_order, out_of_order[:5]
        assert sum(counting.jobs) == count
        # One write of 500 messages arrives in a handful of reads, not 500 jobs.
        assert len(counting.jobs) < count // 10, counting.jobs[:20]
        await producer.aclose()
        server.request_stop()


async def test_a_message_cut_across_reads_waits_for_its_rest(config: Config) -> None:
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        await nursery.start(partial(serve_logd, config, server=server))
        producer = await Producer.unix(config.listen.socket)
        data = [message_mode(i) for i in range(6)]
        whole, cut = b"".join(data[:3]), data[3]
        # Three whole messages and half of the fourth: the three are acked, the fourth
        # is not written until its rest arrives.
        await producer.send(whole + cut[: len(cut) // 2])
        assert await receive_acks(producer, 3) == ack_list(3)
        assert lines_of(config.root) == ["m0", "m1", "m2"]
        await producer.send(cut[len(cut) // 2 :] + b"".join(data[4:]))
        assert await receive_acks(producer, 3) == ack_list(6)[3:]
        assert lines_of(config.root) == [f"m{i}" for i in range(6)]
        await producer.aclose()
        server.request_stop()


async def test_a_bad_record_in_the_middle_of_a_burst_harms_only_itself(config: Config) -> None:
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        await nursery.start(partial(serve_logd, config, server=server))
        producer = await Producer.unix(config.listen.socket)
        # Forward mode, its one entry with a time that is not one: rejected, and acked.
        bad = msgpack.packb(["cyc", [["not a time", rec("m2")]], {"chunk": "c2"}])
        data = [message_mode(0), message_mode(1), bad, message_mode(3), message_mode(4)]
        await producer.send(b"".join(data))
        assert await receive_acks(producer, 5) == ack_list(5)
        assert lines_of(config.root) == ["m0", "m1", "m3", "m4"]
        (rejected,) = (config.root / "_rejected").iterdir()
        (line,) = read_lines(rejected)
        assert json.loads(line)["reason"] == "time is not int or EventTime"
        await producer.aclose()
        server.request_stop()


async def test_messages_before_broken_bytes_are_written_and_acked(config: Config) -> None:
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        await nursery.start(partial(serve_logd, config, server=server))
        producer = await Producer.unix(config.listen.socket)
        # 0xc1 is never valid msgpack: the stream cannot be read past it.
        await producer.send(message_mode(0) + message_mode(1) + b"\xc1" + message_mode(2))
        events = await producer.receive_until_closed()
        assert events == [*ack_list(2), wire.Closed()]
        assert lines_of(config.root) == ["m0", "m1"]
        assert server.errors["malformed"] == 1
        await producer.aclose()
        server.request_stop()


class HeldEngine(CountingEngine):
    """A counting engine whose first batch waits until the test lets it go, so the test
    can send while the writer is busy with it."""

    busy: threading.Event
    release: threading.Event

    def gather_jobs(self, jobs: Sequence[Job]) -> Gathered:
        if any(isinstance(job, Ingest) for job in jobs) and not HeldEngine.busy.is_set():
            HeldEngine.busy.set()
            HeldEngine.release.wait(20)
        return super().gather_jobs(jobs)


@pytest.fixture
def held() -> type[HeldEngine]:
    HeldEngine.jobs = []
    HeldEngine.busy, HeldEngine.release = threading.Event(), threading.Event()
    return HeldEngine


@asynccontextmanager
async def writer_busy(
    config: Config, held: type[HeldEngine], first: bytes
) -> AsyncIterator[tuple[LogdServer, Producer, trio.Nursery]]:
    """A daemon whose writer holds `first`, the message of the producer given; stopped
    after the block."""
    async with trio.open_nursery() as nursery:
        server = LogdServer(config, engine_factory=held)
        await nursery.start(partial(serve_logd, config, server=server))
        producer = await Producer.unix(config.listen.socket)
        await producer.send(first)
        await trio.to_thread.run_sync(held.busy.wait, 20)
        yield server, producer, nursery
        await producer.aclose()
        server.request_stop()


async def read_ahead_below(server: LogdServer, left: int) -> None:
    """Wait until the connections' read-ahead has less than `left` bytes left."""
    with trio.fail_after(20):
        while server.connections.read_ahead_left >= left:
            await trio.sleep(0.01)


READ_AHEAD_BYTES = Limits().read_ahead_bytes
READ_AHEAD_TOTAL = read_ahead_pool(READ_AHEAD_BYTES, 1)  # the producer's connection alone


def padded(index: int) -> bytes:
    return message_mode(index, pad="x" * 3000)


async def send_then_release(producer: Producer, held: type[HeldEngine], count: int) -> None:
    """Send messages 1 .. count-1 while the writer holds message 0, let it go, and check
    that all `count` are acked in order."""
    with trio.fail_after(20):
        for i in range(1, count):
            await producer.send(padded(i))
    held.release.set()
    assert await receive_acks(producer, count) == ack_list(count)


def unpadded(lines: list[str]) -> list[str]:
    return [line.split(" pad=", 1)[0] for line in lines]


async def test_messages_sent_while_the_writer_is_busy_go_to_it_as_one_job(
    config: Config, held: type[HeldEngine]
) -> None:
    # ~90 KiB in 30 writes while the first message is being written: more than one read's
    # worth (64 KiB), within the read-ahead limit, all read meanwhile.
    count = 31
    async with writer_busy(config, held, padded(0)) as (server, producer, _):
        await send_then_release(producer, held, count)
        assert held.jobs == [1, count - 1]
        assert unpadded(lines_of(config.root)) == [f"m{i}" for i in range(count)]
        assert server.connections.read_ahead_left == READ_AHEAD_TOTAL


async def test_read_ahead_bytes_0_reads_nothing_ahead(
    config: Config, held: type[HeldEngine]
) -> None:
    # Off: what arrives while the writer is busy waits in the socket, and goes to the
    # writer a read (64 KiB) at a time.
    config = replace(config, limits=replace(config.limits, read_ahead_bytes=0))
    count = 31
    async with writer_busy(config, held, padded(0)) as (server, producer, _):
        await send_then_release(producer, held, count)
        assert len(held.jobs) > 2, held.jobs
        assert server.connections.read_ahead_left == 0
        assert unpadded(lines_of(config.root)) == [f"m{i}" for i in range(count)]


async def test_a_connection_reads_ahead_at_most_its_limit(
    config: Config, held: type[HeldEngine]
) -> None:
    # Twice the limit sent while the writer is busy: one job holds at most the limit
    # (plus the read that crossed it); every message is still written once, in order.
    size = len(padded(1))
    count = 2 * READ_AHEAD_BYTES // size
    async with writer_busy(config, held, padded(0)) as (server, producer, nursery):
        below = READ_AHEAD_TOTAL - READ_AHEAD_BYTES + 1
        await read_ahead_then_release(config, server, producer, nursery, held, count, below)
        assert max(held.jobs[1:]) <= (READ_AHEAD_BYTES + READ_CHUNK) // size + 1, held.jobs


async def read_ahead_then_release(
    config: Config,
    server: LogdServer,
    producer: Producer,
    nursery: trio.Nursery,
    held: type[HeldEngine],
    count: int,
    below: int,
) -> None:
    """Send messages 1 .. count while the writer holds message 0, wait until the pool has
    fewer than `below` bytes left, let the writer go: all acked and written once, in order."""
    nursery.start_soon(producer.send, b"".join(padded(i) for i in range(1, count + 1)))
    await read_ahead_below(server, below)
    held.release.set()
    assert await receive_acks(producer, count + 1) == ack_list(count + 1)
    assert sum(held.jobs) == count + 1
    assert unpadded(lines_of(config.root)) == [f"m{i}" for i in range(count + 1)]


async def test_a_client_that_closes_while_the_writer_is_busy_gets_every_ack(
    config: Config, held: type[HeldEngine]
) -> None:
    async with writer_busy(config, held, message_mode(0)) as (server, producer, _):
        await producer.send(b"".join(message_mode(i) for i in range(1, 5)))
        assert isinstance(producer.stream, trio.abc.HalfCloseableStream)
        await producer.stream.send_eof()  # read ahead: the messages, then the EOF
        await read_ahead_below(server, READ_AHEAD_TOTAL)
        held.release.set()
        events = [*await receive_acks(producer, 5), await producer.receive()]
        assert events == [*ack_list(5), wire.Closed()]
        assert held.jobs == [1, 4]
        assert lines_of(config.root) == [f"m{i}" for i in range(5)]
        assert not server.errors


async def test_bad_bytes_read_ahead_close_the_connection_after_the_messages_before(
    config: Config, held: type[HeldEngine]
) -> None:
    async with writer_busy(config, held, message_mode(0)) as (server, producer, _):
        await producer.send(message_mode(1) + message_mode(2) + b"\xc1" + message_mode(3))
        await read_ahead_below(server, READ_AHEAD_TOTAL)
        held.release.set()
        events = await producer.receive_until_closed()
        assert events == [*ack_list(3), wire.Closed()]
        assert lines_of(config.root) == ["m0", "m1", "m2"]
        assert server.errors["malformed"] == 1


async def test_with_many_connections_open_a_busy_one_reads_ahead_only_its_share(
    config: Config, held: type[HeldEngine]
) -> None:
    # 256 KiB a connection makes a 1 MiB pool; 200 connected clients shrink it to its
    # floor (512 KiB), of which one connection may take a quarter: 128 KiB, not 256.
    limit = 256 * 1024
    config = replace(config, limits=replace(config.limits, read_ahead_bytes=limit))
    idle_count = 200
    pool = read_ahead_pool(limit, idle_count + 1)
    share = pool // 4
    assert share < limit
    size = len(padded(1))
    count = 2 * limit // size
    async with trio.open_nursery() as nursery:
        server = LogdServer(config, engine_factory=held)
        await nursery.start(partial(serve_logd, config, server=server))
        idle = [await trio.open_unix_socket(str(config.listen.socket)) for _ in range(idle_count)]
        with trio.fail_after(20):
            while len(server.connections.conns) < idle_count:
                await trio.sleep(0.01)
        producer = await Producer.unix(config.listen.socket)
        await producer.send(padded(0))
        await trio.to_thread.run_sync(held.busy.wait, 20)
        await read_ahead_then_release(
            config, server, producer, nursery, held, count, pool - share + 1
        )
        assert max(held.jobs[1:]) <= (share + READ_CHUNK) // size + 1, held.jobs
        for stream in idle:
            await stream.aclose()
        await producer.aclose()
        server.request_stop()
