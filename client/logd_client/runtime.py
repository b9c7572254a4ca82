"""The process's logd runtime: its app, run and transport, and the exit hook.

Set up by `install()` or by the first LogdHandler. `event()`, `error()`, `call()` and the
lifecycle events send through it; at exit it sends `app:shutdown` (when this process
opened the run), flushes with a timeout and spools what is left.
"""

from __future__ import annotations

import atexit
import fnmatch
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from . import context
from .recordmap import build_event
from .shared import forget_shared_transports, shared_transports
from .transport import Transport

LIFECYCLE_SOURCE: Final = "logd_client"
EVENTS_OFF_ENV: Final = "LOGD_EVENTS_OFF"


class _Runtime:
    # The process's defaults for event(), error(), call() and the lifecycle events.
    lock = threading.Lock()
    app: str | None = None
    transport: Transport | None = None
    exit_flush_timeout_s: float = 5.0
    events_off: tuple[str, ...] = ()
    atexit_registered = False
    shutdown_sent = False


def default_app_name() -> str:
    """The app name when none is given: the program's file name without suffix."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    name = os.path.splitext(os.path.basename(argv0))[0]
    return name if name and name not in ("-c", "-m") else "python"


def client_version() -> str:
    """The installed logd-client version ("unknown" when not installed as a package)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("logd-client")
    except PackageNotFoundError:
        return "unknown"


def events_off_patterns(
    patterns: Iterable[str] | None, environ: Mapping[str, str]
) -> tuple[str, ...]:
    """`install(events_off=...)`, else `LOGD_EVENTS_OFF` (comma separated), as patterns.

    Raises:
        TypeError: `patterns` is a bare str or holds something else than str.
        ValueError: a pattern is empty.
    """
    if patterns is None:
        text = environ.get(EVENTS_OFF_ENV, "")
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if isinstance(patterns, str):
        raise TypeError("events_off must be a list of patterns, not a str")
    out = []
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f"events_off patterns must be str, not {type(pattern).__name__}")
        if not pattern.strip():
            raise ValueError("events_off patterns must not be empty")
        out.append(pattern.strip())
    return tuple(out)


def event_is_off(event_type: str) -> bool:
    """Whether `event_type` is switched off (and then count it as such)."""
    patterns, transport = _Runtime.events_off, _Runtime.transport
    if not patterns or not any(fnmatch.fnmatchcase(event_type, p) for p in patterns):
        return False
    if transport is not None:
        transport.count_event_off()
    return True


def activate(
    app: str,
    transport: Transport,
    *,
    exit_flush_timeout_s: float = 5.0,
    events_off: tuple[str, ...] = (),
) -> bool:
    """Make `app` and `transport` the process's defaults and open the run; idempotent.

    Args:
        app: the app name for events and lifecycle records.
        transport: where they go.
        exit_flush_timeout_s: how long the exit hook waits for acknowledgements.
        events_off: event type patterns `event()` and `error()` do not send.

    Returns:
        True iff this call set the defaults (False: they were already set).
    """
    with _Runtime.lock:
        if _Runtime.app is not None:
            return False
        _Runtime.app = app
        _Runtime.transport = transport
        _Runtime.exit_flush_timeout_s = exit_flush_timeout_s
        _Runtime.events_off = events_off
        _Runtime.shutdown_sent = False
        opened = context.open_run()
        if not _Runtime.atexit_registered:
            atexit.register(_at_exit)
            _Runtime.atexit_registered = True
    if opened:
        kv = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "argv": list(sys.argv),
            "client_version": client_version(),
        }
        send_event("app:start", LIFECYCLE_SOURCE, "", kv)
    return True


def runtime() -> tuple[str, Transport] | None:
    """The process's (app, transport), None before `install()` or a LogdHandler."""
    app, transport = _Runtime.app, _Runtime.transport
    if app is None or transport is None:
        return None
    return app, transport


def send_event(
    event_type: str,
    source: str,
    message: str,
    kv: Mapping[str, Any],
    *,
    level: str = "INFO",
    levelno: int = logging.INFO,
    exc: str | None = None,
    session_id: str | None = None,
) -> None:
    """Queue an event through the runtime; does nothing before it is set up.

    Error handling:
        Building or queueing failures are counted as dropped records, never raised.
    """
    current = runtime()
    if current is None:
        return
    app, transport = current
    try:
        record = build_event(
            app, event_type, source, message, kv, level=level, exc=exc, session_id=session_id
        )
        transport.enqueue(app, time.time_ns(), record, levelno)
    except Exception:
        transport.count_failure()


def flush_all(timeout: float, *, while_reachable: bool = False) -> bool:
    """Flush every shared transport within one overall timeout.

    Args:
        timeout: seconds to wait at most, over all transports.
        while_reachable: stop waiting for a transport as soon as its daemon has proved
            unreachable (the exit hook: what is left is spooled at once).
    """
    deadline = time.monotonic() + timeout
    ok = True
    for transport in shared_transports():
        remaining = max(0.0, deadline - time.monotonic())
        ok = transport.flush(remaining, while_reachable=while_reachable) and ok
    return ok


def _at_exit() -> None:
    # Bounded: a daemon that acknowledges gets at most the flush timeout; one that cannot
    # be reached costs one connection attempt, then what is left is spooled.
    try:
        if context.owns_run() and not _Runtime.shutdown_sent:
            _Runtime.shutdown_sent = True
            send_event("app:shutdown", LIFECYCLE_SOURCE, "", {})
        flush_all(_Runtime.exit_flush_timeout_s, while_reachable=True)
        forget_shared_transports()
    except Exception:  # never turn a clean exit into a traceback
        pass


def _after_fork_in_child() -> None:
    # The parent may have held the lock at fork time; the child starts with a free one.
    _Runtime.lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def reset_runtime() -> None:
    """Forget the defaults and run; close the shared transports, discarding what they hold
    rather than spooling it (used by tests).
    """
    with _Runtime.lock:
        _Runtime.app = None
        _Runtime.transport = None
        _Runtime.events_off = ()
        _Runtime.shutdown_sent = False
    context.forget_run()
    forget_shared_transports(spool=False)
