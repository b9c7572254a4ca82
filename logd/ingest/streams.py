"""Reading whole messages off a trio stream with one of the sans-IO decoders.

The one loop every connection needs: ask the decoder for an event, read more bytes
when it has none, tell it about EOF. Kept here so each protocol's code reads as the
conversation it is. And the ingest connections' read-ahead while the writer works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, overload

import trio
from logd_client import wire


@overload
async def next_event(
    stream: trio.SocketStream, decoder: wire.ForwardDecoder
) -> wire.Entries | wire.Ping | wire.Heartbeat | wire.Closed: ...
@overload
async def next_event(
    stream: trio.SocketStream, decoder: wire.ResponseDecoder
) -> wire.Ack | wire.Helo | wire.Pong | wire.Closed: ...
@overload
async def next_event(
    stream: trio.SocketStream, decoder: wire.MapDecoder
) -> dict[str, Any] | wire.Closed: ...
async def next_event(stream: trio.SocketStream, decoder: Any) -> Any:
    """The decoder's next event, reading from `stream` until it has one.

    Returns `wire.Closed` (as an event) once the peer closed at a message boundary.

    Raises:
        wire.RemoteProtocolError: the peer's bytes are invalid.
        trio.BrokenResourceError, trio.ClosedResourceError: the stream failed.
    """
    while (event := decoder.next_event()) is None:
        data = await stream.receive_some(decoder.read_size)
        if data:
            decoder.receive_data(data)
        else:
            decoder.receive_eof()
    return event


@dataclass(slots=True)
class ReadBudget:
    """Bytes the connections may still read ahead between them (see `ReadAhead`)."""

    left: int


class ReadAhead:
    """Bytes read off a connection while its previous messages are with the writer.

    A busy client has its next messages waiting in the socket while the writer works; read
    meanwhile, they go to the writer as one job the moment it answers, so a batch holds
    what arrived during the previous one rather than one read's worth (64 KiB per
    connection), and its per-file costs are shared by more records. The bytes wait in the
    decoder undecoded (a decoded record takes ten times the room); `budget` bounds them
    across all connections, and each stops at `limit` bytes or at EOF.
    """

    def __init__(
        self,
        stream: trio.SocketStream,
        decoder: wire.ForwardDecoder,
        budget: ReadBudget,
        limit: int,
    ) -> None:
        self.nbytes = 0
        self.broken: trio.BrokenResourceError | trio.ClosedResourceError | None = None
        self._budget = budget
        self._limit = limit
        self._held = 0
        self._stream = stream
        self._decoder = decoder
        # A stop narrows it to the drain's end of reading (`stop_by`).
        self._scope = trio.CancelScope()

    @property
    def found(self) -> bool:
        """Whether it read anything the connection must act on (a failed read too)."""
        return self.nbytes > 0 or self.broken is not None

    def stop_by(self, deadline: float) -> None:
        """Read nothing after `deadline` (trio time): the daemon is stopping."""
        self._scope.deadline = min(self._scope.deadline, deadline)

    async def run(self) -> None:
        """Read until a stop (above) or until cancelled; never raises."""
        with self._scope:
            await self._read()

    async def _read(self) -> None:
        stream, decoder = self._stream, self._decoder
        while self.nbytes < self._limit and self._budget.left > 0:
            try:
                data = await stream.receive_some(decoder.read_size)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.broken = exc
                return
            if not data:
                decoder.receive_eof()
                self.nbytes += 1  # the EOF is news too
                return
            self.nbytes += len(data)
            self._held += len(data)
            self._budget.left -= len(data)
            decoder.receive_data(data)

    def release(self) -> None:
        """Give its bytes back to the shared budget (the messages now go to the writer)."""
        self._budget.left += self._held
        self._held = 0
