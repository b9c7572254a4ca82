"""The session id on the app's own console: `SessionFilter`, and the console handler
`install()` keeps or adds.

The daemon formats its files itself; this is only what the app prints for a human
watching it, in the seed's console format (`[session] - LEVEL - message`).
"""

from __future__ import annotations

import logging
import sys

from . import context

__all__ = ["CONSOLE_FORMAT", "SessionFilter", "console_handler", "console_level"]

CONSOLE_FORMAT = "[%(session_id)s] - %(levelname)s - %(message)s"


class SessionFilter(logging.Filter):
    """A logging filter that puts the logd ids on every record it passes, so any
    handler's format string can use `%(session_id)s`, `%(run_id)s` and `%(call_id)s`.

    `session_id` is `"in-progress"` outside a session; `run_id` and `call_id` are None
    when there is none. Ids the record already carries (`extra={"session_id": ...}`)
    are kept. Never rejects a record. From `dictConfig`::

        "filters": {"session": {"()": "logd_client.SessionFilter"}}
    """

    def filter(self, record: logging.LogRecord) -> bool:
        attrs = record.__dict__
        if attrs.get("session_id") is None:
            record.session_id = context.current_session()
        if attrs.get("run_id") is None:
            record.run_id = context.run_id()
        if attrs.get("call_id") is None:
            call = context.current_call()
            record.call_id = call[0] if call is not None else None
        return True


def console_level(console: bool | int | str, root_had_handlers: bool) -> int | None:
    """The level of the console handler `install(console=...)` adds, None for none.

    True (the default) adds one at WARNING only when the root logger had no handler, so
    the app keeps printing what logging's last resort printed before (now with the
    session id); False adds none; a level (number or name) adds one at that level.

    Raises:
        TypeError: `console` is not a bool, int or str.
        ValueError: `console` is an unknown level name.
    """
    if isinstance(console, bool):
        return logging.WARNING if console and not root_had_handlers else None
    if isinstance(console, int):
        return console
    if isinstance(console, str):
        level = logging.getLevelName(console.upper())
        if not isinstance(level, int):
            raise ValueError(f"console must be True, False or a level, not {console!r}")
        return level
    raise TypeError(f"console must be a bool or a level, not {type(console).__name__}")


def console_handler(level: int) -> logging.Handler:
    """A stderr handler at `level`, lines in `CONSOLE_FORMAT`, with a `SessionFilter`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    handler.addFilter(SessionFilter())
    return handler
