"""Reading the daemon's records and events back from inside the app, blocking.

`read_events()` and `read_records()` are one request each; `follow()` is a live `tail -f`
that survives a daemon restart (`TailFollow`). The control socket is found as `logd-ctl`
finds it (`connection.control_candidates`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from .connection import REPLY_TIMEOUT_S, ControlConnection, Unavailable, connect
from .connection import control_candidates as _candidates
from .items import public
from .protocol import LOST_CODES, DaemonError, TailFollow, request

__all__ = ["FIRST_RETRY_S", "MAX_RETRY_S", "follow", "read_events", "read_records", "time_arg"]

FIRST_RETRY_S = 0.2
MAX_RETRY_S = 3.0


def time_arg(value: str | datetime | None) -> str | None:
    """`since`/`until` as the daemon takes them: `1h`, `30m`, ISO text, or a datetime
    (a naive one is local time, as the daemon reads naive ISO text).

    Raises:
        TypeError: neither a str nor a datetime.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.astimezone().isoformat()
    raise TypeError(f"a time must be a str or a datetime, not {type(value).__name__}")


def control_candidates(control: str | None) -> list[str]:
    """The control sockets to try: `control`, else `LOGD_CONTROL`, else the user's and the
    system's (SPEC §10)."""
    if control is not None and not isinstance(control, str):
        raise TypeError(f"control must be a str, not {type(control).__name__}")
    return _candidates(control, os.environ)


def _call(control: str | None, payload: dict[str, Any]) -> Any:
    with connect(control_candidates(control), REPLY_TIMEOUT_S) as conn:
        return conn.call(payload)


def read_events(
    *,
    app: str | None = None,
    type: str | None = None,  # the name `logd-ctl events --type` uses
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    session: str | None = None,
    limit: int = 1000,
    control: str | None = None,
) -> list[dict[str, Any]]:
    """The newest events of the index, oldest first, as `logd-ctl events --json` prints
    them.

    Args:
        app: only this app's.
        type: an event type or a wildcard pattern, e.g. `llm:*`.
        since: `1h`, `30m`, `2d` ago, ISO text or a datetime.
        until: likewise.
        session: only this session's.
        limit: at most this many (the newest).
        control: the control socket; default as `logd-ctl` finds it.

    Raises:
        ConnectionError: no daemon to talk to (`PermissionError`, a subclass, when the
            control socket refuses this user; the message names it and the setting).
        DaemonError: the daemon refused the request (a bad time, say).
    """
    payload = request(
        "events",
        app=app,
        type=type,
        since=time_arg(since),
        until=time_arg(until),
        session=session,
        limit=limit,
    )
    return list(_call(control, payload) or [])


def read_records(
    *,
    app: str | None = None,
    run: str | None = None,
    session: str | None = None,
    call: str | None = None,
    n: int = 10,
    control: str | None = None,
) -> list[dict[str, Any]]:
    """The newest `n` records, oldest first, as `logd-ctl tail --json` prints them.

    Args:
        app, run, session, call: filters; they combine with AND (`run="current"` works).
        n: how many.
        control: the control socket; default as `logd-ctl` finds it.

    Raises:
        ConnectionError: as `read_events()`.
        DaemonError: the daemon refused the request (an unknown run, say).
    """
    payload = request("tail", app=app, run=run, session=session, call=call, n=n)
    return [public(item) for item in _call(control, payload) or []]


def follow(
    *,
    app: str | None = None,
    run: str | None = None,
    session: str | None = None,
    call: str | None = None,
    events: str | None = None,
    n: int = 0,
    control: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Records as the daemon writes them, a blocking iterator (a live `logd-ctl tail -f`).

    Starts with the newest `n` records already written, then waits for new ones. An id
    not seen yet (a session about to start) is waited for. When the daemon stops or
    restarts, it reconnects with backoff and goes on with the records written meanwhile:
    none missed, none twice. (A reader too slow for the live stream is the exception: the
    daemon skips records for it rather than slow the writers, and says so in a notice
    that is not passed on.)

    Args:
        app, run, session, call: filters, combined with AND.
        events: only events whose type matches, e.g. `llm:*`.
        n: records from before the call to start with.
        control: the control socket; default as `logd-ctl` finds it.

    Returns:
        A generator of `tail --json` record dicts.

    Raises:
        ConnectionError: no daemon when iteration starts (later it is waited for).
        DaemonError: the daemon refused the request.

    Resource handling:
        The generator owns its connection: `close()` it, or leave the `for`, to close it.
    """
    candidates = control_candidates(control)
    args = {"app": app, "run": run, "session": session, "call": call, "events": events}
    state = TailFollow({**{k: v for k, v in args.items() if v is not None}, "n": n, "wait": True})
    conn: ControlConnection | None = connect(candidates, REPLY_TIMEOUT_S)
    try:
        while True:
            assert conn is not None
            yield from _one_conversation(conn, state)
            conn.close()
            state.connection_lost()
            conn = _reconnect(candidates)
    finally:
        if conn is not None:
            conn.close()


def _one_conversation(conn: ControlConnection, state: TailFollow) -> Iterator[dict[str, Any]]:
    """Yield the conversation's records until it drops (then return)."""
    try:
        conn.set_timeout(REPLY_TIMEOUT_S)
        conn.send(state.request())
        items, _ = state.receive_reply(conn.receive())
        conn.set_timeout(None)  # live records may be minutes apart
        for item in items:
            yield public(item)
        while True:
            message = conn.receive()
            if message is None:
                return
            item, _ = state.receive_message(message)
            if item is not None:
                yield public(item)
    except DaemonError as exc:
        if exc.code not in LOST_CODES:
            raise


def _reconnect(candidates: list[str]) -> ControlConnection:
    delay = FIRST_RETRY_S
    while True:
        time.sleep(delay)
        try:
            return connect(candidates, REPLY_TIMEOUT_S)
        except Unavailable:
            delay = min(delay * 2, MAX_RETRY_S)
