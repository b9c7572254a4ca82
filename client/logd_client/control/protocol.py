"""The control socket's request/reply shapes as the daemon's control server speaks them.

A request is `{"cmd": name, "args": {...}}`; a reply is `{"ok": true, "result": ...}` or
`{"ok": false, "error": {"code", "message"}}`; a following `tail` then sends `{"item": ...}`
and `{"notice": ...}` maps. Each map travels in the ingest framing (`logd_client.wire`).
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .items import Cursor

__all__ = ["LOST_CODES", "DaemonError", "TailFollow", "reply_ok", "reply_result", "request"]


class DaemonError(Exception):
    """The daemon replied with a coded error, or the conversation broke off.

    Attributes:
        code: a short stable string: the daemon's error code, or `disconnected`,
            `timeout`, `bad-reply`.
        message: the text, without the code.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def request(command: str, **args: Any) -> dict[str, Any]:
    """The wire form of a request (absent arguments, given as None, are left out)."""
    return {"cmd": command, "args": {k: v for k, v in args.items() if v is not None}}


def reply_ok(reply: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """An ok reply as it came (its `result` and anything beside it).

    Raises:
        DaemonError: an error reply (its code and message), an unexpected one, or None
            (the daemon closed the connection).
    """
    if reply is None:
        raise DaemonError("disconnected", "logd closed the connection without replying")
    if reply.get("ok") is True:
        return reply
    error = reply.get("error")
    if isinstance(error, Mapping):
        code, message = str(error.get("code", "error")), str(error.get("message", ""))
        raise DaemonError(code, message or code)
    raise DaemonError("bad-reply", f"unexpected reply from logd: {str(reply)[:200]}")


def reply_result(reply: Mapping[str, Any] | None) -> Any:
    """The `result` of an ok reply.

    Raises:
        DaemonError: as `reply_ok`.
    """
    return reply_ok(reply).get("result")


# What a dropped conversation looks like; any other error reply ends a follow.
LOST_CODES = frozenset({"disconnected", "timeout"})
# A resume that found nothing shown and nothing in the backlog asks for everything.
_EVERYTHING = "1970-01-01T00:00:00.000Z"


class TailFollow:
    """One `tail -f` across any number of conversations (the daemon may restart between
    them): which request to send next, and what each map received means.

    The first conversation's reply gives the backlog and where it stood (its `floor`);
    every record shown after it is noted in a `Cursor`; after a reconnect the request
    asks for the records written meanwhile (`after`/`skip`), so nothing is shown twice
    and nothing is missed. Pure: the caller does the I/O, blocking (`follow()`,
    `logd-ctl tail -f`) or asyncio (`afollow()`).

    Args:
        args: the `tail` request's arguments; `follow` is set here.
    """

    def __init__(self, args: Mapping[str, Any]) -> None:
        self.cursor = Cursor()
        self.started = False
        self._ask = {**args, "follow": True}

    def request(self) -> dict[str, Any]:
        """The request that opens the next conversation."""
        return request("tail", **self._ask)

    def receive_reply(self, reply: Mapping[str, Any] | None) -> tuple[list[Any], str | None]:
        """The conversation's first reply: the records to show, and a notice (`waiting`).

        Raises:
            DaemonError: the daemon refused the request (or closed the connection:
                code `disconnected`).
        """
        ok_reply = reply_ok(reply)
        items = list(ok_reply.get("result") or [])
        if self.started:
            for item in items:
                self.cursor.note(item)
            return items, None
        self.started = True
        self.cursor.start(ok_reply.get("floor"), ok_reply.get("floor_keys") or [])
        if ok_reply.get("run") is not None:
            self._ask["run"] = ok_reply["run"]  # `current` stays the run it meant
        waiting = ok_reply.get("waiting")
        return items, str(waiting) if waiting else None

    def receive_message(self, message: Mapping[str, Any]) -> tuple[Any, str | None]:
        """A map received after the reply: (a live record or None, a notice or None).

        Raises:
            DaemonError: an error reply ends the follow.
        """
        if "item" in message:
            self.cursor.note(message["item"])
            return message["item"], None
        if "notice" in message:
            return None, str(message["notice"])
        reply_ok(message)  # anything else that is not an error is ignored
        return None, None

    def connection_lost(self) -> None:
        """The conversation broke off: the next request resumes after what was shown."""
        if self.started:
            resume = self.cursor.resume_args()
            self._ask["after"] = resume["after"] or _EVERYTHING
            self._ask["skip"] = resume["skip"]
