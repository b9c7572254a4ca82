"""The writer task: a batch that arrives while the one before syncs is gathered meanwhile
(`Engine.overlap`), and each is acked once it is committed, with its own books.

A real daemon in-process on a real Unix socket; the engine's first batch waits at a gate
until the second producer's message is queued, so the overlap happens every time.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from functools import partial

import trio
from logd_client import wire

from logd.config import Config
from logd.server import LogdServer, serve_logd
from logd.write.engine import Engine
from logd.write.flight import Flight, Gathered
from logd.write.jobs import Ingest, Job
from tests.integration.test_back_to_back import lines_of
from tests.integration.test_server import RUN, Producer, rec


class GatedEngine(Engine):
    """A real engine whose first batch of records waits at `gate`, counting overlaps."""

    gate: threading.Event
    entered: threading.Event
    overlaps_done = 0

    def gather_jobs(self, jobs: Sequence[Job]) -> Gathered:
        if jobs and isinstance(jobs[0], Ingest) and not GatedEngine.entered.is_set():
            GatedEngine.entered.set()
            GatedEngine.gate.wait(20)
        return super().gather_jobs(jobs)

    def overlap(self, jobs: Sequence[Job], flight: Flight) -> Flight:
        GatedEngine.overlaps_done += 1
        return super().overlap(jobs, flight)


def message(n: int) -> bytes:
    records = [(time.time_ns(), rec(f"m{n}-{i}", session_id=f"s{n}")) for i in range(20)]
    return wire.encode_forward("cyc", records, chunk=f"c{n}")


async def test_a_batch_queued_while_one_syncs_is_gathered_meanwhile(config: Config) -> None:
    GatedEngine.gate, GatedEngine.entered = threading.Event(), threading.Event()
    GatedEngine.overlaps_done = 0
    async with trio.open_nursery() as nursery:
        server = LogdServer(config, engine_factory=GatedEngine)
        await nursery.start(partial(serve_logd, config, server=server))
        first = await Producer.unix(config.listen.socket)
        second = await Producer.unix(config.listen.socket)
        await first.send(message(0))
        await trio.to_thread.run_sync(GatedEngine.entered.wait, 20)
        await second.send(message(1))
        with trio.fail_after(20):
            while server.writer.waiting < 1:
                await trio.sleep(0.01)
        GatedEngine.gate.set()
        with trio.fail_after(20):
            assert await first.receive() == wire.Ack("c0")
            assert await second.receive() == wire.Ack("c1")
        assert GatedEngine.overlaps_done == 1
        for producer in (first, second):
            await producer.aclose()
        server.request_stop()
    lines = lines_of(config.root)
    assert sorted(lines) == sorted(f"m{n}-{i}" for n in range(2) for i in range(20))
    with sqlite3.connect(config.root / "index.sqlite3") as db:
        (records,) = db.execute("SELECT records FROM runs WHERE run_id = ?", [RUN]).fetchone()
        sessions = dict(db.execute("SELECT session_id, records FROM sessions").fetchall())
    assert records == 40
    assert sessions == {"s0": 20, "s1": 20}


class StepEngine(Engine):
    """A real engine that notes, for each batch, whether it was begun to fly (overlapping)
    and whether someone followed at that moment."""

    flown_while_followed: list[bool]
    in_process = False

    def process(self, jobs: Sequence[Job]) -> None:
        self.in_process = True
        try:
            super().process(jobs)
        finally:
            self.in_process = False

    def begin(self, jobs: Sequence[Job]) -> Flight:
        if not self.in_process:
            StepEngine.flown_while_followed.append(self.publish)
        return super().begin(jobs)


async def test_a_follower_that_starts_while_the_writer_waits_stops_the_overlap(
    config: Config,
) -> None:
    # The writer decided its batch could fly while nobody followed, then waited for the
    # lock a starting `tail -f` held. Once the follower is in, the batch must not fly:
    # a flying batch hands its lines to followers before it is committed.
    StepEngine.flown_while_followed = []
    async with trio.open_nursery() as nursery:
        server = LogdServer(config, engine_factory=StepEngine)
        await nursery.start(partial(serve_logd, config, server=server))
        producer = await Producer.unix(config.listen.socket)
        for n in range(3):
            if n == 1:
                async with server.writer_lock:
                    await producer.send(message(n))
                    with trio.fail_after(20):
                        while not server.writer_lock.statistics().tasks_waiting:
                            await trio.sleep(0.01)
                    server.set_publishing(True)
            else:
                server.set_publishing(False)
                await producer.send(message(n))
            with trio.fail_after(20):
                assert await producer.receive() == wire.Ack(f"c{n}")
        await producer.aclose()
        server.request_stop()
    # The followed batch went whole (`process`); the last, unfollowed, flew (the first
    # may have gone whole with the daemon's start note).
    assert True not in StepEngine.flown_while_followed
    assert StepEngine.flown_while_followed[-1:] == [False]
    assert sorted(lines_of(config.root)) == sorted(f"m{n}-{i}" for n in range(3) for i in range(20))
