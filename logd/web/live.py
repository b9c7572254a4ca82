"""The control socket from `logd web`: one-shot requests, and `tail -f` as Server-Sent Events.

Each browser that follows a run, session or call gets its own control connection with
a `tail` request (`follow=True`); the daemon sends the backlog, then every new matching
record as it is written. This module relays those maps as SSE `item` events until the
browser goes away (then the control connection is closed, which unsubscribes it) or the
daemon stops (an `end` event). Requires trio: `logd web` runs on hypercorn's trio worker.
"""

from __future__ import annotations

import json
import os
from typing import Any

import trio
from logd_client import wire
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from logd.control import requests as control
from logd.ingest.streams import next_event
from logd.web.data import BadRequest, NotFound, WebError

__all__ = ["ControlUnavailable", "TailEvents", "ask"]

REPLY_TIMEOUT_S = 30.0
KEEPALIVE_S = 15.0
RETRY_MS = 3000
MAX_STREAMS = 64


class ControlUnavailable(WebError):
    """The daemon's control socket cannot be reached (the daemon is not running)."""

    status = 503


def _refusal(error: Any) -> WebError:
    """A coded control error as the web error with the matching HTTP status."""
    if not isinstance(error, dict):
        return WebError("the daemon sent an unexpected reply")
    message = str(error.get("message", "the daemon refused the request"))
    return NotFound(message) if error.get("code") == "not-found" else BadRequest(message)


async def _connect(path: str) -> trio.SocketStream:
    try:
        return await trio.open_unix_socket(path)
    except OSError as exc:
        raise ControlUnavailable(
            f"logd is not running (no control socket at {path}: {exc.strerror})"
        ) from None


async def _next_map(stream: trio.SocketStream, decoder: wire.MapDecoder) -> dict[str, Any] | None:
    """The next reply map, or None when the daemon closed the connection."""
    event = await next_event(stream, decoder)
    return None if isinstance(event, wire.Closed) else event


async def ask(path: str, command: str, **args: Any) -> Any:
    """Send one control request and return its ``result``.

    Raises:
        ControlUnavailable: no daemon, or it stopped answering.
        WebError: the daemon refused the request (its message, as a 4xx).
    """
    stream = await _connect(path)
    try:
        with trio.move_on_after(REPLY_TIMEOUT_S):
            await stream.send_all(wire.encode_map(control.request(command, **args)))
            reply = await _next_map(stream, wire.MapDecoder())
            if reply is None:
                raise ControlUnavailable("logd closed the control connection")
            if not reply.get("ok"):
                raise _refusal(reply.get("error"))
            return reply.get("result")
        raise ControlUnavailable(f"logd did not answer within {REPLY_TIMEOUT_S:g} s")
    except (trio.BrokenResourceError, trio.ClosedResourceError, wire.RemoteProtocolError):
        raise ControlUnavailable("the control connection broke") from None
    finally:
        await stream.aclose()


def _sse(event: str, data: Any) -> bytes:
    # json.dumps escapes newlines, so one `data:` line always carries the whole value.
    payload = json.dumps(data, ensure_ascii=False, default=str)
    return f"event: {event}\ndata: {payload}\n\n".encode()


class _Streams:
    """How many live tails are open: each holds a control connection in the daemon."""

    open = 0


class TailEvents(Response):
    """`text/event-stream` of one control-socket `tail -f` (filters as `logd-ctl tail`).

    Errors before the stream starts (no daemon, unknown run) are plain JSON replies.

    Resource handling: the control connection lives exactly as long as the response.
    """

    media_type = "text/event-stream"

    def __init__(self, control_path: str | os.PathLike[str], args: dict[str, Any]) -> None:
        super().__init__(status_code=200)
        self.control_path = os.fspath(control_path)
        self.args = args

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") == "HEAD":  # a probe: say what it would get, hold nothing open
            await Response(media_type=self.media_type)(scope, receive, send)
            return
        if _Streams.open >= MAX_STREAMS:
            await _error(scope, receive, send, ControlUnavailable("too many live tails open"))
            return
        _Streams.open += 1
        try:
            await self._serve(scope, receive, send)
        finally:
            _Streams.open -= 1

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            stream = await _connect(self.control_path)
        except WebError as exc:
            await _error(scope, receive, send, exc)
            return
        try:
            decoder = wire.MapDecoder()
            request = control.request("tail", follow=True, **self.args)
            try:
                with trio.fail_after(REPLY_TIMEOUT_S):
                    await stream.send_all(wire.encode_map(request))
                    first = await _next_map(stream, decoder)
            except (trio.TooSlowError, trio.BrokenResourceError, wire.RemoteProtocolError):
                first = None
            if first is None or not first.get("ok"):
                problem = (
                    _refusal(first.get("error"))
                    if first is not None
                    else ControlUnavailable("logd did not start the live tail")
                )
                await _error(scope, receive, send, problem)
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-store"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            backlog = first.get("result") or []
            opening = f"retry: {RETRY_MS}\n\n".encode() + b"".join(
                _sse("item", item) for item in backlog
            )
            opening += _sse("ready", {"backlog": len(backlog)})
            gone = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch_disconnect, receive, nursery.cancel_scope, gone)
                await send({"type": "http.response.body", "body": opening, "more_body": True})
                await _relay(stream, decoder, send)
                nursery.cancel_scope.cancel()
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await stream.aclose()


async def _relay(stream: trio.SocketStream, decoder: wire.MapDecoder, send: Send) -> None:
    """Forward live items until the daemon closes the tail; a comment keeps proxies open."""
    while True:
        message: dict[str, Any] | None = None
        with trio.move_on_after(KEEPALIVE_S) as waiting:
            try:
                message = await _next_map(stream, decoder)
            except (trio.BrokenResourceError, wire.RemoteProtocolError):
                message = None
        if waiting.cancelled_caught:
            ping = b": keepalive\n\n"
            await send({"type": "http.response.body", "body": ping, "more_body": True})
            continue
        if message is None:
            end = _sse("end", {"reason": "logd closed the live tail (stopped or restarted)"})
            await send({"type": "http.response.body", "body": end, "more_body": True})
            return
        if "item" in message:
            chunk = _sse("item", message["item"])
        elif "notice" in message:
            chunk = _sse("notice", {"notice": message["notice"]})
        else:
            continue
        await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _watch_disconnect(receive: Receive, scope: trio.CancelScope, gone: trio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            scope.cancel()
            return


async def _error(scope: Scope, receive: Receive, send: Send, exc: WebError) -> None:
    await JSONResponse({"error": exc.message}, status_code=exc.status)(scope, receive, send)
