"""Who is on the other end of an ingest connection, and whether it may write.

Split from `connections.py`: the peer's identity (its credentials on the Unix socket, its
address on TCP), TCP keepalive, and the Forward protocol's shared_key handshake.
"""

from __future__ import annotations

import hmac
import logging
import os
import socket as stdsocket
import struct

import trio
from logd_client import wire

from logd.index.states import Peer, Transport
from logd.ingest.streams import next_event

__all__ = ["authenticate", "keep_alive", "peer_of", "peer_text"]

# These lines came from the server before this module existed; they keep its logger name.
log = logging.getLogger("logd.ingest")

# TCP keepalive probes a peer quiet for idle_timeout_s, then this often, this many times:
# a dead or unplugged peer (no FIN, no RST) is closed about 30 s later (tcp(7)).
KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_PROBES = 3
_KEEPIDLE_MAX_S = 32767  # Linux's MAX_TCP_KEEPIDLE
_PEERCRED = struct.Struct("3i")


def peer_of(sock: trio.socket.SocketType, transport: Transport, conn_id: int) -> Peer:
    """The peer as the registry and the logs name it: pid/uid/gid on the Unix socket (so a
    run can be tied to its process), host:port on TCP."""
    if transport == "unix":
        try:
            raw = sock.getsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_PEERCRED, _PEERCRED.size)
            pid, uid, gid = _PEERCRED.unpack(raw)
        except OSError:
            pid = uid = gid = None
        return Peer(conn_id, "unix", pid, uid, gid, "unix")
    try:
        host, port = sock.getpeername()[:2]
        address = f"{host}:{port}"
    except OSError:
        address = "tcp"
    return Peer(conn_id, "tcp", address=address)


def peer_text(peer: Peer) -> str:
    """The peer in a log line."""
    if peer.transport == "unix":
        return f"pid {peer.pid} uid {peer.uid}"
    return peer.address


def keep_alive(sock: trio.socket.SocketType, idle_timeout_s: float) -> None:
    """Have the kernel probe a quiet TCP peer, so a dead one is closed (tcp(7))."""
    idle = min(max(round(idle_timeout_s), 1), _KEEPIDLE_MAX_S)
    try:
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_KEEPALIVE, 1)
        sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_KEEPIDLE, idle)
        sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
        sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_KEEPCNT, KEEPALIVE_PROBES)
    except OSError as exc:
        # The peer may already have reset the connection; its first read will say so.
        log.debug("cannot set TCP keepalive: %s", exc)


async def authenticate(
    stream: trio.SocketStream,
    decoder: wire.ForwardDecoder,
    peer: Peer,
    key: str,
    hostname: str,
) -> str | None:
    """The Forward protocol's HELO / PING / PONG: the peer proves it knows `key`.

    Returns None when it did, else the error to count (`auth-missing`, `auth-failed`);
    the caller then closes the connection.
    """
    nonce = os.urandom(16)
    await stream.send_all(wire.encode_helo(nonce, b"", keepalive=True))
    event = await next_event(stream, decoder)
    while isinstance(event, wire.Heartbeat):
        event = await next_event(stream, decoder)
    if not isinstance(event, wire.Ping):
        log.warning(
            "conn %d (%s): sent data before authenticating; closing", peer.conn_id, peer.address
        )
        return "auth-missing"
    salt = event.shared_key_salt
    expected = wire.shared_key_digest(salt, event.hostname, nonce, key)
    ok = hmac.compare_digest(expected, event.shared_key_hexdigest)
    reason = "" if ok else "shared_key mismatch"
    await stream.send_all(wire.encode_pong(ok, reason, hostname, key, nonce, salt))
    if not ok:
        log.warning("conn %d (%s): wrong shared_key; closing", peer.conn_id, peer.address)
        return "auth-failed"
    return None
