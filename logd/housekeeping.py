"""The daemon's periodic tasks beside the writer: the tick, retention, the systemd
watchdog, and the one-off delivery of spools left by clients that exited.

Each takes what it needs as callables, so it knows nothing of the server's insides and
runs in the server's nursery under a cancel scope the server closes at stop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
from logd_client import spool, wire

from logd.index.states import Peer
from logd.ingest.orphans import deliver_orphans
from logd.systemd import Notifier

__all__ = ["cleanup_loop", "deliver_spools", "ticker", "watchdog"]

log = logging.getLogger("logd.housekeeping")


async def deliver_spools(
    submit: Callable[[Peer, wire.Entries], Awaitable[bool]], max_message_bytes: int
) -> None:
    """Write spools of clients that exited while no daemon ran (logd_client.spool)."""
    deliver = partial(
        deliver_orphans, spool.default_directory(), submit, max_message_bytes=max_message_bytes
    )
    try:
        count = await trio.to_thread.run_sync(deliver)
    except OSError as exc:
        log.warning("could not deliver spooled records: %s", exc)
        return
    if count:
        log.info("wrote %d spooled message(s) left by clients that exited", count)


async def cleanup_loop(
    scope: trio.CancelScope,
    interval_s: Callable[[], float],
    cleanup: Callable[[], Awaitable[dict[str, Any]]],
) -> None:
    """Apply retention every `interval_s()` (read each time: a reload may change it)."""
    with scope:
        while True:
            await trio.sleep(interval_s())
            try:
                result = await cleanup()
            except OSError as exc:
                log.error("cleanup failed: %s", exc)
                continue
            if result.get("deleted"):
                log.info(
                    "cleanup deleted %d path(s), freed %d bytes",
                    len(result["deleted"]),
                    result["freed_bytes"],
                )


async def ticker(
    scope: trio.CancelScope,
    every_s: float,
    tick: Callable[[], None],
    status: Callable[[], object],
) -> None:
    """Ask the writer for housekeeping (`tick`) and refresh systemd's status line."""
    with scope:
        while True:
            await trio.sleep(every_s)
            tick()
            status()


async def watchdog(scope: trio.CancelScope, notifier: Notifier, interval_s: float) -> None:
    # From a task in the loop, not a thread: a blocked loop then misses WATCHDOG=1
    # and systemd restarts the daemon (WatchdogSec=, sd_watchdog_enabled(3)).
    with scope:
        while True:
            notifier.watchdog()
            await trio.sleep(interval_s)
