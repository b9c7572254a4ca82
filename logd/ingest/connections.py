"""Ingest connections: accepting them, and one task each that decodes messages, checks
`shared_key` on TCP, hands every message to the writer and acks it once it is durable.

Connection tasks never touch files: `submit` waits for the writer task, so a slow disk
slows the clients that wait for acks. `LogdServer` owns the `Connections` and the writer.
"""

from __future__ import annotations

import errno
import hmac
import logging
import os
import socket as stdsocket
import struct
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio
from logd_client import wire

from logd.config import Config
from logd.index.states import Peer, Transport
from logd.ingest.orphans import Submit
from logd.ingest.streams import next_event
from logd.write.jobs import ConnClosed, Job

__all__ = ["Conn", "Connections"]

# These lines came from the server before this module existed; they keep its logger name.
log = logging.getLogger("logd.server")

DRAIN_READ_S = 0.2
_PEERCRED = struct.Struct("3i")

Enqueue = Callable[[Job, trio.Event | None], Awaitable[None]]


@dataclass(slots=True)
class Conn:
    """One open ingest connection, for `logd-ctl status` and for draining at stop."""

    peer: Peer
    read_scope: trio.CancelScope | None = None


class Connections:
    """The open ingest connections and their tasks; see the module docstring.

    Args:
        config: the daemon's current config (reload replaces it).
        hostname: ours, sent in the PONG of the shared_key handshake.
        errors: the daemon's error counters (`LogdServer.errors`), counted into.
        submit: hands one message to the writer; True once it is durable.
        enqueue: queues a job for the writer without waiting for it.
    """

    def __init__(
        self,
        *,
        config: Callable[[], Config],
        hostname: str,
        errors: Counter[str],
        submit: Submit,
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
        self._next_conn = 0

    async def accept_loop(
        self, nursery: trio.Nursery, listener: trio.abc.Listener[Any], transport: Transport
    ) -> None:
        """Accept until the listener closes; beyond `max_connections`, refuse the newcomer."""
        limit = self._config().limits.max_connections
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
            if len(self.conns) >= limit:
                self._count("too-many-connections")
                log.warning("refusing a %s connection: %d connections open", transport, limit)
                await stream.aclose()
                continue
            nursery.start_soon(self._handle, stream, transport)

    async def _handle(self, stream: trio.SocketStream, transport: Transport) -> None:
        peer = self._peer(stream, transport)
        conn = Conn(peer)
        self.conns[peer.conn_id] = conn
        self.total += 1
        limits = self._config().limits
        decoder = wire.ForwardDecoder(
            max_message_bytes=limits.max_message_bytes, max_records=limits.max_records or None
        )
        by_daemon = False
        idle_deadline = trio.current_time() + limits.idle_timeout_s
        try:
            if transport == "tcp" and self._config().listen.shared_key:
                authenticated = False
                with trio.move_on_after(limits.idle_timeout_s):
                    authenticated = await self._authenticate(stream, decoder, peer)
                if not authenticated:
                    return
            while True:
                event = decoder.next_event()
                if event is None:
                    deadline = idle_deadline
                    if self.draining:
                        deadline = min(deadline, trio.current_time() + DRAIN_READ_S)
                    data: bytes | None = None
                    with trio.CancelScope(deadline=deadline) as conn.read_scope:
                        data = await stream.receive_some(decoder.read_size)
                    conn.read_scope = None
                    if data is None:
                        by_daemon = True
                        if not self.draining:
                            self._count("idle-timeout")
                            log.info(
                                "conn %d (%s): no message for %gs, closing",
                                peer.conn_id,
                                _peer_text(peer),
                                limits.idle_timeout_s,
                            )
                        break
                    if data:
                        decoder.receive_data(data)
                    else:
                        decoder.receive_eof()
                    continue
                idle_deadline = trio.current_time() + limits.idle_timeout_s
                if isinstance(event, wire.Closed):
                    break
                if isinstance(event, wire.Entries):
                    if not await self._submit(peer, event):
                        by_daemon = True
                        break
                    if event.chunk is not None:
                        with trio.move_on_after(limits.idle_timeout_s) as send_scope:
                            await stream.send_all(wire.encode_ack(event.chunk))
                        if send_scope.cancelled_caught:
                            self._count("ack-not-read")
                            by_daemon = True
                            break
                elif isinstance(event, wire.Ping):
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
                _peer_text(peer),
                exc.code,
                exc,
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._count("connection-broken")
            log.debug("conn %d: %r", peer.conn_id, exc)
        finally:
            del self.conns[peer.conn_id]
            with trio.CancelScope(shield=True):
                await stream.aclose()
                await self._enqueue(ConnClosed(peer, by_daemon), None)

    async def _authenticate(
        self, stream: trio.SocketStream, decoder: wire.ForwardDecoder, peer: Peer
    ) -> bool:
        """The Forward protocol's HELO / PING / PONG: the peer proves it knows shared_key."""
        key = self._config().listen.shared_key
        assert key is not None
        nonce = os.urandom(16)
        await stream.send_all(wire.encode_helo(nonce, b"", keepalive=True))
        event = await next_event(stream, decoder)
        while isinstance(event, wire.Heartbeat):
            event = await next_event(stream, decoder)
        if not isinstance(event, wire.Ping):
            self._count("auth-missing")
            log.warning(
                "conn %d (%s): sent data before authenticating; closing", peer.conn_id, peer.address
            )
            return False
        salt = event.shared_key_salt
        expected = wire.shared_key_digest(salt, event.hostname, nonce, key)
        ok = hmac.compare_digest(expected, event.shared_key_hexdigest)
        reason = "" if ok else "shared_key mismatch"
        await stream.send_all(wire.encode_pong(ok, reason, self._hostname, key, nonce, salt))
        if not ok:
            self._count("auth-failed")
            log.warning("conn %d (%s): wrong shared_key; closing", peer.conn_id, peer.address)
        return ok

    def _peer(self, stream: trio.SocketStream, transport: Transport) -> Peer:
        self._next_conn += 1
        sock = stream.socket
        if transport == "unix":
            try:
                raw = sock.getsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_PEERCRED, _PEERCRED.size)
                pid, uid, gid = _PEERCRED.unpack(raw)
            except OSError:
                pid = uid = gid = None
            return Peer(self._next_conn, "unix", pid, uid, gid, "unix")
        try:
            host, port = sock.getpeername()[:2]
            address = f"{host}:{port}"
        except OSError:
            address = "tcp"
        return Peer(self._next_conn, "tcp", address=address)

    def drain(self) -> None:
        """Stopping: give reads waiting for a next message only a moment longer."""
        self.draining = True
        soon = trio.current_time() + DRAIN_READ_S
        for conn in self.conns.values():
            if conn.read_scope is not None:
                conn.read_scope.deadline = min(conn.read_scope.deadline, soon)

    def _count(self, code: str) -> None:
        self._errors[code] += 1


def _peer_text(peer: Peer) -> str:
    if peer.transport == "unix":
        return f"pid {peer.pid} uid {peer.uid}"
    return peer.address
