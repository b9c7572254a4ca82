"""`afollow()`: `follow()` for asyncio apps, on asyncio streams.

The same conversation and resume as the blocking `follow()` (`TailFollow`), with the
socket read through `asyncio.open_unix_connection`, so the event loop never blocks and
cancelling the task (a websocket that went away) closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from .. import wire
from .connection import MAX_REPLY_BYTES, REPLY_TIMEOUT_S, unavailable_error
from .items import public
from .protocol import LOST_CODES, DaemonError, TailFollow
from .readers import FIRST_RETRY_S, MAX_RETRY_S, control_candidates

__all__ = ["afollow"]

_READ_BYTES = 1 << 16


class _Conversation:
    """One asyncio connection to the control socket: maps out, maps in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._decoder = wire.MapDecoder(max_message_bytes=MAX_REPLY_BYTES)

    @classmethod
    async def open(cls, paths: Sequence[str]) -> _Conversation:
        failures: list[tuple[str, OSError]] = []
        for path in paths:
            try:
                reader, writer = await asyncio.open_unix_connection(path, limit=_READ_BYTES)
            except OSError as exc:
                failures.append((path, exc))
            else:
                return cls(reader, writer)
        raise unavailable_error(failures)

    async def send(self, payload: dict[str, Any]) -> None:
        try:
            self._writer.write(wire.encode_map(payload))
            await self._writer.drain()
        except OSError as exc:
            raise DaemonError("disconnected", f"lost the connection to logd: {exc}") from None

    async def receive(self) -> dict[str, Any] | None:
        """The next map, or None when the daemon closed the connection."""
        try:
            while True:
                event = self._decoder.next_event()
                if isinstance(event, wire.Closed):
                    return None
                if event is not None:
                    return event
                data = await self._reader.read(min(self._decoder.read_size, _READ_BYTES))
                if data:
                    self._decoder.receive_data(data)
                else:
                    self._decoder.receive_eof()
        except wire.RemoteProtocolError as exc:
            raise DaemonError(exc.code, f"bad reply from logd: {exc}") from None
        except OSError as exc:
            raise DaemonError("disconnected", f"lost the connection to logd: {exc}") from None

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


async def afollow(
    *,
    app: str | None = None,
    run: str | None = None,
    session: str | None = None,
    call: str | None = None,
    events: str | None = None,
    n: int = 0,
    control: str | None = None,
) -> AsyncGenerator[dict[str, Any], None]:
    """Records as the daemon writes them, an async iterator: `follow()` for asyncio.

    `async for record in logd_client.afollow(session=sid): await ws.send_json(record)`.
    Same arguments, records and restart behaviour as `follow()`.

    Raises:
        ConnectionError: no daemon when iteration starts (later it is waited for).
        DaemonError: the daemon refused the request.

    Resource handling:
        The generator owns its connection: cancelling the task that iterates, leaving the
        `async for` or `aclose()` closes it.
    """
    candidates = control_candidates(control)
    args = {"app": app, "run": run, "session": session, "call": call, "events": events}
    state = TailFollow({**{k: v for k, v in args.items() if v is not None}, "n": n, "wait": True})
    conv = await _Conversation.open(candidates)
    try:
        while True:
            try:
                await asyncio.wait_for(conv.send(state.request()), REPLY_TIMEOUT_S)
                reply = await asyncio.wait_for(conv.receive(), REPLY_TIMEOUT_S)
                items, _ = state.receive_reply(reply)
                for item in items:
                    yield public(item)
                while (message := await conv.receive()) is not None:
                    item, _ = state.receive_message(message)
                    if item is not None:
                        yield public(item)
            except DaemonError as exc:
                if exc.code not in LOST_CODES:
                    raise
            except TimeoutError:
                pass  # a daemon that does not answer is treated as gone
            await conv.aclose()
            state.connection_lost()
            conv = await _reconnect(candidates)
    finally:
        await conv.aclose()


async def _reconnect(candidates: Sequence[str]) -> _Conversation:
    delay = FIRST_RETRY_S
    while True:
        await asyncio.sleep(delay)
        try:
            return await _Conversation.open(candidates)
        except ConnectionError:
            delay = min(delay * 2, MAX_RETRY_S)
