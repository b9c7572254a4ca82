"""The daemon over real Unix and TCP sockets, in-process with pytest-trio."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from logd_client import wire

from logd.config import Config
from logd.ingest.listeners import Listening
from logd.server import LogdServer, serve_logd
from tests.helpers import make_config, read_lines, tree

RUN = "20251105_143052_a1b2c3d4"


@dataclasses.dataclass
class Daemon:
    server: LogdServer
    listening: Listening
    config: Config

    @property
    def root(self) -> Path:
        return self.config.root


@pytest.fixture
async def daemon(config: Config) -> AsyncIterator[Daemon]:
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        listening = await nursery.start(partial(serve_logd, config, server=server))
        yield Daemon(server, listening, config)
        server.request_stop()


class Producer:
    """A bare Forward client on a real socket: what any Fluent client would do."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.decoder = wire.ResponseDecoder()

    @classmethod
    async def unix(cls, path: Path) -> Producer:
        return cls(await trio.open_unix_socket(os.fspath(path)))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive(self) -> object:
        while True:
            event = self.decoder.next_event()
            if event is not None:
                return event
            data = await self.stream.receive_some(65536)
            if data:
                self.decoder.receive_data(bytes(data))
            else:
                self.decoder.receive_eof()

    async def receive_until_closed(self) -> list[object]:
        """Everything the daemon answers until it closes (a reset counts as the close:
        the daemon closed with bytes of ours unread)."""
        events: list[object] = []
        with trio.fail_after(20):
            while not events or events[-1] != wire.Closed():
                try:
                    events.append(await self.receive())
                except trio.BrokenResourceError:
                    events.append(wire.Closed())
        return events

    async def log(self, records: list[dict[str, Any]], chunk: str, tag: str = "cyc") -> None:
        entries = [(time.time_ns(), r) for r in records]
        await self.send(wire.encode_forward(tag, entries, chunk=chunk))
        with trio.fail_after(10):
            assert await self.receive() == wire.Ack(chunk)

    async def aclose(self) -> None:
        await self.stream.aclose()


def rec(msg: str, **fields: Any) -> dict[str, Any]:
    return {"msg": msg, "app": "cyc", "run_id": RUN, "logger": "agent", "level": "INFO", **fields}


async def test_acked_records_are_already_in_their_files(daemon: Daemon) -> None:
    producer = await Producer.unix(daemon.config.listen.socket)
    await producer.log([rec("one"), rec("two", session_id="s1")], chunk="c1")
    run_dir = daemon.root / "cyc" / "runs" / RUN
    lines = read_lines(run_dir / "main.log")
    assert [line.rsplit(" - ", 1)[1] for line in lines] == ["one", "two"]
    assert lines[1].startswith("[s1] - ")
    assert read_lines(run_dir / "agent.log") == lines
    session = [json.loads(x) for x in read_lines(daemon.root / "cyc/sessions/session_s1.jsonl")]
    assert [s["msg"] for s in session] == ["two"]
    assert (daemon.root / "cyc/runs/current").resolve() == run_dir.resolve()
    assert (daemon.root / "cyc/runs/current.txt").read_text() == RUN + "\n"
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["run_id"] == RUN
    assert meta["end_time"] is None
    await producer.aclose()


async def test_every_mode_is_accepted(daemon: Daemon) -> None:
    producer = await Producer.unix(daemon.config.listen.socket)
    now = time.time_ns()
    await producer.send(wire.encode_message("cyc", now, rec("message-mode")))
    await producer.send(wire.encode_packed_forward("cyc", [(now, rec("packed"))], chunk="p"))
    assert await producer.receive() == wire.Ack("p")
    data = wire.encode_forward("cyc", [(now, rec("gzip"))], chunk="g", compressed=True)
    await producer.send(data)
    assert await producer.receive() == wire.Ack("g")
    msgs = [
        line.rsplit(" - ", 1)[1] for line in read_lines(daemon.root / f"cyc/runs/{RUN}/main.log")
    ]
    assert msgs == ["message-mode", "packed", "gzip"]
    await producer.aclose()


async def test_ack_echoes_binary_chunk(daemon: Daemon) -> None:
    producer = await Producer.unix(daemon.config.listen.socket)
    raw = msgpack.packb(["cyc", [[int(time.time()), rec("x")]], {"chunk": b"\x00\xffid"}])
    await producer.send(raw)
    with trio.fail_after(10):
        assert await producer.receive() == wire.Ack(b"\x00\xffid")
    await producer.aclose()


async def test_invalid_entries_do_not_cost_the_valid_ones(daemon: Daemon) -> None:
    producer = await Producer.unix(daemon.config.listen.socket)
    now = int(time.time())
    raw = msgpack.packb(
        [
            "cyc",
            [[now, rec("good")], "garbage", [now, ["not", "a", "map"]], [now, rec("also")]],
            {"chunk": "mixed"},
        ]
    )
    await producer.send(raw)
    with trio.fail_after(10):
        assert await producer.receive() == wire.Ack("mixed")
    msgs = [
        line.rsplit(" - ", 1)[1] for line in read_lines(daemon.root / f"cyc/runs/{RUN}/main.log")
    ]
    assert msgs == ["good", "also"]
    (rejected,) = (daemon.root / "_rejected").iterdir()
    reasons = [json.loads(line)["reason"] for line in read_lines(rejected)]
    assert len(reasons) == 2
    assert any("not a map" in reason for reason in reasons)
    await producer.aclose()


async def test_a_malformed_client_is_closed_while_others_carry_on(daemon: Daemon) -> None:
    good = await Producer.unix(daemon.config.listen.socket)
    bad = await Producer.unix(daemon.config.listen.socket)
    await good.log([rec("before")], chunk="1")
    await bad.send(b"\xc1\xc1\xc1 this is not msgpack")
    with trio.fail_after(10):
        assert await bad.receive() == wire.Closed()
    await good.log([rec("after")], chunk="2")
    assert daemon.server.errors
    msgs = [
        line.rsplit(" - ", 1)[1] for line in read_lines(daemon.root / f"cyc/runs/{RUN}/main.log")
    ]
    assert msgs == ["before", "after"]
    await good.aclose()
    await bad.aclose()


async def test_many_concurrent_connections(daemon: Daemon) -> None:
    async def one(n: int) -> None:
        producer = await Producer.unix(daemon.config.listen.socket)
        for batch in range(5):
            records = [rec(f"p{n} r{batch * 10 + i}", pid=1000 + n) for i in range(10)]
            await producer.log(records, chunk=f"{n}:{batch}")
        await producer.aclose()

    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(one, n)
    lines = read_lines(daemon.root / f"cyc/runs/{RUN}/main.log")
    assert len(lines) == 20 * 50
    for n in range(20):
        mine = [line.rsplit(" - ", 1)[1] for line in lines if f" - p{n} r" in line]
        assert mine == [f"p{n} r{i}" for i in range(50)]


async def test_foreign_records_get_a_daemon_run(daemon: Daemon) -> None:
    producer = await Producer.unix(daemon.config.listen.socket)
    await producer.log([{"message": "from fluent", "level": "warn"}], chunk="f", tag="web.access")
    runs = [
        p for p in (daemon.root / "web" / "runs").iterdir() if p.is_dir() and not p.is_symlink()
    ]
    assert len(runs) == 1
    meta = json.loads((runs[0] / "metadata.json").read_text())
    assert meta["opened_by"] == "daemon"
    assert meta["pids"] == [os.getpid()]
    assert read_lines(runs[0] / "main.log")[0].endswith(" - web.access - WARNING - from fluent")
    await producer.aclose()


async def test_run_ends_with_shutdown(daemon: Daemon) -> None:
    producer = await Producer.unix(daemon.config.listen.socket)
    pid = os.getpid()
    start = rec("", event_type="app:start", kv={"pid": pid, "host": "h", "argv": ["a"]}, pid=pid)
    await producer.log(
        [start, rec("work", pid=pid), rec("", event_type="app:shutdown", pid=pid)], chunk="1"
    )
    await producer.aclose()
    meta_path = daemon.root / f"cyc/runs/{RUN}/metadata.json"
    with trio.fail_after(10):
        while json.loads(meta_path.read_text())["end_reason"] is None:
            await trio.sleep(0.02)
    meta = json.loads(meta_path.read_text())
    assert meta["end_reason"] == "shutdown"
    assert meta["argv"] == ["a"]
    assert meta["records"] == 3
    assert meta["counts"] == {"INFO": 3}
    assert "main.log" in meta["files"]
    events = read_lines(daemon.root / "cyc/events.log")
    assert [line.split("|")[1] for line in events] == ["app:start", "app:shutdown"]


async def test_hostile_ids_stay_inside_the_root(daemon: Daemon, tmp_path: Path) -> None:
    producer = await Producer.unix(daemon.config.listen.socket)
    hostile = ["../../escape", "/etc/passwd", "..", ".", "a\x00b", "x" * 300, "../" * 50]
    records = [rec("h", app=h, run_id=h, session_id=h, logger=h) for h in hostile] + [
        rec("c", call_id=h, bot_id=h) for h in hostile
    ]
    await producer.log(records, chunk="h")
    await producer.aclose()
    outside = sorted(str(p) for p in tmp_path.rglob("*") if not str(p).startswith(str(daemon.root)))
    assert outside == []
    for path in tree(daemon.root):
        assert ".." not in Path(path).parts
    assert sum(1 for p in tree(daemon.root) if p.endswith("main.log")) == len(hostile)


async def test_stop_flushes_and_removes_the_socket(config: Config) -> None:
    server = LogdServer(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_logd, config, server=server))
        mode = stat.S_IMODE(os.stat(config.listen.socket).st_mode)
        assert mode == 0o600
        producer = await Producer.unix(config.listen.socket)
        await producer.send(
            wire.encode_forward("cyc", [(time.time_ns(), rec("last words"))], chunk="z")
        )
        with trio.fail_after(10):
            assert await producer.receive() == wire.Ack("z")
        server.request_stop()
        with trio.fail_after(10):
            assert await producer.receive() == wire.Closed()
        await producer.aclose()
    assert not config.listen.socket.exists()
    assert read_lines(config.root / f"cyc/runs/{RUN}/main.log")[0].endswith("last words")
    meta = json.loads((config.root / f"cyc/runs/{RUN}/metadata.json").read_text())
    assert meta["end_time"] is None, "a run open when the daemon stops stays open"


async def test_a_message_stopped_halfway_is_closed_after_the_idle_timeout(
    log_root: Path, socket_dir: Path
) -> None:
    """A stalled client holds a buffer; only quiet ones between messages stay open
    (tests/integration/ingest/test_quiet_connections.py)."""
    config = make_config(log_root, socket_dir, idle_timeout_s=0.3)
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        await nursery.start(partial(serve_logd, config, server=server))
        producer = await Producer.unix(config.listen.socket)
        await producer.send(b"\x93")  # the start of a message that never completes
        with trio.fail_after(10):
            assert await producer.receive() == wire.Closed()
        assert server.errors["idle-timeout"] == 1
        await producer.aclose()
        server.request_stop()


async def test_connection_limit(log_root: Path, socket_dir: Path) -> None:
    config = make_config(log_root, socket_dir, max_connections=2)
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        await nursery.start(partial(serve_logd, config, server=server))
        kept = [await Producer.unix(config.listen.socket) for _ in range(2)]
        with trio.fail_after(10):
            while len(server.connections.conns) < 2:
                await trio.sleep(0.01)
        extra = await Producer.unix(config.listen.socket)
        with trio.fail_after(10):
            assert await extra.receive() == wire.Closed()
        await kept[0].log([rec("still served")], chunk="k")
        assert server.errors["too-many-connections"] == 1
        for producer in [*kept, extra]:
            await producer.aclose()
        server.request_stop()


async def test_tcp_listener(log_root: Path, socket_dir: Path) -> None:
    config = make_config(log_root, socket_dir)
    config = dataclasses.replace(
        config, listen=dataclasses.replace(config.listen, tcp=("127.0.0.1", 0))
    )
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        listening = await nursery.start(partial(serve_logd, config, server=server))
        host, port = listening.tcp[0]
        producer = Producer(await trio.open_tcp_stream(host, port))
        await producer.log([rec("over tcp")], chunk="t")
        assert read_lines(config.root / f"cyc/runs/{RUN}/main.log")[0].endswith("over tcp")
        await producer.aclose()
        server.request_stop()


async def test_second_daemon_on_the_same_socket_refuses(daemon: Daemon, log_root: Path) -> None:
    from logd.ingest.listeners import StartupError

    other = dataclasses.replace(daemon.config, root=log_root.parent / "other")
    with pytest.raises(StartupError, match="already listening"):
        await LogdServer(other).serve()


async def test_resent_message_is_acked_but_not_written_twice(daemon: Daemon) -> None:
    first = await Producer.unix(daemon.config.listen.socket)
    await first.log([rec("once")], chunk="feedbeef:1")
    await first.aclose()
    second = await Producer.unix(daemon.config.listen.socket)
    await second.log([rec("once")], chunk="feedbeef:1")
    await second.log([rec("twice")], chunk="feedbeef:2")
    await second.aclose()
    msgs = [
        line.rsplit(" - ", 1)[1] for line in read_lines(daemon.root / f"cyc/runs/{RUN}/main.log")
    ]
    assert msgs == ["once", "twice"]
    assert daemon.server.engine is not None
    assert daemon.server.engine.totals.duplicates == 1


async def test_socket_group_makes_the_socket_0660(log_root: Path, socket_dir: Path) -> None:
    import grp

    group = grp.getgrgid(os.getgid()).gr_name
    config = make_config(log_root, socket_dir)
    config = dataclasses.replace(
        config, listen=dataclasses.replace(config.listen, socket_group=group)
    )
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        await nursery.start(partial(serve_logd, config, server=server))
        info = os.stat(config.listen.socket)
        assert stat.S_IMODE(info.st_mode) == 0o660
        assert info.st_gid == os.getgid()
        server.request_stop()


async def _tcp_daemon_with_key(
    log_root: Path, socket_dir: Path, nursery: trio.Nursery
) -> tuple[LogdServer, tuple[str, int]]:
    config = make_config(log_root, socket_dir)
    listen = dataclasses.replace(config.listen, tcp=("127.0.0.1", 0), shared_key="s3cret")
    config = dataclasses.replace(config, listen=listen)
    server = LogdServer(config)
    listening = await nursery.start(partial(serve_logd, config, server=server))
    return server, listening.tcp[0]


@pytest.mark.parametrize("key", ["s3cret", "wrong"])
async def test_shared_key_handshake(log_root: Path, socket_dir: Path, key: str) -> None:
    async with trio.open_nursery() as nursery:
        server, (host, port) = await _tcp_daemon_with_key(log_root, socket_dir, nursery)
        producer = Producer(await trio.open_tcp_stream(host, port))
        with trio.fail_after(10):
            helo = await producer.receive()
        assert isinstance(helo, wire.Helo)
        salt = b"0123456789abcdef"
        await producer.send(wire.encode_ping("client-host", key, helo.nonce, salt=salt))
        with trio.fail_after(10):
            pong = await producer.receive()
        assert isinstance(pong, wire.Pong)
        if key == "s3cret":
            assert pong.auth_result
            expected = wire.shared_key_digest(salt, pong.hostname, helo.nonce, key)
            assert pong.shared_key_hexdigest == expected, "the server proves it knows the key"
            await producer.log([rec("authenticated")], chunk="a")
            main = log_root / f"cyc/runs/{RUN}/main.log"
            assert read_lines(main)[0].endswith("authenticated")
        else:
            assert not pong.auth_result
            with trio.fail_after(10):
                assert await producer.receive() == wire.Closed()
            assert server.errors["auth-failed"] == 1
        await producer.aclose()
        server.request_stop()


async def test_data_before_authentication_is_refused(log_root: Path, socket_dir: Path) -> None:
    async with trio.open_nursery() as nursery:
        server, (host, port) = await _tcp_daemon_with_key(log_root, socket_dir, nursery)
        producer = Producer(await trio.open_tcp_stream(host, port))
        await producer.send(wire.encode_forward("cyc", [(time.time_ns(), rec("sneaky"))]))
        with trio.fail_after(10):
            assert isinstance(await producer.receive(), wire.Helo)
            assert await producer.receive() == wire.Closed()
        assert server.errors["auth-missing"] == 1
        assert not (log_root / "cyc").exists()
        await producer.aclose()
        server.request_stop()


async def test_resend_after_a_restart_is_recognised(config: Config) -> None:
    """The written sequence per producer is saved with each batch, not only in memory."""
    for attempt in range(2):
        async with trio.open_nursery() as nursery:
            server = LogdServer(config)
            await nursery.start(partial(serve_logd, config, server=server))
            producer = await Producer.unix(config.listen.socket)
            await producer.log([rec("exactly once")], chunk="c0ffee00:7")
            await producer.aclose()
            assert server.engine is not None
            assert server.engine.totals.duplicates == attempt
            server.request_stop()
    msgs = [
        line.rsplit(" - ", 1)[1] for line in read_lines(config.root / f"cyc/runs/{RUN}/main.log")
    ]
    assert msgs == ["exactly once"]
