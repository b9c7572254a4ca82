"""`tail` over the control socket against an in-process daemon: where the backlog stops
and live records begin, and a follower picking up again with a resume cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import trio

from logd.config import Config
from logd.control.requests import MAX_LIMIT
from logd.control.tailing import Cursor
from logd.server import LogdServer, serve_logd
from tests.integration.control.test_control import Ctl
from tests.integration.test_server import Producer, rec

BATCHES = 60
PER_BATCH = 40


@pytest.fixture
async def server(config: Config) -> AsyncIterator[LogdServer]:
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        await nursery.start(partial(serve_logd, config, server=server))
        yield server
        server.request_stop()


async def _produce(server: LogdServer, done: trio.Event, *, start: int = 0) -> None:
    producer = await Producer.unix(server.config.listen.socket)
    for batch in range(start, start + BATCHES):
        records = [rec(f"r{batch * PER_BATCH + i}") for i in range(PER_BATCH)]
        await producer.log(records, chunk=f"p:{batch}")
    await producer.log([rec("the end")], chunk="p:end")
    await producer.aclose()
    done.set()


async def _follow(ctl: Ctl, shown: list[str], *, first: dict[str, Any] | None = None) -> None:
    """Collect a follower's messages until the producer's last record."""
    if first is not None:
        shown += [item["msg"] for item in first["result"]]
    while not shown or shown[-1] != "the end":
        message = await ctl.next()
        shown.append(message["item"]["msg"])


async def test_followers_see_every_record_once_whenever_they_start(server: LogdServer) -> None:
    """Followers that start while a producer writes batch after batch each get every
    record exactly once: the backlog (all of it) stops where their live records begin."""
    done = trio.Event()
    results: list[list[str]] = []

    async def follower(delay: float) -> None:
        await trio.sleep(delay)
        ctl = await Ctl.open(server.config.listen.control)
        shown: list[str] = []
        first = await ctl.ask("tail", app="cyc", n=MAX_LIMIT, follow=True)
        assert first["ok"], first
        await _follow(ctl, shown, first=first)
        results.append(shown)
        await ctl.stream.aclose()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_produce, server, done)
            for i in range(8):
                nursery.start_soon(follower, 0.02 * i)
    expected = [f"r{i}" for i in range(BATCHES * PER_BATCH)] + ["the end"]
    assert len(results) == 8
    for shown in results:
        assert shown == expected


async def test_a_resumed_follower_gets_exactly_what_it_missed(server: LogdServer) -> None:
    """What `logd-ctl tail -f` does after a restart: a new request with the cursor of
    what it showed returns the records written since, less those already shown."""
    producer = await Producer.unix(server.config.listen.socket)
    await producer.log([rec(f"old {i}") for i in range(5)], chunk="old")
    ctl = await Ctl.open(server.config.listen.control)
    first = await ctl.ask("tail", app="cyc", n=2, follow=True)
    assert [item["msg"] for item in first["result"]] == ["old 3", "old 4"]
    cursor = Cursor()
    cursor.start(first["floor"], first["floor_keys"])
    shown = []
    await producer.log([rec(f"live {i}") for i in range(3)], chunk="live")
    for _ in range(3):
        item = (await ctl.next())["item"]
        cursor.note(item)
        shown.append(item["msg"])
    await ctl.stream.aclose()  # the follower goes away; more is written meanwhile
    await producer.log([rec(f"gap {i}") for i in range(4)], chunk="gap")
    again = await Ctl.open(server.config.listen.control)
    reply = await again.ask("tail", app="cyc", n=2, follow=True, **cursor.resume_args())
    assert [item["msg"] for item in reply["result"]] == [f"gap {i}" for i in range(4)]
    await producer.log([rec("after")], chunk="after")
    assert (await again.next())["item"]["msg"] == "after"
    assert shown == ["live 0", "live 1", "live 2"]
    await again.stream.aclose()
    await producer.aclose()


async def test_bad_resume_cursor_is_a_coded_error(server: LogdServer) -> None:
    ctl = await Ctl.open(server.config.listen.control)
    reply = await ctl.ask("tail", follow=True, after="2025-01-01T00:00:00Z", skip=[["x"]])
    assert reply["error"]["code"] == "bad-argument"
    reply = await ctl.ask("tail", level="loud")
    assert reply["error"]["code"] == "bad-argument"
    assert "'loud' is not a level" in reply["error"]["message"]
    assert (await ctl.ask("tail", session="nope"))["error"] == {
        "code": "not-found",
        "message": "no session 'nope'",
    }
    await ctl.stream.aclose()
