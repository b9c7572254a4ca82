"""The control socket from `logd web`: one-shot requests, and `tail -f` as Server-Sent Events.

Each browser that follows a run, session or call gets its own control connection with
a `tail` request (`follow=True`); the daemon sends the backlog, then every new matching
record as it is written. This module relays those maps as SSE `item` events until the
browser goes away (then the control connection is closed, which unsubscribes it).

When the daemon stops or restarts, the stream stays open: a `lost` event, then it
reconnects with backoff and asks for what it missed (`tailing.Cursor`, as `logd-ctl tail
-f` does), a `resumed` event, and on. Each item's SSE ``id`` marks the newest record
shown, so a browser that lost `logd web` itself resumes from there (``Last-Event-ID``).
Requires trio: `logd web` runs on hypercorn's trio worker.
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
from logd.control.tailing import Cursor, Key, item_key
from logd.ingest.streams import next_event
from logd.web.data import BadRequest, NotFound, WebError

__all__ = ["ControlUnavailable", "TailEvents", "ask"]

REPLY_TIMEOUT_S = 30.0
KEEPALIVE_S = 15.0
RETRY_MS = 1000
MAX_STREAMS = 64
FIRST_RECONNECT_S = 0.2
MAX_RECONNECT_S = 3.0
# A mark names the keys shown at the newest millisecond; more than this and no id is sent
# (the browser keeps the previous one: a reconnect may then show a few records again).
MAX_MARK_KEYS = 32
MAX_MARK_CHARS = 8192
# A resume that found nothing shown and nothing in the backlog asks for everything.
_EVERYTHING = "1970-01-01T00:00:00.000Z"


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


def _sse(event: str, data: Any, event_id: str | None = None) -> bytes:
    # json.dumps escapes newlines, so one `data:` line always carries the whole value.
    payload = json.dumps(data, ensure_ascii=False, default=str)
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {payload}\n\n".encode()


class Mark:
    """The newest record a browser was sent, and how many of each key at that time: as
    an SSE id, it lets a browser that reconnects to `logd web` ask for what follows."""

    def __init__(self) -> None:
        self.newest = ""
        self.keys: dict[Key, int] = {}

    def note(self, item: dict[str, Any]) -> str | None:
        """Count the item; the id to send with it (None: keep the previous one)."""
        key = item_key(item)
        if key[0] > self.newest:
            self.newest, self.keys = key[0], {}
        if key[0] == self.newest:
            self.keys[key] = self.keys.get(key, 0) + 1
        if len(self.keys) > MAX_MARK_KEYS:
            return None
        text = json.dumps([self.newest, [[*k, n] for k, n in self.keys.items()]])
        return text if len(text) <= MAX_MARK_CHARS else None

    @staticmethod
    def resume_args(text: str) -> dict[str, Any] | None:
        """``after``/``skip`` from a ``Last-Event-ID``; None when it is not one of ours."""
        try:
            newest, skip = json.loads(text)
        except (ValueError, TypeError):
            return None
        if not isinstance(newest, str) or not newest or not isinstance(skip, list):
            return None
        return {"after": newest, "skip": skip}


class _Streams:
    """How many live tails are open: each holds a control connection in the daemon."""

    open = 0


class TailEvents(Response):
    """`text/event-stream` of one control-socket `tail -f` (filters as `logd-ctl tail`).

    Errors before the stream starts (no daemon, unknown run) are plain JSON replies.

    Resource handling: the control connection lives exactly as long as the response.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        control_path: str | os.PathLike[str],
        args: dict[str, Any],
        last_event_id: str | None = None,
    ) -> None:
        super().__init__(status_code=200)
        self.control_path = os.fspath(control_path)
        self.args = dict(args)
        self.resuming = False
        resume = Mark.resume_args(last_event_id) if last_event_id else None
        if resume is not None:
            self.args.pop("n", None)
            self.args.update(resume)
            self.resuming = True

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
        decoder = wire.MapDecoder()
        try:
            first = await _start_tail(stream, decoder, self.args)
            if first is None or not first.get("ok"):
                problem = (
                    _refusal(first.get("error"))
                    if first is not None
                    else ControlUnavailable("logd did not start the live tail")
                )
                await stream.aclose()
                await _error(scope, receive, send, problem)
                return
        except BaseException:
            await stream.aclose()
            raise
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
        follow = _Follow(self.control_path, self.args, send)
        gone = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_disconnect, receive, nursery.cancel_scope, gone)
            await follow.run(stream, decoder, first, resuming=self.resuming)
            nursery.cancel_scope.cancel()
        if not gone.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _start_tail(
    stream: trio.SocketStream, decoder: wire.MapDecoder, args: dict[str, Any]
) -> dict[str, Any] | None:
    """Send the `tail -f` request; its first reply (backlog), or None if none came."""
    try:
        with trio.fail_after(REPLY_TIMEOUT_S):
            await stream.send_all(wire.encode_map(control.request("tail", follow=True, **args)))
            return await _next_map(stream, decoder)
    except (trio.TooSlowError, trio.BrokenResourceError, wire.RemoteProtocolError):
        return None


class _Follow:
    """One browser's live tail across daemon restarts: relay, and on a lost connection
    reconnect and ask for the records written meanwhile, less those already sent."""

    def __init__(self, control_path: str, args: dict[str, Any], send: Send) -> None:
        self.control_path = control_path
        self.args = dict(args)
        self.send = send
        self.cursor = Cursor()
        self.mark = Mark()

    async def _chunk(self, body: bytes) -> None:
        await self.send({"type": "http.response.body", "body": body, "more_body": True})

    def _item(self, item: dict[str, Any]) -> bytes:
        return _sse("item", item, self.mark.note(item))

    async def run(
        self,
        stream: trio.SocketStream,
        decoder: wire.MapDecoder,
        first: dict[str, Any],
        *,
        resuming: bool,
    ) -> None:
        backlog = first.get("result") or []
        if resuming:
            # A browser back after losing `logd web`: its mark is where the cursor starts.
            after = self.args.get("after")
            self.cursor.start(after, self.args.get("skip") or [])
            for item in backlog:
                self.cursor.note(item)
        else:
            self.cursor.start(first.get("floor"), first.get("floor_keys") or [])
        if first.get("run") is not None:
            self.args["run"] = first["run"]  # `current` stays the run it was
        try:
            opening = f"retry: {RETRY_MS}\n\n".encode()
            opening += b"".join(self._item(i) for i in backlog)
            opening += _sse("ready", {"backlog": len(backlog), "resumed": resuming})
            await self._chunk(opening)
            while True:
                await self._relay(stream, decoder)
                await stream.aclose()
                lost = {"reason": "logd closed the live tail (stopped or restarted)"}
                await self._chunk(_sse("lost", lost))
                stream, decoder, missed = await self._reconnect()
                chunk = b"".join(self._item(i) for i in missed)
                await self._chunk(chunk + _sse("resumed", {"missed": len(missed)}))
        finally:
            await stream.aclose()

    async def _reconnect(self) -> tuple[trio.SocketStream, wire.MapDecoder, list[Any]]:
        delay = FIRST_RECONNECT_S
        while True:
            await trio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_S)
            resume = self.cursor.resume_args()
            args = {**self.args, "after": resume["after"] or _EVERYTHING, "skip": resume["skip"]}
            args.pop("n", None)
            try:
                stream = await _connect(self.control_path)
            except ControlUnavailable:
                continue
            decoder = wire.MapDecoder()
            try:
                reply = await _start_tail(stream, decoder, args)
            except BaseException:
                await stream.aclose()
                raise
            if reply is None or not reply.get("ok"):
                await stream.aclose()
                continue
            missed = list(reply.get("result") or [])
            for item in missed:
                self.cursor.note(item)
            return stream, decoder, missed

    async def _relay(self, stream: trio.SocketStream, decoder: wire.MapDecoder) -> None:
        """Forward live items until the daemon closes the tail; a comment keeps proxies open."""
        while True:
            message: dict[str, Any] | None = None
            with trio.move_on_after(KEEPALIVE_S) as waiting:
                try:
                    message = await _next_map(stream, decoder)
                except (trio.BrokenResourceError, wire.RemoteProtocolError):
                    message = None
            if waiting.cancelled_caught:
                await self._chunk(b": keepalive\n\n")
                continue
            if message is None:
                return
            if "item" in message:
                self.cursor.note(message["item"])
                chunk = self._item(message["item"])
            elif "notice" in message:
                chunk = _sse("notice", {"notice": message["notice"]})
            else:
                continue
            await self._chunk(chunk)


async def _watch_disconnect(receive: Receive, scope: trio.CancelScope, gone: trio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            scope.cancel()
            return


async def _error(scope: Scope, receive: Receive, send: Send, exc: WebError) -> None:
    await JSONResponse({"error": exc.message}, status_code=exc.status)(scope, receive, send)
