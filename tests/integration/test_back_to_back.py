"""Messages sent back to back on one connection: acks go out in order, and a message that
fails to be written is never overtaken by the next (the client sends both again)."""

from __future__ import annotations

import errno
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import trio
from logd_client import wire

from logd.config import Config
from logd.server import LogdServer, serve_logd
from logd.write.engine import Engine
from logd.write.flight import Gathered
from logd.write.jobs import Ingest, Job
from tests.helpers import read_lines
from tests.integration.test_server import RUN, Producer, rec

FAIL_ME = "the disk is full for this one"


class DiskFullOnce(Engine):
    """A real engine whose first batch holding FAIL_ME fails as a full disk would."""

    failed = False

    def gather_jobs(self, jobs: Sequence[Job]) -> Gathered:
        for job in jobs:
            if (
                isinstance(job, Ingest)
                and not self.failed
                and any(
                    raw.get("msg") == FAIL_ME
                    for message in job.messages
                    for _, raw in message.entries
                )
            ):
                DiskFullOnce.failed = True
                raise OSError(errno.ENOSPC, "No space left on device")
        return super().gather_jobs(jobs)


def messages(*msgs: str) -> list[tuple[str, bytes]]:
    return [
        (chunk, wire.encode_forward("cyc", [(time.time_ns(), rec(msg))], chunk=chunk))
        for chunk, msg in ((f"c-{m}", m) for m in msgs)
    ]


def lines_of(root: Path) -> list[str]:
    main = root / "cyc" / "runs" / RUN / "main.log"
    return [line.rsplit(" - ", 1)[1] for line in read_lines(main)] if main.exists() else []


async def test_back_to_back_messages_are_acked_in_order(config: Config) -> None:
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        await nursery.start(partial(serve_logd, config, server=server))
        producer = await Producer.unix(config.listen.socket)
        sent = messages(*(f"m{i}" for i in range(40)))
        for _, data in sent:
            await producer.send(data)  # without waiting for acks
        with trio.fail_after(10):
            acks = [await producer.receive() for _ in sent]
        assert acks == [wire.Ack(chunk) for chunk, _ in sent]
        assert lines_of(config.root) == [f"m{i}" for i in range(40)]
        await producer.aclose()
        server.request_stop()


async def test_a_failed_message_is_not_overtaken_by_the_next(config: Config) -> None:
    DiskFullOnce.failed = False
    async with trio.open_nursery() as nursery:
        server = LogdServer(config, engine_factory=DiskFullOnce)
        await nursery.start(partial(serve_logd, config, server=server))
        producer = await Producer.unix(config.listen.socket)
        (a_chunk, a), (b_chunk, b) = messages(FAIL_ME, "after")
        await producer.send(a + b)  # B is already there while A fails
        with trio.fail_after(10):
            try:
                event = await producer.receive()
            except trio.BrokenResourceError:  # closed with B still unread: a reset
                event = wire.Closed()
        assert event == wire.Closed()  # no ack for A, nor for B
        await producer.aclose()
        assert "after" not in lines_of(config.root)
        assert server.errors["write-failed"] == 1

        # The client sends both again, in order, on a new connection.
        producer = await Producer.unix(config.listen.socket)
        for data in (a, b):
            await producer.send(data)
        with trio.fail_after(10):
            assert [await producer.receive() for _ in "ab"] == [
                wire.Ack(a_chunk),
                wire.Ack(b_chunk),
            ]
        assert lines_of(config.root) == [FAIL_ME, "after"]
        await producer.aclose()
        server.request_stop()
