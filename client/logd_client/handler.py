"""LogdHandler: the stdlib logging handler that hands every record to the transport.

The record is packed on the app's thread (`recordmap`: straight into its Forward entry
when it can, else as a record map); delivery is the transport's business. The first
LogdHandler of a process sets up the runtime (`runtime`) if `install()` has not.
"""

from __future__ import annotations

import logging
import sys

from . import context
from .address import configured_address
from .recordmap import EntryBuilder, build_sized
from .runtime import activate, default_app_name, runtime
from .shared import shared_transport


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
        # Bound once: emit() runs for every record.
        self._build = EntryBuilder().build
        self._enqueue = self.transport.enqueue
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
            self.emit(record)
            return rv
        self.emit(record)
        if sys.version_info >= (3, 12):
            return record
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record for the daemon; never blocks, never raises."""
        try:
            time_ns = int(record.created * 1e9)
            run_id = context._run_id  # what context.run_id() returns, without its call
            entry = self._build(record, self.app, time_ns, run_id)
            if entry is not None:
                self._enqueue(self.app, time_ns, entry[0], record.levelno, entry[1])
                return
            out, size, plain = build_sized(record, self.app, run_id)
            self._enqueue(self.app, time_ns, out, record.levelno, size, plain)
        except Exception:
            self.transport.count_failure()

    def flush(self) -> None:
        """Do nothing: delivery is asynchronous, and logging calls this at shutdown and on
        reconfiguration, where waiting for a missing daemon would stall the app. Use
        `logd_client.flush(timeout)` to wait for acknowledgements.
        """

    def __repr__(self) -> str:
        return f"<LogdHandler app={self.app!r} level={logging.getLevelName(self.level)}>"
