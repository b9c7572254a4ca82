"""Ingest connections: accepting them, and one task each that decodes messages, checks
`shared_key` on TCP, hands every message to the writer and acks it once it is durable.

Connection tasks never touch files: `submit` waits for the writer task, so a slow disk
slows the clients that wait for acks. `LogdServer` owns the `Connections` and the writer.

Quiet connections stay open, as Fluentd and Fluent Bit keep them: a client that does not
ask for acks would write its next record into a socket the daemon closed and lose it.
Dead TCP peers are found by TCP keepalive; the idlest connections are closed only when
the connection limit is near. A message handed to the writer is always finished and
acked, at a stop too, so a client never resends what was written.
"""

from __future__ import annotations

import errno
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio
from logd_client import wire

from logd.config import Config, Limits
from logd.index.states import Peer, Transport
from logd.ingest.batching import SubmitMany, read_ahead_limit, read_ahead_pool, take_buffered
from logd.ingest.peers import authenticate, keep_alive, peer_of, peer_text
from logd.ingest.streams import ReadAhead, ReadBudget
from logd.write.jobs import ConnClosed, Job

__all__ = ["Conn", "Connections"]

# These lines came from the server before this module existed; they keep its logger name.
log = logging.getLogger("logd.ingest")

# Stopping: a connection reads new messages for this long, then stops at the next message
# boundary (one partly received may finish until the drain grace ends).
DRAIN_READ_S = 0.2
# Stopping: how long an ack may wait for a peer that does not read.
DRAIN_ACK_S = 1.0
# Near the limit means within limit // ROOM_DIVISOR (at least 1) of it.
ROOM_DIVISOR = 16

Enqueue = Callable[[Job, trio.Event | None], Awaitable[bool]]


@dataclass(slots=True, eq=False)
class Conn:
    """One open ingest connection, for `logd-ctl status`, for making room and for draining."""

    peer: Peer
    last_message: float  # trio time of its last complete message, or of its accept
    read_scope: trio.CancelScope | None = None  # set while it waits for bytes
    ack_scope: trio.CancelScope | None = None  # set while an ack is being sent
    read_ahead: ReadAhead | None = None  # set while it reads on beside the writer
    mid_message: bool = False  # the read waits for the rest of a message
    asks_acks: bool = False
    closed_for_room: bool = False


class Connections:
    """The open ingest connections and their tasks; see the module docstring.

    Args:
        config: the daemon's current config (reload replaces it).
        hostname: ours, sent in the PONG of the shared_key handshake.
        errors: the daemon's error counters (`LogdServer.errors`), counted into.
        submit: hands messages to the writer; how many of them, from the first, are durable.
        enqueue: queues a job for the writer without waiting for it.
    """

    def __init__(
        self,
        *,
        config: Callable[[], Config],
        hostname: str,
        errors: Counter[str],
        submit: SubmitMany,
        enqueue: Enqueue,
    ) -> None:
        self._config = config
        self._hostname = hostname
        self._errors = errors
        self._submit = submit
        self._enqueue = enqueue
        self.conns: dict[int, Conn] = {}
        self.total = 0
        self.draining = False
        self._stop_reading_at = math.inf
        self._drain_end = math.inf
        self._next_conn = 0
        self._read_budget = ReadBudget(0)
        self._read_budget_total = 0

    @property
    def read_ahead_left(self) -> int:
        """Bytes the connections may still read ahead between them."""
        return self._read_budget.left

    def _read_ahead(self, limits: Limits) -> tuple[ReadBudget, int]:
        """The shared read-ahead budget, resized to the limit (a reload may change it) and
        to the connections open now (`read_ahead_pool`), and what one connection may take
        of it (`read_ahead_limit`)."""
        total = read_ahead_pool(limits.read_ahead_bytes, len(self.conns))
        if total != self._read_budget_total:
            self._read_budget.left += total - self._read_budget_total
            self._read_budget_total = total
        return self._read_budget, read_ahead_limit(limits.read_ahead_bytes, total)

    async def accept_loop(
        self, nursery: trio.Nursery, listener: trio.abc.Listener[Any], transport: Transport
    ) -> None:
        """Accept until the listener closes. Near `max_connections`, close the idlest
        connection for each newcomer; at the limit with none idle, refuse the newcomer."""
        limit = self._config().limits.max_connections
        room = max(1, limit // ROOM_DIVISOR)
        while True:
            try:
                stream = await listener.accept()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._count("accept-" + errno.errorcode[exc.errno].lower())
                    log.warning("accept failed (%s); pausing", exc.strerror)
                    await trio.sleep(0.1)
                    continue
                raise
            if len(self.conns) >= limit - room:
                self._close_idlest(limit)
            if len(self.conns) >= limit:
                self._count("too-many-connections")
                log.warning("refusing a %s connection: %d connections open", transport, limit)
                await stream.aclose()
                continue
            nursery.start_soon(self._handle, stream, transport)

    async def _handle(self, stream: trio.SocketStream, transport: Transport) -> None:
        self._next_conn += 1
        peer = peer_of(stream.socket, transport, self._next_conn)
        limits = self._config().limits
        if transport == "tcp":
            keep_alive(stream.socket, limits.idle_timeout_s)
        conn = Conn(peer, trio.current_time())
        self.conns[peer.conn_id] = conn
        self.total += 1
        # Packed entries stay packed until the writer takes them (`wire.unpacked`).
        decoder = wire.ForwardDecoder(
            max_message_bytes=limits.max_message_bytes,
            max_records=limits.max_records or None,
            lazy_packed=True,
        )
        by_daemon = False
        try:
            key = self._config().listen.shared_key
            if transport == "tcp" and key:
                with trio.move_on_after(limits.idle_timeout_s) as waiting:
                    refused = await authenticate(stream, decoder, peer, key, self._hostname)
                if waiting.cancelled_caught:
                    return
                if refused is not None:
                    self._count(refused)
                    return
            ahead: ReadAhead | None = None
            while True:
                if ahead is not None and ahead.broken is not None:
                    raise ahead.broken  # what it read before is not acked: resent
                ahead = None
                taken = take_buffered(decoder)
                if taken.entries:
                    conn.last_message = trio.current_time()
                    conn.asks_acks = conn.asks_acks or any(
                        entries.chunk is not None for entries in taken.entries
                    )
                    current = self._config().limits  # a reload may have changed it
                    more = taken.stopped_at is None and taken.error is None
                    if more and current.read_ahead_bytes:
                        budget, limit = self._read_ahead(current)
                        ahead = ReadAhead(stream, decoder, budget, limit)
                    # Once the writer has the messages, a stop must not come between their
                    # write and their acks: the client would resend what is already written.
                    with trio.CancelScope(shield=True):
                        done = await self._write_and_ack(stream, taken.entries, conn, limits, ahead)
                    if not done:
                        by_daemon = True
                        break
                    if ahead is not None and ahead.found:
                        continue
                    ahead = None
                if taken.error is not None:
                    raise taken.error
                event = taken.stopped_at
                if event is None:
                    data = await self._receive(stream, decoder, conn, limits)
                    if data is None:
                        by_daemon = True
                        break
                    if data:
                        decoder.receive_data(data)
                    else:
                        decoder.receive_eof()
                    continue
                conn.last_message = trio.current_time()
                if isinstance(event, wire.Closed):
                    break
                if isinstance(event, wire.Ping):
                    self._count("unexpected-ping")
                    log.warning(
                        "conn %d: PING without shared_key configured; closing", peer.conn_id
                    )
                    break
        except wire.RemoteProtocolError as exc:
            self._count(exc.code)
            log.warning(
                "conn %d (%s): protocol error %s: %s; closing",
                peer.conn_id,
                peer_text(peer),
                exc.code,
                exc,
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._count("connection-broken")
            log.debug("conn %d: %r", peer.conn_id, exc)
        finally:
            self.conns.pop(peer.conn_id, None)
            with trio.CancelScope(shield=True):
                await stream.aclose()
                await self._enqueue(ConnClosed(peer, by_daemon), None)

    async def _receive(
        self, stream: trio.SocketStream, decoder: wire.ForwardDecoder, conn: Conn, limits: Limits
    ) -> bytes | None:
        """The next bytes from the peer (b"" at EOF), or None when it is time to close."""
        mid_message = decoder.in_message
        deadline = self._read_deadline(conn, mid_message, limits)
        if not conn.closed_for_room and deadline > trio.current_time():
            conn.mid_message = mid_message
            data: bytes | None = None
            with trio.CancelScope(deadline=deadline) as conn.read_scope:
                data = await stream.receive_some(decoder.read_size)
            conn.read_scope = None
            if data is not None:
                return data
        if not (self.draining or conn.closed_for_room):
            self._count("idle-timeout")
            log.info(
                "conn %d (%s): no message for %gs%s, closing",
                conn.peer.conn_id,
                peer_text(conn.peer),
                limits.idle_timeout_s,
                " (one stopped halfway)" if mid_message else "",
            )
        return None

    def _read_deadline(self, conn: Conn, mid_message: bool, limits: Limits) -> float:
        idle_end = conn.last_message + limits.idle_timeout_s
        if mid_message:
            # A message stuck halfway holds a buffer: the client is stalled, not quiet.
            deadline = idle_end
        elif conn.asks_acks and conn.peer.transport == "unix":
            # A local client that waits for acks (logd's own does) resends what the close
            # costs it and reconnects on its next record: free its slot as before.
            deadline = idle_end
        else:
            deadline = math.inf
        if self.draining:
            deadline = min(deadline, self._drain_end if mid_message else self._stop_reading_at)
        return deadline

    async def _write_and_ack(
        self,
        stream: trio.SocketStream,
        messages: list[wire.Entries],
        conn: Conn,
        limits: Limits,
        ahead: ReadAhead | None,
    ) -> bool:
        """Hand `messages` to the writer at once and ack them in order once durable; False:
        close the connection (after acking those that were written). Meanwhile `ahead`, if
        given, reads the connection's next messages.

        Called shielded, so it must end on its own: the writer always answers, and the acks
        wait for a peer that does not read at most idle_timeout_s (DRAIN_ACK_S at a stop).
        """
        # The writer empties `messages` once it has their lines: keep what the acks need.
        chunks = [entries.chunk for entries in messages]
        async with trio.open_nursery() as nursery:
            if ahead is not None:
                if self.draining:
                    ahead.stop_by(self._stop_reading_at)
                conn.read_ahead = ahead
                nursery.start_soon(ahead.run)
            durable = await self._submit(conn.peer, messages)
            nursery.cancel_scope.cancel()
        conn.read_ahead = None
        if ahead is not None:
            ahead.release()
        acks = b"".join(wire.encode_ack(chunk) for chunk in chunks[:durable] if chunk is not None)
        if acks:
            timeout = DRAIN_ACK_S if self.draining else limits.idle_timeout_s
            with trio.move_on_after(timeout) as conn.ack_scope:
                await stream.send_all(acks)
            sent = not conn.ack_scope.cancelled_caught
            conn.ack_scope = None
            if not sent:
                self._count("ack-not-read")
                return False
        return durable == len(chunks)

    def _close_idlest(self, limit: int) -> None:
        """Make room: close the connection quiet longest, if quiet for idle_timeout_s.

        Only one waiting for its next message; it leaves `conns` at once, so the newcomer
        that prompted this counts against the limit in its place.
        """
        idle_s = self._config().limits.idle_timeout_s
        now = trio.current_time()
        quiet = [
            conn
            for conn in self.conns.values()
            if conn.read_scope is not None
            and not conn.mid_message
            and now - conn.last_message >= idle_s
        ]
        if not quiet:
            return
        idlest = min(quiet, key=lambda conn: conn.last_message)
        assert idlest.read_scope is not None
        idlest.closed_for_room = True
        idlest.read_scope.cancel()
        del self.conns[idlest.peer.conn_id]
        self._count("idle-closed-for-room")
        log.warning(
            "conn %d (%s): quiet for %.0fs, closed to make room (%d connections, limit %d)",
            idlest.peer.conn_id,
            peer_text(idlest.peer),
            now - idlest.last_message,
            len(self.conns) + 1,
            limit,
        )

    def drain(self, grace_s: float) -> None:
        """Stopping: read new messages only a moment longer, finish those under way.

        A connection stops at its next message boundary after DRAIN_READ_S; one partly
        received may finish within `grace_s`. What the writer already has is written and
        acked regardless (see `_write_and_ack`), so a restart costs a live stream a
        fraction of a second, not the whole grace.
        """
        now = trio.current_time()
        self.draining = True
        self._stop_reading_at = now + DRAIN_READ_S
        self._drain_end = now + grace_s
        for conn in self.conns.values():
            if conn.read_scope is not None:
                end = self._drain_end if conn.mid_message else self._stop_reading_at
                conn.read_scope.deadline = min(conn.read_scope.deadline, end)
            if conn.read_ahead is not None:
                conn.read_ahead.stop_by(self._stop_reading_at)
            if conn.ack_scope is not None:
                conn.ack_scope.deadline = min(conn.ack_scope.deadline, now + DRAIN_ACK_S)

    def _count(self, code: str) -> None:
        self._errors[code] += 1
