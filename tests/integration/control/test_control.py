"""The control socket's protocol against an in-process daemon with real sockets."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from logd_client import wire

from logd.config import Config
from logd.control.requests import request
from logd.server import LogdServer, serve_logd
from tests.integration.test_server import RUN, Producer, rec


@pytest.fixture
async def server(config: Config) -> AsyncIterator[LogdServer]:
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        await nursery.start(partial(serve_logd, config, server=server))
        yield server
        server.request_stop()


class Ctl:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.decoder = wire.MapDecoder()

    @classmethod
    async def open(cls, path: Path) -> Ctl:
        return cls(await trio.open_unix_socket(os.fspath(path)))

    async def next(self) -> dict[str, Any]:
        with trio.fail_after(10):
            while (event := self.decoder.next_event()) is None:
                data = await self.stream.receive_some(65536)
                if data:
                    self.decoder.receive_data(data)
                else:
                    self.decoder.receive_eof()
        assert isinstance(event, dict), event
        return event

    async def ask(self, command: str, **args: Any) -> dict[str, Any]:
        await self.stream.send_all(wire.encode_map(request(command, **args)))
        return await self.next()


async def test_status_and_listings(server: LogdServer) -> None:
    producer = await Producer.unix(server.config.listen.socket)
    await producer.log(
        [
            rec("hi", session_id="s1"),
            rec("", event_type="llm:request", kv={"model": "m"}),
            rec("c", call_id="call-1", bot_id="9"),
        ],
        chunk="x",
    )
    ctl = await Ctl.open(server.config.listen.control)
    status = (await ctl.ask("status"))["result"]
    assert status["pid"] == os.getpid()
    assert status["totals"]["records_written"] == 3
    assert status["active"] == {"runs": 1, "sessions": 1, "calls": 1}
    assert len(status["rate_series"]) == 60
    assert sum(status["rate_series"]) == 3
    assert [c["runs"] for c in status["clients"]] == [[RUN]]
    assert status["disk_bytes"] > 0
    runs = (await ctl.ask("runs", app="cyc"))["result"]
    assert [r["run_id"] for r in runs] == [RUN]
    current = (await ctl.ask("run", run_id="current", app="cyc"))["result"]
    assert current["run_id"] == RUN
    assert current["records"] == 3
    sessions = (await ctl.ask("sessions"))["result"]
    assert [s["session_id"] for s in sessions] == ["s1"]
    calls = (await ctl.ask("calls", bot="9"))["result"]
    assert [c["call_id"] for c in calls] == ["call-1"]
    events = (await ctl.ask("events", type="llm:*", since="1h"))["result"]
    assert [e["kv"] for e in events] == [{"model": "m"}]
    await producer.aclose()
    await ctl.stream.aclose()


async def test_errors_are_coded_replies(server: LogdServer) -> None:
    ctl = await Ctl.open(server.config.listen.control)
    assert (await ctl.ask("run", run_id="nope"))["error"]["code"] == "not-found"
    assert (await ctl.ask("events", since="yesterday-ish"))["error"]["code"] == "bad-time"
    assert (await ctl.ask("frobnicate"))["error"]["code"] == "unknown-command"
    assert (await ctl.ask("runs", limit="ten"))["error"]["code"] == "bad-argument"
    status = await ctl.ask("status")
    assert status["ok"], "the connection survives errors"
    await ctl.stream.aclose()


async def test_tail_backlog_then_live(server: LogdServer) -> None:
    producer = await Producer.unix(server.config.listen.socket)
    await producer.log([rec(f"old {i}") for i in range(5)], chunk="old")
    ctl = await Ctl.open(server.config.listen.control)
    first = await ctl.ask("tail", app="cyc", n=3, follow=True)
    assert [item["msg"] for item in first["result"]] == ["old 2", "old 3", "old 4"]
    started = time.monotonic()
    await producer.log([rec("new", session_id="s9")], chunk="new")
    live = await ctl.next()
    assert time.monotonic() - started < 1.0
    assert live["item"]["msg"] == "new"
    assert live["item"]["line"].startswith("[s9] - ")
    await ctl.stream.aclose()
    await producer.log([rec("after")], chunk="after")
    await producer.aclose()


async def test_stalled_follower_does_not_slow_ingest(server: LogdServer) -> None:
    stalled = await trio.open_unix_socket(os.fspath(server.config.listen.control))
    await stalled.send_all(wire.encode_map(request("tail", follow=True, n=0)))
    with trio.fail_after(10):
        while not server.control.subscribers:
            await trio.sleep(0.01)
    producer = await Producer.unix(server.config.listen.socket)
    with trio.fail_after(60):
        for batch in range(30):
            await producer.log(
                [rec(f"r{batch}-{i}" + "x" * 200) for i in range(1000)],
                chunk=f"{batch:08x}:{batch}",
            )
    (sub,) = server.control.subscribers
    assert sub.skipped > 0, "the slow reader was skipped, not waited for"
    await producer.aclose()
    await stalled.aclose()


async def test_ingest_socket_serves_no_control_request(server: LogdServer) -> None:
    producer = await Producer.unix(server.config.listen.socket)
    await producer.send(wire.encode_map(request("status")))
    assert await producer.receive() == wire.Closed()
    await producer.aclose()


async def test_control_socket_is_private(server: LogdServer) -> None:
    assert os.stat(server.config.listen.control).st_mode & 0o777 == 0o600


async def test_cleanup_dry_run_over_control(server: LogdServer) -> None:
    ctl = await Ctl.open(server.config.listen.control)
    reply = await ctl.ask("cleanup", dry_run=True)
    assert reply["result"]["dry_run"] is True
    assert reply["result"]["deleted"] == []
    assert (await ctl.ask("rotate"))["ok"]
    await ctl.stream.aclose()
