"""trio listeners, connection tasks and the writer task.

Connection tasks decode bytes and wait for the writer; they never touch files. The
writer task owns the `Engine` and runs each batch in a worker thread, so a slow disk
slows the clients that wait for acks rather than the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import logging
import os
import socket as stdsocket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import trio
from logd_client import spool, wire

from logd import __version__
from logd.config import Config
from logd.control_server import ControlServer
from logd.engine import ConnClosed, Engine, Ingest, Job, Maintain, Tick, ensure_root
from logd.forward.service import Forwarding
from logd.intake import deliver_orphans
from logd.registry import Peer, Transport
from logd.sockets import (
    Listening,
    StartupError,
    adopt_inherited,
    bind_unix,
    describe,
    name_of,
    refuse_if_in_use,
    unlink_quietly,
)
from logd.systemd import Notifier, status_text

log = logging.getLogger("logd.server")

WRITER_QUEUE = 1024
WRITER_BATCH = 512
TICK_S = 2.0
DRAIN_GRACE_S = 5.0
DRAIN_READ_S = 0.2
FAILURE_REPORT_EVERY_S = 10.0
_PEERCRED = struct.Struct("3i")


@dataclass(slots=True)
class _Conn:
    peer: Peer
    read_scope: trio.CancelScope | None = None


class LogdServer:
    """One daemon instance: listeners, connections, writer. See `serve_logd`."""

    def __init__(
        self,
        config: Config,
        *,
        engine_factory: Callable[[Config], Engine] = Engine,
        inherited: dict[str, list[stdsocket.socket]] | None = None,
        notifier: Notifier | None = None,
    ):
        self.config = config
        self.engine_factory = engine_factory
        self.engine: Engine | None = None
        self.stop_requested = trio.Event()
        self.draining = False
        self.conns: dict[int, _Conn] = {}
        self.errors: Counter[str] = Counter()
        self.connections_total = 0
        self._next_conn = 0
        self._send: trio.MemorySendChannel[tuple[Job, trio.Event | None]] | None = None
        self._made_sockets: list[Path] = []
        # Socket activation (logd.systemd.listen_fds): these replace binding, are never
        # unlinked, and are closed at exit. The control socket waits for its user.
        inherited = dict(inherited or {})
        self._inherited_ingest = inherited.pop("ingest", [])
        controls = inherited.pop("control", [])
        self.inherited_control: stdsocket.socket | None = controls[0] if controls else None
        self._inherited_unused = controls[1:] + [s for ss in inherited.values() for s in ss]
        self.notifier = notifier or Notifier({})
        self.control = ControlServer(self)
        self.read_config: Callable[[], Config] | None = None
        self.listener_names: list[str] = []
        self.hostname = stdsocket.gethostname()
        self.forwarding: Forwarding | None = None
        self._last_failure_report = -FAILURE_REPORT_EVERY_S
        self._unreported_failures = 0

    # --- public --------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop accepting, finish what connections already sent, flush, and return."""
        self.stop_requested.set()

    async def maintain(self, job: Maintain) -> dict[str, Any]:
        """Run cleanup, rotate or reload between the writer's batches; returns its result.

        Raises:
            OSError: the writer could not carry out the batch it was in.
        """
        done = trio.Event()
        await self._enqueue(job, done)
        await done.wait()
        if not job.done:
            reason = self.engine.totals.last_error if self.engine else "not started"
            raise OSError(f"{job.action} did not run: {reason}")
        return job.result

    async def reload(self, config: Config) -> None:
        """Apply a new configuration (SIGHUP); `root` and `[listen]` need a restart."""
        await self.maintain(Maintain("reload", config=config))
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
        config = self.config
        ensure_root(config.root)
        if not self._inherited_ingest:
            await refuse_if_in_use(config.listen.socket)
        # Recover the registry before listening: a client that can connect may already
        # ask (through logd-ctl) about runs the previous daemon left open.
        self.engine = engine = await trio.to_thread.run_sync(self.engine_factory, config)
        try:
            if config.forward:
                self.forwarding = await self._open_forwarding(engine)
            listeners, listening = await self._open_listeners()
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(engine.close)
                if self.forwarding is not None:
                    await trio.to_thread.run_sync(self.forwarding.close)
            raise
        self.listener_names = [f"ingest {name}" for name in describe(listening).split(", ")]
        send, recv = trio.open_memory_channel[tuple[Job, trio.Event | None]](WRITER_QUEUE)
        self._send = send
        try:
            async with trio.open_nursery() as writer_nursery:
                writer_nursery.start_soon(self._writer, engine, recv)
                try:
                    async with trio.open_nursery() as nursery:
                        for listener, transport in listeners:
                            nursery.start_soon(self._accept_loop, nursery, listener, transport)
                        ticker = trio.CancelScope()
                        nursery.start_soon(self._ticker, ticker)
                        housekeeping = trio.CancelScope()
                        nursery.start_soon(self._cleanup_loop, housekeeping)
                        outputs = trio.CancelScope()
                        if self.forwarding is not None:
                            nursery.start_soon(self._run_outputs, outputs, self.forwarding)
                        watchdog = trio.CancelScope()
                        if self.notifier.watchdog_s is not None:
                            nursery.start_soon(self._watchdog, watchdog, self.notifier.watchdog_s)
                        log.info(
                            "logd %s listening on %s; writing to %s",
                            __version__,
                            describe(listening),
                            config.root,
                        )
                        control_listener = await self._open_control()
                        nursery.start_soon(self.control.serve, control_listener)
                        task_status.started(listening)
                        nursery.start_soon(self._deliver_spools)
                        self.notifier.ready(status_text(self.statistics()))
                        await self.stop_requested.wait()
                        self.notifier.stopping()
                        watchdog.cancel()
                        log.info("stopping: no new connections, draining %d", len(self.conns))
                        for listener, _ in listeners:
                            await listener.aclose()
                        await control_listener.aclose()
                        ticker.cancel()
                        housekeeping.cancel()
                        # Outputs stop sending; what upstream has not acknowledged
                        # stays in their buffers for the next start.
                        outputs.cancel()
                        self._drain()
                        nursery.cancel_scope.deadline = trio.current_time() + DRAIN_GRACE_S
                finally:
                    with trio.CancelScope(shield=True):
                        await send.aclose()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(engine.close)
                if self.forwarding is not None:
                    await trio.to_thread.run_sync(self.forwarding.close)
                for path in self._made_sockets:
                    unlink_quietly(path)
                self._close_inherited()
                self.notifier.close()
                log.info("stopped")

    def statistics(self) -> dict[str, Any]:
        totals = self.engine.totals if self.engine else None
        return {
            "version": __version__,
            "pid": os.getpid(),
            "connections": len(self.conns),
            "connections_total": self.connections_total,
            "errors": dict(self.errors),
            "records_in": totals.records_in if totals else 0,
            "records_written": totals.records_written if totals else 0,
            "events_indexed": totals.events_indexed if totals else 0,
            "rejected": totals.rejected if totals else 0,
            "dropped_by_clients": totals.dropped_by_clients if totals else 0,
        }

    # --- listeners -----------------------------------------------------------------

    async def _open_listeners(
        self,
    ) -> tuple[list[tuple[trio.abc.Listener[Any], Transport]], Listening]:
        listen = self.config.listen
        listeners: list[tuple[trio.abc.Listener[Any], Transport]] = []
        if self._inherited_ingest:
            listening = Listening(socket=None)
            try:
                for inherited in self._inherited_ingest:
                    listeners.append(adopt_inherited(inherited, listening, self.config))
            except StartupError:
                self._close_inherited()
                raise
        else:
            sock = await self._bind_unix(listen.socket)
            listeners.append((trio.SocketListener(sock), "unix"))
            listening = Listening(socket=listen.socket)
        for unused in self._inherited_unused:
            log.warning("ignoring an inherited socket logd has no use for: %s", name_of(unused))
        if listen.tcp is not None:
            host, port = listen.tcp
            try:
                tcp_listeners = await trio.open_tcp_listeners(port, host=host)
            except OSError as exc:
                raise StartupError(f"cannot listen on tcp {host}:{port}: {exc.strerror}") from exc
            for tcp in tcp_listeners:
                name = tcp.socket.getsockname()
                listening.tcp.append((name[0], name[1]))
                listeners.append((tcp, "tcp"))
        return listeners, listening

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

    async def _open_control(self) -> trio.SocketListener:
        """The control socket: inherited from systemd, or bound next to the ingest one."""
        if self.inherited_control is not None:
            sock = trio.socket.from_stdlib_socket(self.inherited_control)
            self.inherited_control = None
            name = sock.getsockname()
        else:
            path = self.config.listen.control
            sock = await self._bind_unix(path)
            name = os.fspath(path)
        self.listener_names.append(f"control unix:{name}")
        return trio.SocketListener(sock)

    async def _bind_unix(self, path: Path) -> trio.socket.SocketType:
        sock = await bind_unix(path, self.config.listen.socket_group)
        self._made_sockets.append(path)
        return sock

    async def _accept_loop(
        self, nursery: trio.Nursery, listener: trio.abc.Listener[Any], transport: Transport
    ) -> None:
        limit = self.config.limits.max_connections
        while True:
            try:
                stream = await listener.accept()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._count("accept-" + errno.errorcode[exc.errno].lower())
                    log.warning("accept failed (%s); pausing", exc.strerror)
                    await trio.sleep(0.1)
                    continue
                raise
            if len(self.conns) >= limit:
                self._count("too-many-connections")
                log.warning("refusing a %s connection: %d connections open", transport, limit)
                await stream.aclose()
                continue
            nursery.start_soon(self._handle, stream, transport)

    # --- connections ---------------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream, transport: Transport) -> None:
        peer = self._peer(stream, transport)
        conn = _Conn(peer)
        self.conns[peer.conn_id] = conn
        self.connections_total += 1
        limits = self.config.limits
        decoder = wire.ForwardDecoder(
            max_message_bytes=limits.max_message_bytes, max_records=limits.max_records
        )
        by_daemon = False
        idle_deadline = trio.current_time() + limits.idle_timeout_s
        try:
            if transport == "tcp" and self.config.listen.shared_key:
                authenticated = False
                with trio.move_on_after(limits.idle_timeout_s):
                    authenticated = await self._authenticate(stream, decoder, peer)
                if not authenticated:
                    return
            while True:
                event = decoder.next_event()
                if event is None:
                    deadline = idle_deadline
                    if self.draining:
                        deadline = min(deadline, trio.current_time() + DRAIN_READ_S)
                    data: bytes | None = None
                    with trio.CancelScope(deadline=deadline) as conn.read_scope:
                        data = await stream.receive_some(decoder.read_size)
                    conn.read_scope = None
                    if data is None:
                        by_daemon = True
                        if not self.draining:
                            self._count("idle-timeout")
                            log.info(
                                "conn %d (%s): no message for %gs, closing",
                                peer.conn_id,
                                _peer_text(peer),
                                limits.idle_timeout_s,
                            )
                        break
                    if data:
                        decoder.receive_data(data)
                    else:
                        decoder.receive_eof()
                    continue
                idle_deadline = trio.current_time() + limits.idle_timeout_s
                if isinstance(event, wire.Closed):
                    break
                if isinstance(event, wire.Entries):
                    if not await self._submit(peer, event):
                        by_daemon = True
                        break
                    if event.chunk is not None:
                        with trio.move_on_after(limits.idle_timeout_s) as send_scope:
                            await stream.send_all(wire.encode_ack(event.chunk))
                        if send_scope.cancelled_caught:
                            self._count("ack-not-read")
                            by_daemon = True
                            break
                elif isinstance(event, wire.Ping):
                    self._count("unexpected-ping")
                    log.warning(
                        "conn %d: PING without shared_key configured; closing", peer.conn_id
                    )
                    break
        except wire.RemoteProtocolError as exc:
            self._count(exc.code)
            log.warning(
                "conn %d (%s): protocol error %s: %s; closing",
                peer.conn_id,
                _peer_text(peer),
                exc.code,
                exc,
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._count("connection-broken")
            log.debug("conn %d: %r", peer.conn_id, exc)
        finally:
            del self.conns[peer.conn_id]
            with trio.CancelScope(shield=True):
                await stream.aclose()
                await self._enqueue(ConnClosed(peer, by_daemon), None)

    async def _authenticate(
        self, stream: trio.SocketStream, decoder: wire.ForwardDecoder, peer: Peer
    ) -> bool:
        """The Forward protocol's HELO / PING / PONG: the peer proves it knows shared_key."""
        key = self.config.listen.shared_key
        assert key is not None
        nonce = os.urandom(16)
        await stream.send_all(wire.encode_helo(nonce, b"", keepalive=True))
        event = decoder.next_event()
        while event is None or isinstance(event, wire.Heartbeat):
            data = await stream.receive_some(decoder.read_size)
            if data:
                decoder.receive_data(data)
            else:
                decoder.receive_eof()
            event = decoder.next_event()
        if not isinstance(event, wire.Ping):
            self._count("auth-missing")
            log.warning(
                "conn %d (%s): sent data before authenticating; closing", peer.conn_id, peer.address
            )
            return False
        salt = event.shared_key_salt
        expected = wire.shared_key_digest(salt, event.hostname, nonce, key)
        ok = hmac.compare_digest(expected, event.shared_key_hexdigest)
        reason = "" if ok else "shared_key mismatch"
        await stream.send_all(wire.encode_pong(ok, reason, self.hostname, key, nonce, salt))
        if not ok:
            self._count("auth-failed")
            log.warning("conn %d (%s): wrong shared_key; closing", peer.conn_id, peer.address)
        return ok

    async def _submit(self, peer: Peer, entries: wire.Entries) -> bool:
        """Hand one message to the writer and wait until it is durable (or failed)."""
        job = Ingest(peer, entries)
        done = trio.Event()
        await self._enqueue(job, done)
        await done.wait()
        return job.ok

    async def _enqueue(self, job: Job, done: trio.Event | None) -> None:
        assert self._send is not None
        with trio.move_on_after(DRAIN_GRACE_S):
            try:
                await self._send.send((job, done))
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                if done is not None:
                    done.set()

    def _peer(self, stream: trio.SocketStream, transport: Transport) -> Peer:
        self._next_conn += 1
        sock = stream.socket
        if transport == "unix":
            try:
                raw = sock.getsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_PEERCRED, _PEERCRED.size)
                pid, uid, gid = _PEERCRED.unpack(raw)
            except OSError:
                pid = uid = gid = None
            return Peer(self._next_conn, "unix", pid, uid, gid, "unix")
        try:
            host, port = sock.getpeername()[:2]
            address = f"{host}:{port}"
        except OSError:
            address = "tcp"
        return Peer(self._next_conn, "tcp", address=address)

    def _drain(self) -> None:
        self.draining = True
        soon = trio.current_time() + DRAIN_READ_S
        for conn in self.conns.values():
            if conn.read_scope is not None:
                conn.read_scope.deadline = min(conn.read_scope.deadline, soon)

    def _count(self, code: str) -> None:
        self.errors[code] += 1

    # --- writer and ticker -----------------------------------------------------------

    async def _writer(
        self, engine: Engine, recv: trio.MemoryReceiveChannel[tuple[Job, trio.Event | None]]
    ) -> None:
        async with recv:
            while True:
                try:
                    first = await recv.receive()
                except trio.EndOfChannel:
                    return
                batch = [first]
                while len(batch) < WRITER_BATCH:
                    try:
                        batch.append(recv.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                written_before = engine.totals.records_written
                try:
                    await trio.to_thread.run_sync(engine.process, [job for job, _ in batch])
                except OSError as exc:
                    self._count("write-failed")
                    self._report_write_failure(exc)
                    engine.published.clear()
                self.control.rate.add(time.time(), engine.totals.records_written - written_before)
                if engine.published:
                    items, engine.published = engine.published, []
                    self.control.publish(items)
                if self.forwarding is not None:
                    self.forwarding.notify()
                for _, done in batch:
                    if done is not None:
                        done.set()

    def _report_write_failure(self, exc: OSError) -> None:
        # A full disk fails every batch; say so once per interval, not once per batch.
        now = trio.current_time()
        if now - self._last_failure_report < FAILURE_REPORT_EVERY_S:
            self._unreported_failures += 1
            return
        more = f" ({self._unreported_failures} more since the last report)"
        log.error(
            "cannot write, not acknowledging: %s%s", exc, more if self._unreported_failures else ""
        )
        self._last_failure_report = now
        self._unreported_failures = 0

    async def _deliver_spools(self) -> None:
        """Write spools of clients that exited while no daemon ran (logd_client.spool)."""
        deliver = partial(
            deliver_orphans,
            spool.default_directory(),
            self._submit,
            max_message_bytes=self.config.limits.max_message_bytes,
        )
        try:
            count = await trio.to_thread.run_sync(deliver)
        except OSError as exc:
            log.warning("could not deliver spooled records: %s", exc)
            return
        if count:
            log.info("wrote %d spooled message(s) left by clients that exited", count)

    async def _cleanup_loop(self, scope: trio.CancelScope) -> None:
        with scope:
            while True:
                await trio.sleep(self.config.retention.interval_s)
                try:
                    result = await self.maintain(Maintain("cleanup"))
                except OSError as exc:
                    log.error("cleanup failed: %s", exc)
                    continue
                if result.get("deleted"):
                    log.info(
                        "cleanup deleted %d path(s), freed %d bytes",
                        len(result["deleted"]),
                        result["freed_bytes"],
                    )

    async def _ticker(self, scope: trio.CancelScope) -> None:
        assert self._send is not None
        with scope:
            while True:
                await trio.sleep(TICK_S)
                with contextlib.suppress(trio.WouldBlock):
                    self._send.send_nowait((Tick(), None))
                self.notifier.status(status_text(self.statistics()))

    async def _watchdog(self, scope: trio.CancelScope, interval_s: float) -> None:
        # From a task in the loop, not a thread: a blocked loop then misses WATCHDOG=1
        # and systemd restarts the daemon (WatchdogSec=, sd_watchdog_enabled(3)).
        with scope:
            while True:
                self.notifier.watchdog()
                await trio.sleep(interval_s)

    def _close_inherited(self) -> None:
        # Our duplicates only: the service manager keeps the socket for the next start.
        for sock in [*self._inherited_ingest, *self._inherited_unused]:
            sock.close()
        if self.inherited_control is not None:
            self.inherited_control.close()


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


def _peer_text(peer: Peer) -> str:
    if peer.transport == "unix":
        return f"pid {peer.pid} uid {peer.uid}"
    return peer.address
