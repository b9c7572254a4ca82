"""The control socket's trio side: request loop, queries off the loop, live-tail fan-out.

Requests and replies are msgpack maps (the ingest framing). Queries (`queries`) read
the SQLite index and the files in worker threads with their own connections;
maintenance goes through the writer. A `tail -f` subscriber gets a bounded queue: when
it falls behind, records are skipped for it (and it is told), never held back for
everyone else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import trio
from logd_client import wire

from logd.config import Config, ConfigError
from logd.config.changes import changed_keys, needs_restart
from logd.control import queries
from logd.control import requests as control
from logd.control.backlog import Backlog
from logd.control.requests import ControlError, Request
from logd.control.tailing import TailFilter
from logd.index.states import Peer
from logd.ingest.streams import next_event
from logd.write.jobs import Maintain

log = logging.getLogger("logd.control")

MAX_REQUEST_BYTES = 1024 * 1024
SUBSCRIBER_QUEUE = 10_000


@dataclass(slots=True, eq=False)
class _Subscriber:
    filter: TailFilter
    send: trio.MemorySendChannel[dict[str, Any]]
    skipped: int = 0


@dataclass(slots=True)
class RateMeter:
    """Records written per second over the last minute (`logd-ctl status`)."""

    seconds: deque[tuple[int, int]] = field(default_factory=deque)

    def add(self, now: float, count: int) -> None:
        second = int(now)
        if self.seconds and self.seconds[-1][0] == second:
            self.seconds[-1] = (second, self.seconds[-1][1] + count)
        else:
            self.seconds.append((second, count))
        while self.seconds and self.seconds[0][0] <= second - 60:
            self.seconds.popleft()

    def series(self, now: float) -> list[int]:
        second = int(now)
        counts = dict(self.seconds)
        return [counts.get(s, 0) for s in range(second - 59, second + 1)]


class Daemon(Protocol):
    """What the control server needs from the daemon that owns it (`LogdServer`).

    Passed in rather than imported, so the daemon's core and its control side do not
    import each other.
    """

    @property
    def config(self) -> Config: ...
    @property
    def read_config(self) -> Callable[[], Config] | None: ...
    @property
    def listener_names(self) -> Sequence[str]: ...
    @property
    def errors(self) -> Mapping[str, int]: ...
    @property
    def writer_lock(self) -> trio.Lock:
        """Held by the writer while it writes a batch and publishes its records."""

    def peers(self) -> list[tuple[int, Peer]]: ...
    async def maintain(self, job: Maintain) -> dict[str, Any]: ...
    async def reload(self, config: Config) -> None: ...
    def statistics(self) -> dict[str, Any]: ...
    def outputs_status(self) -> list[dict[str, Any]]: ...
    def set_publishing(self, on: bool) -> None: ...


class ControlServer:
    """Answers `logd-ctl`; owned by the daemon (`Daemon`), which feeds it live records."""

    def __init__(self, server: Daemon) -> None:
        self.server = server
        self.subscribers: set[_Subscriber] = set()
        self.rate = RateMeter()
        self.started = time.monotonic()
        self.clients = 0

    # --- feeding from the writer -------------------------------------------------------

    @property
    def wants_items(self) -> bool:
        return bool(self.subscribers)

    def publish(self, items: Iterable[dict[str, Any]]) -> None:
        """Hand live records to followers without ever waiting for one."""
        for item in items:
            for sub in self.subscribers:
                if not sub.filter.matches(item):
                    continue
                try:
                    sub.send.send_nowait({"item": item})
                except trio.WouldBlock:
                    sub.skipped += 1
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

    # --- connections -------------------------------------------------------------------

    async def serve(self, listener: trio.SocketListener) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    stream = await listener.accept()
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    nursery.cancel_scope.cancel()
                    return
                nursery.start_soon(self._handle, stream)

    async def _handle(self, stream: trio.SocketStream) -> None:
        decoder = wire.MapDecoder(max_message_bytes=MAX_REQUEST_BYTES)
        self.clients += 1
        try:
            while True:
                event = await next_event(stream, decoder)
                if isinstance(event, wire.Closed):
                    return
                try:
                    req = control.parse_request(event)
                    if req.command == "tail" and req.args.get("follow"):
                        await self._follow(stream, req)
                        return
                    reply = control.ok(await self._answer(req))
                except ControlError as exc:
                    reply = control.error(exc.code, exc.message)
                except OSError as exc:
                    reply = control.error("failed", str(exc))
                await stream.send_all(wire.encode_map(reply))
        except wire.RemoteProtocolError as exc:
            log.warning("control: bad request bytes (%s); closing", exc.code)
            await _send_quietly(stream, control.error(exc.code, str(exc)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.clients -= 1
            await stream.aclose()

    async def _answer(self, req: Request) -> Any:
        args = req.args
        if req.command == "status":
            return await self._status()
        if req.command in ("cleanup", "rotate", "reload"):
            return await self._maintenance(req)
        root = self.server.config.root
        utc = self.server.config.layout.utc
        now = time.time()
        if req.command == "tail":
            return await trio.to_thread.run_sync(
                _read_backlog, root, control.tail_args(args, now), utc
            )
        if req.command == "events":
            for key in ("since", "until"):
                if key in args:
                    args[key] = control.parse_time(args[key], now)
        return await trio.to_thread.run_sync(queries.query, root, req, utc)

    async def _maintenance(self, req: Request) -> Any:
        server = self.server
        if req.command == "reload":
            reader = server.read_config
            if reader is None:
                raise ControlError("unsupported", "this daemon was started without a config reader")
            try:
                config = reader()
                pending = needs_restart(changed_keys(server.config, config))
                await server.reload(config)
            except ConfigError as exc:
                raise ControlError("bad-config", str(exc)) from exc
            return {"reloaded": True, "restart_needed": pending}
        job = Maintain(req.command, dry_run=bool(req.args.get("dry_run")))
        return await server.maintain(job)

    async def _status(self) -> dict[str, Any]:
        server = self.server
        snapshot = await server.maintain(Maintain("snapshot"))
        conn_runs: dict[int, list[tuple[str, str]]] = snapshot["conn_runs"]
        clients = []
        for conn_id, peer in server.peers():
            runs = conn_runs.get(conn_id, [])
            clients.append(
                {
                    **peer.as_dict(),
                    "apps": sorted({app for app, _ in runs}),
                    "runs": sorted({run for _, run in runs}),
                }
            )
        now = time.monotonic()
        series = self.rate.series(time.time())
        disk = await trio.to_thread.run_sync(queries.disk_bytes, server.config.root)
        totals = snapshot["totals"]
        return {
            "version": server.statistics()["version"],
            "pid": os.getpid(),
            "uptime_s": round(now - self.started, 3),
            "listeners": list(server.listener_names),
            "root": str(server.config.root),
            "clients": clients,
            "totals": {
                key: totals.get(key, 0)
                for key in (
                    "records_in",
                    "records_written",
                    "events_indexed",
                    "rejected",
                    "duplicates",
                    "dropped_by_clients",
                )
            },
            "rate_1m": round(sum(series) / 60, 3),
            "rate_series": series,
            "open_files": snapshot["open_files"],
            "active": snapshot["active"],
            "disk_bytes": disk,
            "last_error": totals.get("last_error"),
            "last_cleanup": snapshot["last_cleanup"],
            "errors": dict(server.errors),
            "outputs": server.outputs_status(),
        }

    async def _follow(self, stream: trio.SocketStream, req: Request) -> None:
        """Backlog first, then live records until the reader goes away.

        The two meet exactly: the backlog reader notes where each file stood while the
        writer is paused, and the subscription starts in that same pause.
        """
        config = self.server.config
        args = control.tail_args(req.args, time.time())
        reader = await trio.to_thread.run_sync(
            partial(Backlog, config.root, args, utc=config.layout.utc)
        )
        send, recv = trio.open_memory_channel[dict[str, Any]](SUBSCRIBER_QUEUE)
        try:
            await trio.to_thread.run_sync(reader.plan)
            sub = _Subscriber(TailFilter.from_args({**args, **_resolved(reader)}), send)
            async with self.server.writer_lock:
                snapshot = await trio.to_thread.run_sync(reader.capture)
                self.subscribers.add(sub)
                self.server.set_publishing(True)
            try:
                backlog = await trio.to_thread.run_sync(reader.finish, snapshot)
                reply = {**control.ok(backlog.pop("items")), **backlog}
                await stream.send_all(wire.encode_map(reply))
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(_wait_for_close, stream, nursery.cancel_scope)
                        await _forward(stream, recv, sub)
                except* (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # the follower went away
            finally:
                self.subscribers.discard(sub)
                self.server.set_publishing(bool(self.subscribers))
        finally:
            send.close()
            reader.close()


def _read_backlog(root: Path, args: dict[str, Any], utc: bool) -> list[dict[str, Any]]:
    reader = Backlog(root, args, utc=utc)
    try:
        reader.plan()
        items: list[dict[str, Any]] = reader.finish(None)["items"]
        return items
    finally:
        reader.close()


def _resolved(reader: Backlog) -> dict[str, Any]:
    return {"run": reader.resolved_run} if reader.resolved_run is not None else {}


async def _forward(
    stream: trio.SocketStream, recv: trio.MemoryReceiveChannel[dict[str, Any]], sub: _Subscriber
) -> None:
    async for message in recv:
        if sub.skipped:
            notice = f"skipped {sub.skipped} records: this reader was too slow"
            sub.skipped = 0
            await stream.send_all(wire.encode_map({"notice": notice}))
        await stream.send_all(wire.encode_map(message))


async def _wait_for_close(stream: trio.SocketStream, scope: trio.CancelScope) -> None:
    try:
        while await stream.receive_some(4096):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()


async def _send_quietly(stream: trio.SocketStream, reply: dict[str, Any]) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(wire.encode_map(reply))
