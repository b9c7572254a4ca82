"""The output senders against scripted upstreams on loopback: handshakes, acks, closes."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import pytest
import trio
from logd_client import wire

from logd.config import Config
from logd.config.forward import Forward
from logd.forward.buffer import DiskBuffer
from logd.forward.fluent import FluentSender
from logd.forward.hub import OutputBuffer
from logd.forward.sender import Sender
from logd.forward.syslog_output import SyslogSender
from logd.ingest.listeners import StartupError
from logd.server import LogdServer

Handler = Callable[[trio.SocketStream], Awaitable[None]]


class Upstream:
    """A TCP listener on 127.0.0.1 running `handler` for each connection."""

    def __init__(self, nursery: trio.Nursery, listener: trio.SocketListener) -> None:
        self.nursery = nursery
        self.listener = listener
        self.port: int = listener.socket.getsockname()[1]
        self.handler: Handler | None = None
        self.connections = 0

    async def serve(self) -> None:
        while True:
            stream = await self.listener.accept()
            self.connections += 1
            assert self.handler is not None
            self.nursery.start_soon(self._run, self.handler, stream)

    async def _run(self, handler: Handler, stream: trio.SocketStream) -> None:
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await handler(stream)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listener, trio.open_nursery() as nursery:
        server = Upstream(nursery, listener)
        nursery.start_soon(server.serve)
        yield server
        nursery.cancel_scope.cancel()


def make_sender(
    tmp_path: Path, port: int, kind: Literal["fluent", "syslog"] = "fluent", **settings: Any
) -> tuple[Sender, DiskBuffer]:
    forward = Forward(
        name="t", type=kind, host="127.0.0.1", port=port, retry_max_s=0.2, timeout_s=5, **settings
    )
    buffer = DiskBuffer(tmp_path / "buf", max_bytes=1 << 20, fsync=False)
    output = OutputBuffer(forward, buffer)
    cls = FluentSender if kind == "fluent" else SyslogSender
    return cls(output, "edge1"), buffer


def fill(buffer: DiskBuffer, batches: int, per_batch: int = 3, tag: str = "logd.a.record") -> None:
    now = time.time_ns()
    for b in range(batches):
        entries = [(now, {"msg": f"b{b}r{r}", "app": "a"}) for r in range(per_batch)]
        buffer.append([(tag, entries)])


async def until(predicate: Callable[[], bool], seconds: float = 5) -> None:
    with trio.fail_after(seconds):
        while not predicate():
            await trio.sleep(0.01)


async def read_message(stream: trio.SocketStream, decoder: wire.ForwardDecoder) -> Any:
    while True:
        event = decoder.next_event()
        if event is not None:
            return event
        data = await stream.receive_some(65536)
        if not data:
            decoder.receive_eof()
        else:
            decoder.receive_data(data)


async def test_fluent_handshake_then_out_of_order_acks_apply_in_order(
    upstream: Upstream, tmp_path: Path
) -> None:
    got: list[wire.Entries] = []
    nonce = os.urandom(16)

    async def handler(stream: trio.SocketStream) -> None:
        decoder = wire.ForwardDecoder()
        await stream.send_all(wire.encode_helo(nonce))
        ping = await read_message(stream, decoder)
        assert isinstance(ping, wire.Ping)
        assert ping.shared_key_hexdigest == wire.shared_key_digest(
            ping.shared_key_salt, "edge1", nonce, "key"
        )
        pong = wire.encode_pong(True, "", "agg", "key", nonce, ping.shared_key_salt)
        await stream.send_all(pong)
        first = await read_message(stream, decoder)
        second = await read_message(stream, decoder)
        got.extend([first, second])
        assert first.chunk is not None
        assert second.chunk is not None
        await stream.send_all(wire.encode_ack(second.chunk))
        await stream.send_all(wire.encode_ack(first.chunk))
        await trio.sleep_forever()

    upstream.handler = handler
    sender, buffer = make_sender(tmp_path, upstream.port, shared_key="key", compress=True)
    fill(buffer, 2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.run)
        await until(lambda: sender.acked == 6)
        nursery.cancel_scope.cancel()
    assert [e.chunk for e in got] == [f"{buffer.producer_id}:1", f"{buffer.producer_id}:2"]
    assert [r["msg"] for _, r in got[0].entries] == ["b0r0", "b0r1", "b0r2"]
    assert got[0].option.get("compressed") == "gzip"
    assert (buffer.records, buffer.acked_seq, sender.sent, sender.retried) == (0, 2, 6, 0)
    assert sender.last_error is None


async def test_fluent_pong_without_proof_is_refused(upstream: Upstream, tmp_path: Path) -> None:
    """A server that does not know the key cannot pretend: its PONG digest is checked."""

    async def handler(stream: trio.SocketStream) -> None:
        decoder = wire.ForwardDecoder()
        await stream.send_all(wire.encode_helo(b"n" * 16))
        ping = await read_message(stream, decoder)
        await stream.send_all(
            wire.encode_pong(True, "", "agg", "another key", b"n" * 16, ping.shared_key_salt)
        )
        await trio.sleep_forever()

    upstream.handler = handler
    sender, buffer = make_sender(tmp_path, upstream.port, shared_key="key")
    fill(buffer, 1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.run)
        await until(lambda: sender.last_error is not None)
        nursery.cancel_scope.cancel()
    assert "does not prove it knows shared_key" in str(sender.last_error)
    assert (buffer.records, sender.sent) == (3, 0)


async def test_fluent_server_asking_for_a_key_we_lack(upstream: Upstream, tmp_path: Path) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        await stream.send_all(wire.encode_helo(b"n" * 16))
        await trio.sleep_forever()

    upstream.handler = handler
    sender, buffer = make_sender(tmp_path, upstream.port)
    fill(buffer, 1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.run)
        await until(lambda: sender.last_error is not None)
        nursery.cancel_scope.cancel()
    assert "requires shared_key authentication" in str(sender.last_error)


async def test_fluent_resends_unacked_batches_after_a_drop(
    upstream: Upstream, tmp_path: Path
) -> None:
    chunks: list[str | bytes | None] = []

    async def handler(stream: trio.SocketStream) -> None:
        decoder = wire.ForwardDecoder()
        message = await read_message(stream, decoder)
        chunks.append(message.chunk)
        if upstream.connections == 1:
            return  # close without acking
        await stream.send_all(wire.encode_ack(message.chunk))
        while not isinstance(message := await read_message(stream, decoder), wire.Closed):
            chunks.append(message.chunk)
            await stream.send_all(wire.encode_ack(message.chunk))

    upstream.handler = handler
    sender, buffer = make_sender(tmp_path, upstream.port)
    fill(buffer, 1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.run)
        await until(lambda: sender.acked == 3)
        fill(buffer, 1)
        sender.notify()
        await until(lambda: sender.acked == 6)
        nursery.cancel_scope.cancel()
    first = f"{buffer.producer_id}:1"
    assert chunks == [first, first, f"{buffer.producer_id}:2"]
    assert (sender.sent, sender.retried) == (6, 3)
    assert "closed the connection" in str(sender.last_error)


async def test_idle_close_by_upstream_is_not_an_error(upstream: Upstream, tmp_path: Path) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        await trio.sleep(0.1)  # like logd's idle_timeout_s, only shorter

    upstream.handler = handler
    sender, _ = make_sender(tmp_path, upstream.port)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.run)
        await until(lambda: upstream.connections >= 2)
        nursery.cancel_scope.cancel()
    assert sender.last_error is None


async def test_syslog_batches_confirmed_once_the_connection_held(
    upstream: Upstream, tmp_path: Path
) -> None:
    received = bytearray()

    async def handler(stream: trio.SocketStream) -> None:
        while data := await stream.receive_some(65536):
            received.extend(data)

    upstream.handler = handler
    sender, buffer = make_sender(tmp_path, upstream.port, kind="syslog", confirm_s=0.3)
    fill(buffer, 2, tag="")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.run)
        await until(lambda: sender.sent == 6)
        assert sender.acked == 0  # not before confirm_s
        await until(lambda: sender.acked == 6)
        nursery.cancel_scope.cancel()
    messages = []
    data = bytes(received)
    while data:
        length, _, rest = data.partition(b" ")
        messages.append(rest[: int(length)])
        data = rest[int(length) :]
    assert len(messages) == 6
    assert messages[0].startswith(b"<14>1 ")
    assert messages[0].endswith(b" edge1 a - - - b0r0"), messages[0]
    assert buffer.records == 0


async def test_syslog_resends_what_a_closed_connection_did_not_confirm(
    upstream: Upstream, tmp_path: Path
) -> None:
    received: list[bytes] = []

    async def handler(stream: trio.SocketStream) -> None:
        data = await stream.receive_some(65536)
        received.append(data)
        if upstream.connections == 1:
            return  # gone right after the batch: it must come again
        while data := await stream.receive_some(65536):
            received.append(data)

    upstream.handler = handler
    sender, buffer = make_sender(tmp_path, upstream.port, kind="syslog", confirm_s=0.5)
    fill(buffer, 1, tag="")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.run)
        await until(lambda: sender.acked == 3)
        nursery.cancel_scope.cancel()
    assert upstream.connections == 2
    assert received[0] == received[1]
    assert (sender.sent, sender.retried) == (3, 3)


async def test_a_batch_that_cannot_be_encoded_does_not_block_the_rest(
    upstream: Upstream, tmp_path: Path
) -> None:
    """A time past EventTime's range (year 2106) passes ingest; it is dropped and counted."""
    received: list[str] = []

    async def handler(stream: trio.SocketStream) -> None:
        decoder = wire.ForwardDecoder()
        while not isinstance(message := await read_message(stream, decoder), wire.Closed):
            received.extend(str(r["msg"]) for _, r in message.entries)
            await stream.send_all(wire.encode_ack(message.chunk))

    upstream.handler = handler
    sender, buffer = make_sender(tmp_path, upstream.port)
    year_2200 = 7_258_118_400 * 1_000_000_000
    buffer.append([("t", [(year_2200, {"msg": "far future"})])])
    fill(buffer, 1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.run)
        await until(lambda: sender.acked == 3)
        nursery.cancel_scope.cancel()
    assert received == ["b0r0", "b0r1", "b0r2"]
    assert buffer.dropped == {"unencodable": 1}
    assert buffer.records == 0


async def test_unusable_state_dir_refuses_to_start(config: Config, tmp_path: Path) -> None:
    """Outputs whose buffers cannot exist fail at start, not later and silently."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    forward = Forward(name="agg", type="fluent", host="127.0.0.1", port=1)
    broken = dataclasses.replace(config, forward=(forward,), state_dir=blocker)
    with pytest.raises(StartupError, match=r"cannot open the \[\[forward\]\] buffers"):
        await LogdServer(broken).serve()
    assert not config.listen.socket.exists()
