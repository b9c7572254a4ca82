"""logd_client: send an app's logs and canonical events to the logd daemon.

    import logging, logd_client as logd
    logd.install(app="cycling-ai")
    with logd.session("20251105_143052"):
        logging.getLogger("cycling_ai.agent").info("Processing user message")
        logd.event("llm:request", "agent", model="llama3.2", tokens_in=512)

Reading back: `read_events()`, `read_records()`, and live `follow()` / `afollow()`,
through the daemon's control socket. Depends on msgpack and platformdirs only; never
imports trio or the daemon.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import re
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from contextvars import Token
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from . import context as _context
from . import recordmap as _recordmap
from . import runtime as _runtime
from .address import configured_address
from .console import SessionFilter, console_handler, console_level
from .context import check_id, current_session, run_id, session
from .control.protocol import DaemonError
from .control.readers import follow, read_events, read_records
from .handler import LogdHandler
from .runtime import LIFECYCLE_SOURCE, events_off_patterns
from .shared import shared_transport

__all__ = [
    "DaemonError",
    "LogdHandler",
    "SessionFilter",
    "afollow",
    "call",
    "current_session",
    "end_session",
    "error",
    "event",
    "flush",
    "follow",
    "install",
    "logged",
    "read_events",
    "read_records",
    "run_id",
    "session",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")

_EVENT_TYPE = re.compile(r"[a-z0-9_]+:[a-z0-9_.:-]+")
_install_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _install_lock
    _install_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def install(
    app: str,
    level: int = logging.INFO,
    address: str | None = None,
    *,
    console: bool | int | str = True,
    events_off: Iterable[str] | None = None,
    exit_flush_timeout_s: float = 5.0,
) -> None:
    """Send this process's logging to logd: add a LogdHandler to the root logger.

    Also opens the run (or joins the parent's, through `LOGD_RUN_ID`), sends `app:start`
    when it opened it, and registers an exit hook that sends `app:shutdown`, waits for
    acknowledgements and closes the connection. A second call, or a call after a
    LogdHandler was put on the root logger, does nothing.

    The console keeps what the app had: when the root logger had no handler (so logging's
    last resort printed warnings to stderr), a stderr handler at WARNING is added whose
    lines start with the session id (`[%(session_id)s] - %(levelname)s - %(message)s`).

    Args:
        app: the app name; names its folder in the daemon's tree.
        level: the root logger is lowered to this level if it is stricter, as
            `logging.basicConfig(level=...)` would; the app's handlers already on it
            without a level get the root's old one, so its console shows what it did.
        address: `unix:/path`, `tcp://host:port` or an absolute socket path. Default:
            `LOGD_ADDRESS`, else the user's daemon socket if present, else
            `/run/logd/logd.sock`.
        console: True (default) as above; False for no console handler; a level (number
            or name) adds one at that level.
        events_off: event type patterns (`conversation:turn`, `debug:*`) whose events
            `event()` and `error()` do not send; counted in the transport's
            `statistics().events_off`. Default: `LOGD_EVENTS_OFF` (comma separated),
            else none.
        exit_flush_timeout_s: the exit hook's bound on waiting for the daemon while it
            acknowledges; when it cannot be reached, the exit hook spools at once.

    Raises:
        TypeError: `app` or `address` is not a str, or `console` not a bool or level.
        ValueError: `app` is empty, the address cannot be parsed, `console` is an
            unknown level name, or a pattern of `events_off` is empty.
    """
    check_id("app", app)
    patterns = events_off_patterns(events_off, os.environ)
    root = logging.getLogger()
    with _install_lock:
        if any(isinstance(h, LogdHandler) for h in root.handlers):
            return
        level_of_console = console_level(console, bool(root.handlers))
        transport = shared_transport(configured_address(address))
        _runtime.activate(
            app, transport, exit_flush_timeout_s=exit_flush_timeout_s, events_off=patterns
        )
        root.addHandler(LogdHandler(app=app, address=address))
        if level_of_console is not None:
            # After the LogdHandler: the filter adds attributes to the record, which the
            # LogdHandler would otherwise have to look at as `extra=` fields.
            root.addHandler(console_handler(level_of_console))
        # NOTSET on the root means "everything": already as loose as it gets.
        if root.level != logging.NOTSET and root.level > level:
            for handler in root.handlers:
                # The app's own handlers (a basicConfig console) keep showing what they
                # showed: the root's level was their filter.
                if handler.level == logging.NOTSET and not isinstance(handler, LogdHandler):
                    handler.setLevel(root.level)
            root.setLevel(level)


def _check_source(source: object) -> str:
    if not isinstance(source, str):
        raise TypeError(f"source must be a str, not {type(source).__name__}")
    if not source or "|" in source or "\n" in source or "\r" in source:
        raise ValueError(f"source must be non-empty, without '|' or newlines: {source!r}")
    return source


def event(event_type: str, source: str, message: str = "", **kv: Any) -> None:
    """Record a canonical event (a line in the app's `events.log` and the index).

    Args:
        event_type: `category:action`, matching `[a-z0-9_]+:[a-z0-9_.:-]+`.
        source: the component, without `|` or newlines.
        message: free text.
        **kv: event fields. Values msgpack cannot carry are sent as `str()`.
            `session_id=`, `call_id=`, `bot_id=` given as str set the record's ids.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: `event_type` or `source` is malformed.

    Error handling:
        Before `install()` (or a LogdHandler) the event is checked and then ignored,
        as a logger without handlers would; delivery failures are counted, not raised.
    """
    if not isinstance(event_type, str):
        raise TypeError(f"event_type must be a str, not {type(event_type).__name__}")
    if not _EVENT_TYPE.fullmatch(event_type):
        raise ValueError(f"event_type must look like category:action, got {event_type!r}")
    _check_source(source)
    if not isinstance(message, str):
        raise TypeError(f"message must be a str, not {type(message).__name__}")
    if _runtime.event_is_off(event_type):
        return
    _runtime.send_event(event_type, source, message, kv)


def error(source: str, exc: BaseException, context: str = "") -> None:
    """Record an `error:runtime` event for an exception, at level ERROR.

    Args:
        source: the component, without `|` or newlines.
        exc: the exception; its traceback is sent as `exc`.
        context: what was going on; the message becomes `context - ExcType: text`.

    Raises:
        TypeError: `exc` is not an exception, or `context` not a str.
        ValueError: `source` is malformed.
    """
    _check_source(source)
    if not isinstance(exc, BaseException):
        raise TypeError(f"exc must be an exception, not {type(exc).__name__}")
    if not isinstance(context, str):
        raise TypeError(f"context must be a str, not {type(context).__name__}")
    if _runtime.event_is_off("error:runtime"):
        return
    _runtime.send_event(
        "error:runtime",
        source,
        _recordmap.describe_exception(exc, context),
        {},
        level="ERROR",
        levelno=logging.ERROR,
        exc=_recordmap.format_exception(exc),
    )


def end_session(session_id: str) -> None:
    """Send `session:end` for a session, so the daemon closes it now, not at idle timeout.

    Args:
        session_id: the session to end (need not be the current one).

    Raises:
        TypeError: `session_id` is not a str.
        ValueError: `session_id` is empty.
    """
    check_id("session_id", session_id)
    _runtime.send_event("session:end", LIFECYCLE_SOURCE, "", {}, session_id=session_id)


class call:  # lower case: used as `with logd.call(id):`, like a function
    """Context manager for one call (phone call, job): its records go to the call file.

    Sends `call:start` on entry and `call:end` on exit, with `duration_ms` and, when
    leaving by an exception, `error` (`ExcType: text`). The ids are checked when the
    object is created, so mistakes raise at the call site.

    Args:
        call_id: a non-empty str.
        bot_id: a non-empty str; `"unknown"` by default.

    Raises:
        TypeError: an id is not a str.
        ValueError: an id is empty.
    """

    __slots__ = ("_bot_id", "_call_id", "_started", "_tokens")

    def __init__(self, call_id: str, bot_id: str = "unknown") -> None:
        self._call_id = check_id("call_id", call_id)
        self._bot_id = check_id("bot_id", bot_id)
        self._tokens: list[tuple[Token[tuple[str, str] | None], float]] = []

    def __enter__(self) -> str:
        token = _context.push_call(self._call_id, self._bot_id)
        self._tokens.append((token, time.perf_counter()))
        _runtime.send_event("call:start", LIFECYCLE_SOURCE, "", {})
        return self._call_id

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, started = self._tokens.pop()
        try:
            kv: dict[str, Any] = {"duration_ms": round((time.perf_counter() - started) * 1000, 3)}
            if exc is not None:
                kv["error"] = _recordmap.describe_exception(exc)
            _runtime.send_event("call:end", LIFECYCLE_SOURCE, "", kv)
        finally:
            _context.pop_call(token)


def logged(source: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorator: report exceptions escaping a function through `error()`, then re-raise.

    Works on plain and on `async def` functions. The context is the function's
    `__qualname__`. Only `Exception` is reported: `KeyboardInterrupt`, `SystemExit` and
    cancellation are not errors of the function.

    Args:
        source: the component, checked now.

    Returns:
        The decorator.

    Raises:
        ValueError: `source` is malformed.
    """
    _check_source(source)

    def decorate(func: Callable[_P, _R]) -> Callable[_P, _R]:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Any:
                try:
                    return await func(*args, **kwargs)
                except Exception as exc:
                    error(source, exc, context=func.__qualname__)
                    raise

            return cast(Callable[_P, _R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                error(source, exc, context=func.__qualname__)
                raise

        return wrapper

    return decorate


def flush(timeout: float = 5.0) -> bool:
    """Wait until everything logged so far is acknowledged by the daemon.

    Args:
        timeout: seconds to wait at most, over all connections.

    Returns:
        True iff every record queued before the call was acknowledged (also when
        nothing was ever queued).
    """
    return _runtime.flush_all(timeout)


def afollow(
    *,
    app: str | None = None,
    run: str | None = None,
    session: str | None = None,
    call: str | None = None,
    events: str | None = None,
    n: int = 0,
    control: str | None = None,
) -> AsyncGenerator[dict[str, Any], None]:
    """`follow()` as an asyncio async iterator: `async for r in afollow(session=sid)`.

    See `logd_client.control.aio.afollow`; imported on first use, so apps that never
    follow do not load asyncio.
    """
    from .control.aio import afollow as _afollow

    return _afollow(
        app=app, run=run, session=session, call=call, events=events, n=n, control=control
    )
