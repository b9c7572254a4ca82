"""`logd-ctl tail -f`: print the backlog, then live records, and carry on across a daemon
restart without losing or repeating a record.

Blocking, stdlib + msgpack only. When the connection drops, it says so once on stderr,
reconnects with backoff and asks for the records written meanwhile: those after the
newest it showed, less the ones it already showed. The resume itself is the client's
(`logd_client.control.protocol.TailFollow`), which `logd_client.follow()` uses too.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TextIO

from logd_client.control.connection import (
    REPLY_TIMEOUT_S,
    ControlConnection,
    DaemonError,
    Unavailable,
)
from logd_client.control.protocol import LOST_CODES, TailFollow

__all__ = ["FIRST_RETRY_S", "MAX_RETRY_S", "follow"]

FIRST_RETRY_S = 0.2
MAX_RETRY_S = 3.0


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
    state = TailFollow(args)
    conn: ControlConnection | None = connect()
    while True:
        try:
            assert conn is not None
            _follow_once(conn, state, printer, err)
        except _Lost:
            pass
        finally:
            if conn is not None:
                conn.close()
                conn = None
        _say(
            err, "lost the connection to logd; reconnecting, records written meanwhile will follow"
        )
        state.connection_lost()
        conn = _reconnect(connect, sleep)


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
    conn: ControlConnection, state: TailFollow, printer: ItemPrinter, err: TextIO
) -> None:
    """One conversation: the request, its backlog, then live records until it drops."""
    try:
        conn.set_timeout(REPLY_TIMEOUT_S)
        conn.send(state.request())
        items, notice = state.receive_reply(conn.receive())
        if notice is not None:
            _say(err, notice)
        for item in items:
            printer.item(item)
        conn.set_timeout(None)  # live records may be minutes apart
        while True:
            message = conn.receive()
            if message is None:
                raise _Lost
            item, notice = state.receive_message(message)
            if notice is not None:
                _say(err, notice)
            if item is not None:
                printer.item(item)
    except DaemonError as exc:
        if exc.code in LOST_CODES:
            raise _Lost from None
        raise
