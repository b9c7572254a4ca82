"""The daemon's trio core: startup and shutdown, the writer task and its queue.

Connection tasks (`ingest.connections`) decode bytes and wait for the writer; they never touch
files. The writer task and its queue are `writer.Writer`; this module owns the `Engine` it
runs, and opens and closes it. Sockets are opened and closed by
`ingest.listeners.Listeners`.
"""

from __future__ import annotations

import logging
import os
import socket as stdsocket
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import trio

from logd import __version__, housekeeping
from logd.config import Config
from logd.config.changes import changed_keys, needs_restart
from logd.control.server import ControlServer
from logd.fdlimit import raise_open_file_limit
from logd.forward.service import Forwarding
from logd.index.states import Peer, Transport
from logd.ingest.connections import Connections
from logd.ingest.listeners import Listeners, Listening, StartupError, describe
from logd.systemd import Notifier, status_text
from logd.write.engine import Engine
from logd.write.jobs import Maintain, Note
from logd.write.rootlock import RootLock, RootUnavailable, lock_root
from logd.writer import Writer

log = logging.getLogger("logd.server")

TICK_S = 2.0
DRAIN_GRACE_S = 5.0


class LogdServer:
    """One daemon instance: listeners, connections, writer. See `serve_logd`."""

    def __init__(
        self,
        config: Config,
        *,
        engine_factory: Callable[[Config], Engine] = Engine,
        inherited: dict[str, list[stdsocket.socket]] | None = None,
        notifier: Notifier | None = None,
        root_lock: RootLock | None = None,
    ):
        self.config = config
        self.root_lock = root_lock
        self.engine_factory = engine_factory
        self.engine: Engine | None = None
        self.stop_requested = trio.Event()
        self.errors: Counter[str] = Counter()
        self.listeners = Listeners(inherited)
        self.notifier = notifier or Notifier({})
        self.control = ControlServer(self)
        self.writer = Writer(
            errors=self.errors,
            enqueue_timeout_s=DRAIN_GRACE_S,
            publish=self.control.publish,
            after_batch=self._after_batch,
        )
        self.read_config: Callable[[], Config] | None = None
        self.listener_names: list[str] = []
        self.hostname = stdsocket.gethostname()
        self.connections = Connections(
            config=lambda: self.config,
            hostname=self.hostname,
            errors=self.errors,
            submit=self.writer.submit_many,
            enqueue=self.writer.enqueue,
        )
        self.forwarding: Forwarding | None = None
        self._started = time.monotonic()

    # --- public --------------------------------------------------------------------

    @property
    def writer_lock(self) -> trio.Lock:
        """Held by the writer while it writes a batch and publishes its records."""
        return self.writer.lock

    def request_stop(self) -> None:
        """Stop accepting, finish what connections already sent, flush, and return."""
        self.stop_requested.set()

    async def maintain(self, job: Maintain) -> dict[str, Any]:
        """Run cleanup, rotate or reload between the writer's batches; returns its result.

        Raises:
            OSError: the writer could not carry out the batch it was in.
        """
        done = trio.Event()
        if not await self.writer.enqueue(job, done):
            raise OSError(f"{job.action} did not run: the writer is stopping or stuck")
        await done.wait()
        if not job.done:
            reason = self.engine.totals.last_error if self.engine else "not started"
            raise OSError(f"{job.action} did not run: {reason}")
        return job.result

    async def reload(self, config: Config) -> None:
        """Apply a new configuration (SIGHUP); `root` and `[listen]` need a restart."""
        changed = changed_keys(self.config, config)
        raise_open_file_limit(config.limits)
        await self.maintain(Maintain("reload", config=config))
        self.writer.note(
            "logd:reload",
            "configuration reloaded",
            changed=changed,
            restart_needed=needs_restart(changed),
        )
        if config.forward != self.config.forward or config.state_dir != self.config.state_dir:
            log.warning("[[forward]] and state_dir changes take effect at the next start")
        self.config = replace(
            config,
            root=self.config.root,
            listen=self.config.listen,
            forward=self.config.forward,
            state_dir=self.config.state_dir,
        )
        log.info("configuration reloaded")

    async def serve(
        self, *, task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Lock the root, open the index and the sockets, then run until a stop request.

        Raises:
            StartupError: the daemon cannot start as configured; nothing was left behind.
        """
        config = self.config
        try:
            root_lock = self.root_lock or lock_root(config.root)
        except RootUnavailable as exc:
            raise StartupError(str(exc)) from None
        try:
            await self.listeners.check_free(config)
            raise_open_file_limit(config.limits)
            # Recover the registry before listening: a client that can connect may already
            # ask (through logd-ctl) about runs the previous daemon left open.
            try:
                engine = await trio.to_thread.run_sync(self.engine_factory, config)
            except (OSError, sqlite3.Error) as exc:
                raise StartupError(f"cannot open the log tree in {config.root}: {exc}") from exc
            self.engine = engine
            listeners: list[tuple[trio.abc.Listener[Any], Transport]] = []
            try:
                if config.forward:
                    self.forwarding = await self._open_forwarding(engine)
                listeners, listening = await self.listeners.open_ingest(config)
                control = await self.listeners.open_control(config)
            except BaseException:
                with trio.CancelScope(shield=True):
                    for listener, _ in listeners:
                        await listener.aclose()
                    await self._close(engine)
                raise
            await self._run(engine, listeners, listening, control, task_status)
        finally:
            root_lock.release()

    async def _run(
        self,
        engine: Engine,
        listeners: list[tuple[trio.abc.Listener[Any], Transport]],
        listening: Listening,
        control: tuple[trio.SocketListener, str],
        task_status: trio.TaskStatus[Listening],
    ) -> None:
        control_listener, control_name = control
        self.listener_names = [f"ingest {name}" for name in describe(listening).split(", ")]
        self.listener_names.append(control_name)
        send, recv = self.writer.open()
        try:
            async with trio.open_nursery() as writer_nursery:
                writer_nursery.start_soon(self.writer.run, engine, recv)
                try:
                    async with trio.open_nursery() as nursery:
                        for listener, transport in listeners:
                            nursery.start_soon(
                                self.connections.accept_loop, nursery, listener, transport
                            )
                        ticker = trio.CancelScope()
                        nursery.start_soon(
                            housekeeping.ticker,
                            ticker,
                            TICK_S,
                            self.writer.tick,
                            lambda: self.notifier.status(status_text(self.statistics())),
                        )
                        retention = trio.CancelScope()
                        nursery.start_soon(
                            housekeeping.cleanup_loop,
                            retention,
                            lambda: self.config.retention.interval_s,
                            lambda: self.maintain(Maintain("cleanup")),
                        )
                        outputs = trio.CancelScope()
                        if self.forwarding is not None:
                            nursery.start_soon(self._run_outputs, outputs, self.forwarding)
                        watchdog = trio.CancelScope()
                        if self.notifier.watchdog_s is not None:
                            nursery.start_soon(
                                housekeeping.watchdog,
                                watchdog,
                                self.notifier,
                                self.notifier.watchdog_s,
                            )
                        log.info(
                            "logd %s listening on %s; writing to %s",
                            __version__,
                            describe(listening),
                            self.config.root,
                        )
                        nursery.start_soon(self.control.serve, control_listener)
                        self.writer.note(
                            "logd:start",
                            "started",
                            version=__version__,
                            pid=os.getpid(),
                            root=str(self.config.root),
                            listeners=list(self.listener_names),
                            fsync=self.config.fsync,
                        )
                        task_status.started(listening)
                        nursery.start_soon(
                            housekeeping.deliver_spools,
                            self.writer.submit,
                            self.config.limits.max_message_bytes,
                        )
                        self.notifier.ready(status_text(self.statistics()))
                        await self.stop_requested.wait()
                        self.notifier.stopping()
                        watchdog.cancel()
                        log.info(
                            "stopping: no new connections, draining %d",
                            len(self.connections.conns),
                        )
                        for listener, _ in listeners:
                            await listener.aclose()
                        await control_listener.aclose()
                        ticker.cancel()
                        retention.cancel()
                        # Outputs stop sending; what upstream has not acknowledged
                        # stays in their buffers for the next start.
                        outputs.cancel()
                        self.connections.drain(DRAIN_GRACE_S)
                        nursery.cancel_scope.deadline = trio.current_time() + DRAIN_GRACE_S
                finally:
                    with trio.CancelScope(shield=True):
                        stop = Note(time.time_ns(), "logd:stop", "stopped", self._stop_fields())
                        with trio.move_on_after(DRAIN_GRACE_S):
                            await send.send((stop, None))
                        await send.aclose()
        finally:
            with trio.CancelScope(shield=True):
                await self._close(engine)
                log.info("stopped")

    async def _close(self, engine: Engine) -> None:
        """Close the engine, the output buffers and the sockets (call shielded)."""
        await trio.to_thread.run_sync(engine.close)
        if self.forwarding is not None:
            await trio.to_thread.run_sync(self.forwarding.close)
        self.listeners.close()
        self.notifier.close()

    def statistics(self) -> dict[str, Any]:
        totals = self.engine.totals if self.engine else None
        return {
            "version": __version__,
            "pid": os.getpid(),
            "connections": len(self.connections.conns),
            "connections_total": self.connections.total,
            "errors": dict(self.errors),
            "records_in": totals.records_in if totals else 0,
            "records_written": totals.records_written if totals else 0,
            "events_indexed": totals.events_indexed if totals else 0,
            "rejected": totals.rejected if totals else 0,
            "dropped_by_clients": totals.dropped_by_clients if totals else 0,
        }

    def peers(self) -> list[tuple[int, Peer]]:
        """The connected clients by connection id, for `logd-ctl status`."""
        return [(conn_id, conn.peer) for conn_id, conn in sorted(self.connections.conns.items())]

    def outputs_status(self) -> list[dict[str, Any]]:
        """Each `[[forward]]` output for `logd-ctl status`."""
        return self.forwarding.status() if self.forwarding is not None else []

    async def _open_forwarding(self, engine: Engine) -> Forwarding:
        """Open the output buffers and let the writer feed them."""
        try:
            forwarding = await trio.to_thread.run_sync(Forwarding.open, self.config, self.hostname)
        except OSError as exc:
            raise StartupError(f"cannot open the [[forward]] buffers: {exc}") from exc
        engine.forward = forwarding.hub
        return forwarding

    async def _run_outputs(self, scope: trio.CancelScope, forwarding: Forwarding) -> None:
        with scope:
            await forwarding.run()

    def set_publishing(self, on: bool) -> None:
        """Have the engine build live-tail items only while someone follows."""
        if self.engine is not None:
            self.engine.publish = on

    def _stop_fields(self) -> dict[str, Any]:
        totals = self.engine.totals if self.engine else None
        return {
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self._started, 3),
            "records_written": totals.records_written if totals else 0,
        }

    def _after_batch(self, records_written: int) -> None:
        self.control.rate.add(time.time(), records_written)
        if self.forwarding is not None:
            self.forwarding.notify()


async def serve_logd(
    config: Config,
    *,
    server: LogdServer | None = None,
    task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until cancelled or until `server.request_stop()`.

    Reports where it listens through `task_status.started()`. On a stop request it
    stops accepting, finishes the messages connections already sent, flushes and
    returns; on cancellation it still flushes what was written (shielded).
    """
    server = server or LogdServer(config)
    await server.serve(task_status=task_status)
