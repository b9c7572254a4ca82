"""Messages a client wrote back to back reach the writer together (issue 18 goal 4): fewer
writer jobs than messages, acks in order, a message cut across reads waits for its rest,
and a bad message in the middle harms only itself."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from functools import partial

import msgpack
import pytest
import trio
from logd_client import wire

from logd.config import Config
from logd.server import LogdServer, serve_logd
from logd.write.engine import Engine
from logd.write.jobs import Ingest, Job
from tests.helpers import read_lines
from tests.integration.test_back_to_back import lines_of
from tests.integration.test_server import Producer, rec


class CountingEngine(Engine):
    """A real engine that notes how many messages each `Ingest` job carried."""

    jobs: list[int]

    def process(self, jobs: Sequence[Job]) -> None:
        CountingEngine.jobs += [len(job.messages) for job in jobs if isinstance(job, Ingest)]
        super().process(jobs)


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
        events: list[object] = []
        with trio.fail_after(20):
            while not events or events[-1] != wire.Closed():
                try:
                    events.append(await producer.receive())
                except trio.BrokenResourceError:  # closed with bytes unread: a reset
                    events.append(wire.Closed())
        assert events == [*ack_list(2), wire.Closed()]
        assert lines_of(config.root) == ["m0", "m1"]
        assert server.errors["malformed"] == 1
        await producer.aclose()
        server.request_stop()
