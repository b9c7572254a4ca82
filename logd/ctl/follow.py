"""`logd-ctl tail -f`: print the backlog, then live records, and carry on across a daemon
restart without losing or repeating a record.

Blocking, stdlib + msgpack only. When the connection drops, it says so once on stderr,
reconnects with backoff and asks for the records written meanwhile: those after the
newest it showed, less the ones it already showed (`logd.control.tailing.Cursor`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TextIO

from logd.control.requests import request
from logd.control.tailing import Cursor
from logd.ctl.connection import (
    REPLY_TIMEOUT_S,
    ControlConnection,
    DaemonError,
    Unavailable,
    reply_ok,
)

__all__ = ["FIRST_RETRY_S", "MAX_RETRY_S", "follow"]

FIRST_RETRY_S = 0.2
MAX_RETRY_S = 3.0
# What a dropped conversation looks like; any other error reply ends the follow.
_LOST = frozenset({"disconnected", "timeout"})
# A resume that found nothing shown and nothing in the backlog asks for everything.
_EVERYTHING = "1970-01-01T00:00:00.000Z"


class ItemPrinter(Protocol):
    def item(self, item: Mapping[str, Any]) -> None: ...


class _Lost(Exception):
    """The daemon went away (stopped, restarted, or the socket broke)."""


def _say(err: TextIO, text: str) -> None:
    print(f"logd-ctl: {text}", file=err, flush=True)


def follow(
    connect: Callable[[], ControlConnection],
    args: Mapping[str, Any],
    printer: ItemPrinter,
    *,
    err: TextIO = sys.stderr,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Follow until interrupted; returns the exit code only on an error reply.

    Args:
        connect: opens a conversation with the daemon (raising `Unavailable`).
        args: the `tail` request's arguments, `follow` set.
        printer: where items go.

    Raises:
        Unavailable: no daemon at the very start (later it is waited for).
        DaemonError: the daemon refused the request.
    """
    cursor = Cursor()
    ask = dict(args)
    conn: ControlConnection | None = connect()
    started = [False]  # set once the first backlog is shown: from then on, resume
    while True:
        try:
            assert conn is not None
            _follow_once(conn, ask, printer, cursor, started, err)
        except _Lost:
            pass
        finally:
            if conn is not None:
                conn.close()
                conn = None
        _say(
            err, "lost the connection to logd; reconnecting, records written meanwhile will follow"
        )
        conn = _reconnect(connect, sleep)
        if started[0]:
            resume = cursor.resume_args()
            ask["after"] = resume["after"] or _EVERYTHING
            ask["skip"] = resume["skip"]


def _reconnect(
    connect: Callable[[], ControlConnection], sleep: Callable[[float], None]
) -> ControlConnection:
    delay = FIRST_RETRY_S
    while True:
        sleep(delay)
        try:
            return connect()
        except Unavailable:
            delay = min(delay * 2, MAX_RETRY_S)


def _follow_once(
    conn: ControlConnection,
    ask: dict[str, Any],
    printer: ItemPrinter,
    cursor: Cursor,
    started: list[bool],
    err: TextIO,
) -> None:
    """One conversation: the request, its backlog, then live records until it drops."""
    try:
        conn.set_timeout(REPLY_TIMEOUT_S)
        conn.send(request("tail", **ask))
        reply = reply_ok(conn.receive())
        items = reply.get("result") or []
        if started[0]:
            for item in items:
                cursor.note(item)
                printer.item(item)
        else:
            started[0] = True
            cursor.start(reply.get("floor"), reply.get("floor_keys") or [])
            if reply.get("run") is not None:
                ask["run"] = reply["run"]
            if reply.get("waiting"):
                _say(err, str(reply["waiting"]))
            for item in items:
                printer.item(item)
        conn.set_timeout(None)  # live records may be minutes apart
        while True:
            message = conn.receive()
            if message is None:
                raise _Lost
            if "item" in message:
                cursor.note(message["item"])
                printer.item(message["item"])
            elif "notice" in message:
                _say(err, str(message["notice"]))
            else:
                reply_ok(message)  # an error reply ends the follow; anything else is ignored
    except DaemonError as exc:
        if exc.code in _LOST:
            raise _Lost from None
        raise
