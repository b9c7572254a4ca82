"""Fluent Forward output: to Fluentd, Fluent Bit or another logd, with chunk acks.

Each buffered batch is one Forward (or gzip CompressedPackedForward) message whose
chunk id is `<buffer producer id>:<batch seq>`. The id is stable across restarts of
both sides, so a logd aggregator recognises a resent batch it already wrote
(`logd.write.dedup`) and acks it without writing it twice. With `shared_key` the connection
first does the HELO / PING / PONG handshake and checks the server's PONG digest too.
"""

from __future__ import annotations

import hmac
import os
from collections import deque
from dataclasses import dataclass

import trio
from logd_client import wire

from logd.forward.sender import IDLE_CHECK_S, Sender, UpstreamError, peer_closed
from logd.ingest.streams import next_event

# Batches sent before waiting for the oldest ack: hides the round trip.
WINDOW = 8


@dataclass(slots=True)
class _InFlight:
    seq: int
    records: int
    chunk: str
    sent_at: float
    acked: bool = False


class FluentSender(Sender):
    """`type = "fluent"`."""

    type_name = "fluent"

    async def _session(self, stream: trio.SocketStream) -> None:
        decoder = wire.ResponseDecoder()
        if self.settings.shared_key is not None:
            await self._handshake(stream, decoder, self.settings.shared_key)
        self._up()
        inflight: deque[_InFlight] = deque()
        last_sent = self.buffer.acked_seq  # resend whatever was not acknowledged
        while True:
            self._fresh_wake()
            if len(inflight) < WINDOW and self.buffer.last_seq > last_sent:
                prepared, examined = await trio.to_thread.run_sync(
                    self._prepare, last_sent, WINDOW - len(inflight)
                )
                for seq, records, chunk, data in prepared:
                    await self._send(stream, data)
                    self._count_sent(seq, records)
                    inflight.append(_InFlight(seq, records, chunk, trio.current_time()))
                # Past what was sent, dropped or discarded meanwhile: never look again.
                last_sent = max(last_sent, examined)
                continue
            if inflight:
                await self._await_ack(stream, decoder, inflight)
                continue
            if peer_closed(stream):
                return  # closed while idle: nothing was lost
            await self._wait(trio.current_time() + IDLE_CHECK_S)

    def _prepare(self, after_seq: int, count: int) -> tuple[list[tuple[int, int, str, bytes]], int]:
        # Worker thread: read and encode off the event loop. Also returns the seq the
        # buffer got through, so batches gone meanwhile are not looked for again.
        batches, examined = self.buffer.take(after_seq, count)
        prepared = []
        for batch in batches:
            chunk = f"{self.buffer.producer_id}:{batch.seq}"
            try:
                data = wire.encode_forward(
                    batch.tag, batch.entries, chunk=chunk, compressed=self.settings.compress
                )
            except wire.LocalProtocolError:
                # A time past EventTime's range (year 2106) passes ingest but cannot
                # go out: drop the batch rather than block the output behind it.
                self.buffer.discard(batch.seq, "unencodable")
                continue
            prepared.append((batch.seq, len(batch.entries), chunk, data))
        return prepared, examined

    async def _await_ack(
        self, stream: trio.SocketStream, decoder: wire.ResponseDecoder, inflight: deque[_InFlight]
    ) -> None:
        oldest = inflight[0]
        with trio.move_on_at(oldest.sent_at + self.settings.timeout_s) as scope:
            event = await self._receive(stream, decoder)
        if scope.cancelled_caught:
            raise UpstreamError(
                f"{self.target} did not acknowledge chunk {oldest.chunk} "
                f"within {self.settings.timeout_s:g}s"
            )
        if isinstance(event, wire.Helo):
            raise UpstreamError(f"{self.target} requires shared_key authentication (HELO)")
        if not isinstance(event, wire.Ack):
            raise UpstreamError(f"{self.target} sent {type(event).__name__}, not an ack")
        chunk = (
            event.chunk.decode("utf-8", "replace")
            if isinstance(event.chunk, bytes)
            else event.chunk
        )
        for item in inflight:
            if item.chunk == chunk:
                item.acked = True
                break
        else:
            raise UpstreamError(f"{self.target} acknowledged a chunk never sent: {chunk!r}")
        # Acks normally come in order; one out of order waits for those before it,
        # because the buffer is acknowledged up to a seq.
        seq = records = 0
        while inflight and inflight[0].acked:
            done = inflight.popleft()
            seq, records = done.seq, records + done.records
        if records:
            await self._ack(seq, records)

    async def _handshake(
        self, stream: trio.SocketStream, decoder: wire.ResponseDecoder, shared_key: str
    ) -> None:
        with trio.move_on_after(self.settings.timeout_s) as scope:
            helo = await self._receive(stream, decoder)
            if not isinstance(helo, wire.Helo):
                raise UpstreamError(
                    f"{self.target} did not start the shared_key handshake (sent "
                    f"{type(helo).__name__}, not HELO)"
                )
            if helo.auth:
                raise UpstreamError(
                    f"{self.target} asks for a username and password; logd sends only shared_key"
                )
            salt, nonce = os.urandom(16), helo.nonce
            ping = wire.encode_ping(self.hostname, shared_key, nonce, salt=salt)
            await self._send(stream, ping)
            pong = await self._receive(stream, decoder)
        if scope.cancelled_caught:
            raise UpstreamError(f"{self.target}: shared_key handshake timed out")
        if not isinstance(pong, wire.Pong):
            raise UpstreamError(f"{self.target} answered PING with {type(pong).__name__}")
        if not pong.auth_result:
            raise UpstreamError(
                f"authentication failed at {self.target}: {pong.reason or 'no reason given'}"
            )
        expected = wire.shared_key_digest(salt, pong.hostname, nonce, shared_key)
        if not hmac.compare_digest(expected, pong.shared_key_hexdigest):
            raise UpstreamError(
                f"authentication failed: {self.target}'s PONG does not prove it knows shared_key"
            )

    async def _receive(
        self, stream: trio.SocketStream, decoder: wire.ResponseDecoder
    ) -> wire.Ack | wire.Helo | wire.Pong:
        event = await next_event(stream, decoder)
        if isinstance(event, wire.Closed):
            raise UpstreamError(f"{self.target} closed the connection")
        return event
