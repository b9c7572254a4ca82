"""One non-blocking connection from the sender thread to the daemon.

Connects, writes queued messages as the socket accepts them and decodes acks. Keeps no
record of what was sent: which messages are outstanding is the transport's business.
"""

from __future__ import annotations

import contextlib
import socket
from collections import deque
from typing import Final

from . import wire
from .address import Address, UnixAddress

_SEND_FLAGS: Final = getattr(socket, "MSG_NOSIGNAL", 0)
_RECV_BYTES: Final = 65536


class Broken(Exception):
    """The connection cannot be used any more.

    Attributes:
        reason: `closed`, `error`, `protocol`, or `helo` (the daemon asks for shared-key
            authentication, which logd_client does not do).
        acks: chunk ids acknowledged just before it broke; they count.
    """

    def __init__(self, reason: str, acks: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.acks = acks or []


class Connection:
    """A connected, non-blocking socket with an output queue and an ack decoder.

    Resource handling:
        Owns the socket; `close()` closes it.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._out: deque[memoryview] = deque()
        self._decoder = wire.ResponseDecoder()

    @classmethod
    def open(cls, address: Address, timeout_s: float) -> Connection:
        """Connect to `address`, waiting at most `timeout_s`.

        Raises:
            OSError: the daemon is not reachable.
        """
        if isinstance(address, UnixAddress):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout_s)
                sock.connect(address.path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((address.host, address.port), timeout=timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock)

    @property
    def wants_write(self) -> bool:
        """Whether queued bytes wait for the socket to accept them."""
        return bool(self._out)

    def queue(self, payload: bytes) -> None:
        """Queue a message; `send_some()` writes it."""
        self._out.append(memoryview(payload))

    def send_some(self) -> None:
        """Write queued bytes until the socket would block.

        Raises:
            Broken: the peer or the OS broke the connection.
        """
        out = self._out
        while out:
            view = out[0]
            try:
                sent = self.sock.send(view, _SEND_FLAGS)
            except BlockingIOError:
                return
            except OSError as exc:
                raise Broken("error") from exc
            if sent < len(view):
                out[0] = view[sent:]
                return
            out.popleft()

    def receive_acks(self) -> list[str]:
        """Read what arrived and return the chunk ids acknowledged, in order.

        Raises:
            Broken: the daemon closed the connection, sent invalid bytes or a HELO; acks
                that arrived before are in `Broken.acks`.
        """
        decoder = self._decoder
        acks: list[str] = []
        broken: str | None = None
        try:
            while True:
                try:
                    data = self.sock.recv(_RECV_BYTES)
                except BlockingIOError:
                    break
                except OSError:
                    broken = "error"
                    break
                if not data:
                    decoder.receive_eof()
                    break
                decoder.receive_data(data)
            while broken is None and (event := decoder.next_event()) is not None:
                if isinstance(event, wire.Ack):
                    chunk = event.chunk
                    acks.append(
                        chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else chunk
                    )
                elif isinstance(event, wire.Closed):
                    broken = "closed"
                elif isinstance(event, wire.Helo):
                    broken = "helo"
        except wire.ProtocolError:
            broken = "protocol"
        if broken is not None:
            raise Broken(broken, acks)
        return acks

    def close(self) -> None:
        """Close the socket; idempotent."""
        with contextlib.suppress(OSError):
            self.sock.close()
