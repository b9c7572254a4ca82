"""Reading whole messages off a trio stream with one of the sans-IO decoders.

The one loop every connection needs: ask the decoder for an event, read more bytes
when it has none, tell it about EOF. Kept here so each protocol's code reads as the
conversation it is.
"""

from __future__ import annotations

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
