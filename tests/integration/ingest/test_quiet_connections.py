"""Quiet connections stay open; the idlest make room near the limit; TCP peers get keepalive.

A client that sends without acks (Docker's driver, fluent-logger) cannot know the daemon
closed its quiet connection: its next record goes into the closed socket and is lost.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import pytest
import trio
from logd_client import wire

from logd.config import Config
from logd.server import LogdServer, serve_logd
from tests.helpers import make_config, read_lines
from tests.integration.test_server import RUN, Producer, rec

IDLE_S = 0.2


@dataclasses.dataclass
class Served:
    server: LogdServer
    config: Config
    tcp: tuple[str, int]

    async def connect(self, transport: str) -> Producer:
        if transport == "unix":
            return await Producer.unix(self.config.listen.socket)
        return Producer(await trio.open_tcp_stream(*self.tcp))

    def lines(self) -> list[str]:
        path = self.config.root / f"cyc/runs/{RUN}/main.log"
        return [line.rsplit(" - ", 1)[1] for line in read_lines(path)] if path.exists() else []


def quiet_config(log_root: Path, socket_dir: Path, **limits: float) -> Config:
    config = make_config(log_root, socket_dir, idle_timeout_s=IDLE_S, **limits)
    return dataclasses.replace(
        config, listen=dataclasses.replace(config.listen, tcp=("127.0.0.1", 0))
    )


@pytest.fixture
async def served(log_root: Path, socket_dir: Path) -> AsyncIterator[Served]:
    config = quiet_config(log_root, socket_dir)
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        listening = await nursery.start(partial(serve_logd, config, server=server))
        yield Served(server, config, listening.tcp[0])
        server.request_stop()


async def until(condition: Callable[[], object], seconds: float = 10) -> None:
    with trio.fail_after(seconds):
        while not condition():
            await trio.sleep(0.01)


def one_record(msg: str, chunk: str | None = None) -> bytes:
    return wire.encode_forward("cyc", [(time.time_ns(), rec(msg))], chunk=chunk)


@pytest.mark.parametrize(("transport", "acks"), [("tcp", False), ("unix", False), ("tcp", True)])
async def test_a_quiet_connection_stays_open_and_its_next_record_arrives(
    served: Served, transport: str, acks: bool
) -> None:
    producer = await served.connect(transport)
    if acks:
        await producer.log([rec("before")], chunk="a1")
    else:
        await producer.send(one_record("before"))
    await until(lambda: served.lines() == ["before"])
    # Staying open is the absence of a close: give the old idle timeout five times over.
    await trio.sleep(5 * IDLE_S)
    assert len(served.server.connections.conns) == 1
    await producer.send(one_record("after a quiet spell"))
    await producer.log([rec("acked")], chunk="a2")
    assert served.lines() == ["before", "after a quiet spell", "acked"]
    assert "idle-timeout" not in served.server.errors
    await producer.aclose()


async def test_a_quiet_unix_client_that_asks_for_acks_is_closed_as_before(
    served: Served,
) -> None:
    """logd's own client: it resends what was not acked and reconnects on its next record,
    so its slot is freed after idle_timeout_s."""
    producer = await served.connect("unix")
    await producer.log([rec("acked")], chunk="u1")
    with trio.fail_after(10):
        assert await producer.receive() == wire.Closed()
    assert served.server.errors["idle-timeout"] == 1
    await producer.aclose()


async def test_near_the_limit_the_idlest_connections_make_room(
    log_root: Path, socket_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With max_connections = 4 the daemon is near its limit at 3 open connections: each
    newcomer then costs the connection quiet longest (quiet at least idle_timeout_s)."""
    caplog.set_level(logging.INFO, logger="logd.ingest")
    config = quiet_config(log_root, socket_dir, max_connections=4)
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        listening = await nursery.start(partial(serve_logd, config, server=server))
        served = Served(server, config, listening.tcp[0])
        conns = server.connections.conns
        oldest = await served.connect("tcp")
        await oldest.send(one_record("oldest"))
        await until(lambda: served.lines() == ["oldest"])
        await trio.sleep(0.05)
        older = await served.connect("tcp")
        await older.send(one_record("older"))
        await until(lambda: len(served.lines()) == 2)
        busy = await served.connect("unix")
        await until(lambda: len(conns) == 3)
        await trio.sleep(IDLE_S)  # all three have been quiet for idle_timeout_s now
        await busy.log([rec("busy")], chunk="b1")

        newcomers = []
        for n, victim in enumerate([oldest, older]):
            newcomer = await served.connect("unix")
            with trio.fail_after(10):
                assert await victim.receive() == wire.Closed()
            await newcomer.log([rec(f"newcomer {n}")], chunk=f"n{n}")
            newcomers.append(newcomer)

        assert server.errors["idle-closed-for-room"] == 2
        assert "too-many-connections" not in server.errors
        assert len(conns) == 3
        closed = [r.getMessage() for r in caplog.records if "closed to make room" in r.message]
        assert len(closed) == 2
        assert "(3 connections, limit 4)" in closed[0]
        # busy sent a message just now: it is not quiet, so it stays.
        await busy.log([rec("busy again")], chunk="b2")
        for producer in [oldest, older, busy, *newcomers]:
            await producer.aclose()
        server.request_stop()


async def test_at_the_limit_with_no_quiet_connection_a_newcomer_is_refused(
    log_root: Path, socket_dir: Path
) -> None:
    config = quiet_config(log_root, socket_dir, max_connections=2)
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        listening = await nursery.start(partial(serve_logd, config, server=server))
        served = Served(server, config, listening.tcp[0])
        kept = [await served.connect("tcp") for _ in range(2)]
        await until(lambda: len(server.connections.conns) == 2)
        for n, producer in enumerate(kept):  # quiet for less than idle_timeout_s
            await producer.log([rec(f"kept {n}")], chunk=f"k{n}")
        extra = await served.connect("tcp")
        with trio.fail_after(10):
            assert await extra.receive() == wire.Closed()
        assert server.errors["too-many-connections"] == 1
        assert "idle-closed-for-room" not in server.errors
        for producer in [*kept, extra]:
            await producer.aclose()
        server.request_stop()


def keepalive_timers(port: int) -> list[str]:
    """The timer column of /proc/net/tcp for established sockets with local port `port`:
    "02" is a pending keepalive timer (proc(5))."""
    timers = []
    with open("/proc/net/tcp") as table:
        next(table)
        for row in table:
            fields = row.split()
            local, state, timer = fields[1], fields[3], fields[5].split(":")[0]
            if int(local.split(":")[1], 16) == port and state == "01":
                timers.append(timer)
    return timers


async def test_tcp_connections_are_probed_by_keepalive(served: Served) -> None:
    """A dead or unplugged peer sends no FIN: keepalive probes find it, now that quiet
    connections are no longer closed by a timer."""
    producer = await served.connect("tcp")
    await producer.log([rec("over tcp")], chunk="t1")
    assert keepalive_timers(served.tcp[1]) == ["02"]
    await producer.aclose()
