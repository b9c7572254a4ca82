"""Stopping with connections under way: nothing handed to the writer goes unacked, a live
stream does not hold the stop for the whole drain grace, a message half received finishes.

An unacked message is resent by its client; one that was written is then written twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from functools import partial

import pytest
import trio
from logd_client import wire

from logd.config import Config
from logd.ingest.connections import DRAIN_READ_S
from logd.server import LogdServer, serve_logd
from logd.write.engine import Engine
from logd.write.flight import Gathered
from logd.write.jobs import Ingest, Job
from tests.helpers import read_lines
from tests.integration.test_server import RUN, Producer, rec

SLOW = "written slowly"
SLOW_WRITE_S = 1.0
GRACE_S = 0.3


class SlowDisk(Engine):
    """A real engine whose batch holding SLOW takes SLOW_WRITE_S, as a stalled disk would."""

    started = threading.Event()

    def gather_jobs(self, jobs: Sequence[Job]) -> Gathered:
        if any(
            isinstance(job, Ingest)
            and any(
                raw.get("msg") == SLOW for message in job.messages for _, raw in message.entries
            )
            for job in jobs
        ):
            SlowDisk.started.set()
            time.sleep(SLOW_WRITE_S)
        return super().gather_jobs(jobs)


async def slow_batch(config: Config, server: LogdServer) -> Producer:
    """A producer whose message SLOW the writer is now writing, slowly."""
    producer = await Producer.unix(config.listen.socket)
    await producer.send(wire.encode_forward("cyc", [(time.time_ns(), rec(SLOW))], chunk="s1"))
    with trio.fail_after(10):
        while not SlowDisk.started.is_set():
            await trio.sleep(0.01)
    return producer


def lines(config: Config) -> list[str]:
    path = config.root / f"cyc/runs/{RUN}/main.log"
    return [line.rsplit(" - ", 1)[1] for line in read_lines(path)] if path.exists() else []


async def test_a_message_the_writer_holds_when_the_grace_ends_is_still_acked(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("logd.server.DRAIN_GRACE_S", GRACE_S)
    SlowDisk.started.clear()
    server = LogdServer(config, engine_factory=SlowDisk)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_logd, config, server=server))
        producer = await slow_batch(config, server)
        server.request_stop()  # the grace ends while the batch is still being written
        with trio.fail_after(10):
            assert await producer.receive() == wire.Ack("s1")
            assert await producer.receive() == wire.Closed()
        await producer.aclose()
    assert lines(config) == [SLOW]


async def test_a_live_stream_is_stopped_within_moments_and_every_ack_is_written_once(
    config: Config,
) -> None:
    server = LogdServer(config)
    acked: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_logd, config, server=server))
        producer = await Producer.unix(config.listen.socket)

        async def stream() -> None:
            for n in range(1_000_000):
                message = wire.encode_forward(
                    "cyc", [(time.time_ns(), rec(f"n{n}"))], chunk=f"c{n}"
                )
                try:
                    await producer.send(message)
                    reply = await producer.receive()
                except trio.BrokenResourceError:
                    return
                if reply == wire.Closed():
                    return
                assert reply == wire.Ack(f"c{n}")
                acked.append(n)

        async with trio.open_nursery() as senders:
            senders.start_soon(stream)
            with trio.fail_after(10):
                while len(acked) < 50:
                    await trio.sleep(0.01)
            stopping = trio.current_time()
            server.request_stop()
        stopped_streaming = trio.current_time() - stopping
        await producer.aclose()
    assert stopped_streaming < DRAIN_READ_S + 1.0  # the drain grace is 5 s
    assert lines(config) == [f"n{n}" for n in acked], "every ack written, each once"


async def test_a_message_half_received_at_the_stop_may_finish(config: Config) -> None:
    server = LogdServer(config)
    message = wire.encode_forward("cyc", [(time.time_ns(), rec("in two halves"))], chunk="h1")
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_logd, config, server=server))
        producer = await Producer.unix(config.listen.socket)
        await producer.send(message[:10])
        with trio.fail_after(10):
            while not any(c.mid_message for c in server.connections.conns.values()):
                await trio.sleep(0.01)
        server.request_stop()
        await trio.sleep(DRAIN_READ_S * 2)  # past the moment new messages stop being read
        await producer.send(message[10:])
        with trio.fail_after(10):
            assert await producer.receive() == wire.Ack("h1")
            assert await producer.receive() == wire.Closed()
        await producer.aclose()
    assert lines(config) == ["in two halves"]


async def test_a_connection_stops_reading_ahead_when_the_stop_stops_reading(
    config: Config,
) -> None:
    # While the writer is busy a connection reads its next messages on; a stop ends that
    # after DRAIN_READ_S like any read: a message sent later is neither written nor acked
    # (its client resends it to the next daemon).
    SlowDisk.started.clear()
    server = LogdServer(config, engine_factory=SlowDisk)
    late = wire.encode_forward("cyc", [(time.time_ns(), rec("late"))], chunk="l1")
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_logd, config, server=server))
        producer = await slow_batch(config, server)
        server.request_stop()
        await trio.sleep(DRAIN_READ_S * 2)
        assert SLOW_WRITE_S > DRAIN_READ_S * 4  # the batch is still being written
        await producer.send(late)
        events = await producer.receive_until_closed()
        await producer.aclose()
    assert events == [wire.Ack("s1"), wire.Closed()]
    assert lines(config) == [SLOW]
