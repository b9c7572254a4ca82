"""LogdHandler, the record maps it sends, and the process's logd runtime.

Turning a LogRecord into a record map happens on the app's thread for every log call,
so it is kept cheap; delivery is the transport's business. The runtime is the app name,
run and transport that `event()` and friends use, set up by `install()` or by the first
LogdHandler, and the atexit hook that closes the run.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from typing import Any, Final

from . import context
from .address import configured_address
from .batch import RECORD_OVERHEAD_BYTES, value_bytes
from .transport import Transport, forget_shared_transports, shared_transport, shared_transports

LIFECYCLE_SOURCE: Final = "logd_client"

# Attributes every LogRecord has (plus what Formatter.format() and Python 3.12 add):
# anything else on a record came from `extra=` and is sent as an extra field.
_STANDARD_ATTRS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_STANDARD_COUNT: Final = len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
# Keys the handler sets itself; an `extra=` field may not replace them.
_RESERVED_KEYS: Final = frozenset(
    {"msg", "level", "logger", "app", "run_id", "pid", "thread", "thread_name", "exc"}
    | {"event_type", "kv"}
)
_PLAIN_TYPES: Final = (str, int, float, bool, type(None), list, dict)
# A handler record's estimated bytes beyond its message, logger name, call id, traceback
# and extras: keys, level, app, run id, session id, pid, thread and its name.
_RECORD_BYTES: Final = RECORD_OVERHEAD_BYTES + 64
# The context's variables' own getters, bound once: `context.session_id_or_none()` and
# `context.current_call()` wrap exactly these, and a Python call each costs every record.
_session_id = context._session_var.get
_current_call = context._call_var.get
_formatter = logging.Formatter()


def plain_value(value: object) -> object:
    """Return `value` if msgpack maps it naturally, else `str(value)`.

    A broken `__str__` gives a placeholder rather than losing the whole record.
    """
    if isinstance(value, _PLAIN_TYPES):
        return value
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def build_record(record: logging.LogRecord, app: str, run_id: str | None) -> dict[str, Any]:
    """Turn a LogRecord into the record map logd expects (SPEC §3).

    Args:
        record: the record being emitted.
        app: the app name.
        run_id: the run id, or None to leave it out.

    Returns:
        A new dict with `msg`, `level`, `logger`, `app` and, when present, `run_id`,
        `session_id`, `call_id`, `bot_id`, `pid`, `thread`, `thread_name`, `exc` and the
        `extra=` fields (not a plain value: `str()` of it).
    """
    return _build(record, app, run_id)[0]


def _build(
    record: logging.LogRecord, app: str, run_id: str | None
) -> tuple[dict[str, Any], int, bool]:
    """`build_record()`, plus the record's estimated size and whether it is plain.

    Both come almost free here, where every value is at hand, rather than from a walk over
    the finished map: the size counts against the transport's memory bounds, and a plain
    record (no `extra=` fields: only str and int values) skips sanitising when encoded.
    """
    try:
        msg = record.getMessage()
    except Exception as exc:  # a bad format string must still leave a trace
        msg = f"{record.msg!s} (logd_client: formatting failed: {exc!r}; args={record.args!r})"
    name, process, thread = record.name, record.process, record.thread
    out: dict[str, Any]
    if run_id is not None and process is not None and thread is not None:
        # The usual fields in one literal, which Python builds at the right size at once.
        out = {
            "msg": msg,
            "level": record.levelname,
            "logger": name,
            "app": app,
            "run_id": run_id,
            "pid": process,
            "thread": thread,
            "thread_name": record.threadName,
        }
    else:
        out = {"msg": msg, "level": record.levelname, "logger": name, "app": app}
        if run_id is not None:
            out["run_id"] = run_id
        if process is not None:
            out["pid"] = process
        if thread is not None:
            out["thread"] = thread
            out["thread_name"] = record.threadName
    size = _RECORD_BYTES + len(msg) + len(name)
    session_id = _session_id()
    if session_id is not None:
        out["session_id"] = session_id
    call = _current_call()
    if call is not None:
        out["call_id"], out["bot_id"] = call
        size += len(call[0])
    if record.exc_info or record.exc_text or record.stack_info:
        out["exc"] = exc_text = _exception_text(record)
        size += len(exc_text)
    attrs = record.__dict__
    if len(attrs) > _STANDARD_COUNT:  # skip the set difference when there is no extra
        extras = [key for key in attrs.keys() - _STANDARD_ATTRS if key not in _RESERVED_KEYS]
        for key in extras:
            _add_extra(out, key, attrs[key])
            size += len(key) + value_bytes(out.get(key))
        return out, size, not extras
    return out, size, True


def _add_extra(out: dict[str, Any], key: str, value: object) -> None:
    if key in ("session_id", "call_id", "bot_id"):
        # An explicit id beats the context; seed 001's filter sets "in-progress" on every
        # record, which means "no session", not a session of that name.
        if value is None or value == context.DEFAULT_SESSION:
            return
        out[key] = str(value)
        return
    out[key] = plain_value(value)


def _exception_text(record: logging.LogRecord) -> str:
    if record.exc_info and not record.exc_text:
        # Cached on the record as Formatter does, so other handlers reuse it.
        record.exc_text = _formatter.formatException(record.exc_info)
    parts = [record.exc_text] if record.exc_text else []
    if record.stack_info:
        parts.append(_formatter.formatStack(record.stack_info))
    return "\n".join(parts)


def build_event(
    app: str,
    event_type: str,
    source: str,
    message: str,
    kv: Mapping[str, Any],
    *,
    level: str = "INFO",
    exc: str | None = None,
    session_id: str | None = None,
) -> dict[str, Any]:
    """Build the record map of a canonical event (no validation: see `event()`).

    Args:
        app: the app name.
        event_type: `category:action`.
        source: the component, sent as `logger`.
        message: the event's text.
        kv: event fields; `session_id`, `call_id` and `bot_id` among them (str values)
            become the record's ids instead, as seed 002's `log_event(..., session_id=x)`
            means.
        level: the level name.
        exc: a formatted traceback.
        session_id: the session, overriding the context's.

    Returns:
        The record map, with ids from the context and the origin (pid, thread).
    """
    out: dict[str, Any] = {"msg": message, "level": level, "logger": source, "app": app}
    run_id = context.run_id()
    if run_id is not None:
        out["run_id"] = run_id
    if session_id is None:
        session_id = context.session_id_or_none()
    if session_id is not None:
        out["session_id"] = session_id
    call = context.current_call()
    if call is not None:
        out["call_id"], out["bot_id"] = call
    out["event_type"] = event_type
    fields: dict[str, Any] = {}
    for key, value in kv.items():
        if key in ("session_id", "call_id", "bot_id") and isinstance(value, str) and value:
            out[key] = value
        else:
            fields[key] = plain_value(value)
    if fields:
        out["kv"] = fields
    out["pid"] = os.getpid()
    thread = threading.current_thread()
    out["thread"] = threading.get_ident()
    out["thread_name"] = thread.name
    if exc is not None:
        out["exc"] = exc
    return out


def describe_exception(exc: BaseException, context_text: str = "") -> str:
    """Return `ExcType: text`, prefixed `context - ` when given (seed 002's log_error)."""
    message = f"{type(exc).__name__}: {exc}"
    return f"{context_text} - {message}" if context_text else message


def format_exception(exc: BaseException) -> str:
    """Return the formatted traceback of `exc`, chained causes included."""
    return "".join(traceback.format_exception(exc)).rstrip("\n")


# ----------------------------------------------------------------- runtime


class _Runtime:
    # The process's defaults for event(), error(), call() and the lifecycle events.
    lock = threading.Lock()
    app: str | None = None
    transport: Transport | None = None
    exit_flush_timeout_s: float = 5.0
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


def activate(app: str, transport: Transport, *, exit_flush_timeout_s: float = 5.0) -> bool:
    """Make `app` and `transport` the process's defaults and open the run; idempotent.

    Args:
        app: the app name for events and lifecycle records.
        transport: where they go.
        exit_flush_timeout_s: how long the exit hook waits for acknowledgements.

    Returns:
        True iff this call set the defaults (False: they were already set).
    """
    with _Runtime.lock:
        if _Runtime.app is not None:
            return False
        _Runtime.app = app
        _Runtime.transport = transport
        _Runtime.exit_flush_timeout_s = exit_flush_timeout_s
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


def flush_all(timeout: float) -> bool:
    """Flush every shared transport within one overall timeout."""
    deadline = time.monotonic() + timeout
    ok = True
    for transport in shared_transports():
        ok = transport.flush(max(0.0, deadline - time.monotonic())) and ok
    return ok


def _at_exit() -> None:
    # Bounded: a missing daemon costs the exiting app at most the flush timeout (plus the
    # time to spool what is still unacknowledged, when closing the transports).
    try:
        if context.owns_run() and not _Runtime.shutdown_sent:
            _Runtime.shutdown_sent = True
            send_event("app:shutdown", LIFECYCLE_SOURCE, "", {})
        flush_all(_Runtime.exit_flush_timeout_s)
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
        _Runtime.shutdown_sent = False
    context.forget_run()
    forget_shared_transports(spool=False)


# ----------------------------------------------------------------- handler


class LogdHandler(logging.Handler):
    """A logging handler that sends every record to the logd daemon.

    Usable directly or from `logging.config.dictConfig`::

        {"class": "logd_client.LogdHandler", "app": "cycling-ai", "address": "unix:/..."}

    The first LogdHandler of a process (or `install()`) opens the run: the app it names
    becomes the default for `event()`, and `app:start` is sent unless the process
    joined its parent's run through `LOGD_RUN_ID`.

    Args:
        app: the app name (also the Forward tag). Default: the process's app if one is
            set up, else the program's name.
        address: the daemon address (see `install()`); default `LOGD_ADDRESS`, else the
            default socket.
        level: the handler's level.

    Raises:
        ValueError: `address` (or `LOGD_ADDRESS`) cannot be parsed, or `app` is empty.
        TypeError: `app` or `address` is not a str.

    Error handling:
        `emit()` never blocks on I/O and never raises: a record that cannot be built or
        queued is counted as dropped. A formatter set on the handler is not used; the
        daemon formats lines itself.
    """

    def __init__(
        self,
        app: str | None = None,
        address: str | None = None,
        level: int | str = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        if app is not None:
            context.check_id("app", app)
        current = runtime()
        if app is None:
            app = current[0] if current is not None else default_app_name()
        self.app = app
        self.transport = shared_transport(configured_address(address))
        activate(app, self.transport)

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and emit the record, without the handler lock `Handler.handle()` takes.

        `emit()` is thread-safe by itself (the transport has its own lock) and never blocks,
        so that lock would only cost every record a round trip. Filters work as in stdlib:
        from Python 3.12 a filter may return a replacement record, and a passed record is
        returned rather than True.
        """
        if self.filters:
            rv = self.filter(record)
            if not rv:
                return rv
            if sys.version_info >= (3, 12) and isinstance(rv, logging.LogRecord):
                record = rv
        elif sys.version_info >= (3, 12):
            rv = record
        else:
            rv = True
        self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record for the daemon; never blocks, never raises."""
        try:
            out, size, plain = _build(record, self.app, context.run_id())
            self.transport.enqueue(
                self.app, int(record.created * 1e9), out, record.levelno, size, plain
            )
        except Exception:
            self.transport.count_failure()

    def flush(self) -> None:
        """Do nothing: delivery is asynchronous, and logging calls this at shutdown and on
        reconfiguration, where waiting for a missing daemon would stall the app. Use
        `logd_client.flush(timeout)` to wait for acknowledgements.
        """

    def __repr__(self) -> str:
        return f"<LogdHandler app={self.app!r} level={logging.getLevelName(self.level)}>"
