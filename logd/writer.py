"""The writer task and its queue: jobs in over a bounded channel, one batch at a time.

Connection tasks, housekeeping and the server only queue jobs here; the writer task takes
what waits in the channel as one batch and runs it through the `Engine` in a worker
thread, so a slow disk slows the clients that wait for acks rather than the event loop.
It knows nothing of the control side or the outputs: it reports each batch through the
callables it is given.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import trio
from logd_client import wire

from logd.index.states import Peer
from logd.write.engine import Engine
from logd.write.flight import Flight
from logd.write.jobs import Ingest, Job, Note, Tick

__all__ = ["Writer"]

log = logging.getLogger("logd.writer")

WRITER_QUEUE = 1024
WRITER_BATCH = 512
FAILURE_REPORT_EVERY_S = 10.0

Queued = tuple[Job, trio.Event | None]
_T = TypeVar("_T")


class Writer:
    """The queue in front of the engine, and the task that empties it.

    Args:
        errors: the daemon's error counter; a failed batch counts as `write-failed`.
        enqueue_timeout_s: how long `enqueue()` waits for room in a full queue.
        publish: takes a batch's live-tail items, under `lock`.
        after_batch: called after each batch with the count of records it wrote.
    """

    def __init__(
        self,
        *,
        errors: Counter[str],
        enqueue_timeout_s: float,
        publish: Callable[[list[dict[str, Any]]], None],
        after_batch: Callable[[int], None],
    ) -> None:
        self.errors = errors
        self.enqueue_timeout_s = enqueue_timeout_s
        self._publish = publish
        self._after_batch = after_batch
        # Held from writing a batch until its records are published: a `tail -f` takes it
        # to start exactly between two batches (logd.control.backlog).
        self.lock = trio.Lock()
        self._send: trio.MemorySendChannel[Queued] | None = None
        self._last_failure_report = -FAILURE_REPORT_EVERY_S
        self._unreported_failures = 0

    def open(self) -> tuple[trio.MemorySendChannel[Queued], trio.MemoryReceiveChannel[Queued]]:
        """Open the queue; `run()` takes the receiving end, the caller closes the other."""
        send, recv = trio.open_memory_channel[Queued](WRITER_QUEUE)
        self._send = send
        return send, recv

    @property
    def waiting(self) -> int:
        """Jobs queued for the writer and not taken yet."""
        return 0 if self._send is None else self._send.statistics().current_buffer_used

    # --- queueing ----------------------------------------------------------------------

    async def submit(self, peer: Peer, entries: wire.Entries) -> bool:
        """Hand one message to the writer and wait until it is durable (or failed)."""
        return await self.submit_many(peer, [entries]) == 1

    async def submit_many(self, peer: Peer, messages: list[wire.Entries]) -> int:
        """Hand messages to the writer as one job and wait until they are durable; returns
        how many of them, from the first, are (all or none: one job is one batch's).

        The writer empties `messages` as it takes their lines (`Ingest`).
        """
        count = len(messages)
        job = Ingest(peer, messages)
        done = trio.Event()
        if not await self.enqueue(job, done):
            return 0
        await done.wait()
        return count if job.ok else 0

    async def enqueue(self, job: Job, done: trio.Event | None) -> bool:
        """Queue a job for the writer; False when it did not take it (stopped, or full for
        `enqueue_timeout_s`), and then `done` will never be set."""
        assert self._send is not None
        with trio.move_on_after(self.enqueue_timeout_s):
            try:
                await self._send.send((job, done))
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return False
            return True
        return False

    def note(self, event_type: str, text: str, **fields: Any) -> None:
        """Put a fact on the daemon's own timeline; dropped (and logged) if the writer's
        queue is full, which only a stuck disk causes."""
        assert self._send is not None
        try:
            self._send.send_nowait((Note(time.time_ns(), event_type, text, fields), None))
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            log.warning(
                "%s not recorded in the timeline: the writer is not taking jobs", event_type
            )

    def tick(self) -> None:
        """Queue a tick unless the queue is full (then the next one will do)."""
        assert self._send is not None
        with contextlib.suppress(trio.WouldBlock):
            self._send.send_nowait((Tick(), None))

    # --- the task ----------------------------------------------------------------------

    async def run(self, engine: Engine, recv: trio.MemoryReceiveChannel[Queued]) -> None:
        """Write batches until the queue is closed and empty.

        While a batch's files sync, the jobs that arrived meanwhile are gathered into the
        next batch (`Engine.overlap`), so the disk's flush and the writer's work on the
        next batch overlap. The lock is held from a batch's first write to its commit:
        a `tail -f` starting meanwhile waits, and a waiting one ends the overlapping.
        """
        async with recv:
            flight: Flight | None = None
            flying: list[Queued] = []  # the jobs of `flight`
            carried: list[Queued] = []  # taken from the queue, not carried out yet
            try:
                while True:
                    queued, carried = carried, []
                    if not queued and flight is None:
                        try:
                            queued.append(await recv.receive())
                        except trio.EndOfChannel:
                            return
                    _take_waiting(recv, queued)
                    jobs = [job for job, _ in queued]
                    overlaps = bool(jobs) and engine.overlaps(jobs)
                    if flight is not None:
                        if overlaps and not self.lock.statistics().tasks_waiting:
                            flight = await self._carry_out(engine, engine.overlap, jobs, flight)
                            _done(flying)
                            if flight is None:  # refused, and these with it
                                self.lock.release()
                                _done(queued)
                            flying = queued
                            continue
                        await self._carry_out(engine, engine.land, flight)
                        flight = None
                        self.lock.release()
                        _done(flying)
                        carried = queued
                        continue
                    await self.lock.acquire()
                    # A follower that held the lock meanwhile turned publishing on: ask again.
                    if overlaps and engine.overlaps(jobs):
                        flight = await self._carry_out(engine, engine.begin, jobs)
                        if flight is not None:
                            flying = queued
                            continue  # the lock stays held until it lands
                    else:
                        await self._carry_out(engine, engine.process, jobs)
                    self.lock.release()
                    _done(queued)
            finally:
                # Only an error in the writer itself gets here with the lock held.
                if self.lock.statistics().owner is trio.lowlevel.current_task():
                    self.lock.release()

    async def _carry_out(self, engine: Engine, step: Callable[..., _T], *args: Any) -> _T | None:
        """One step of the engine in a worker thread; None when the disk refused."""
        written_before = engine.totals.records_written
        result: _T | None = None
        try:
            result = await trio.to_thread.run_sync(step, *args)
        except OSError as exc:
            self.errors["write-failed"] += 1
            self._report_write_failure(exc)
            engine.published.clear()
        if engine.published:
            items, engine.published = engine.published, []
            self._publish(items)
        self._after_batch(engine.totals.records_written - written_before)
        return result

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


def _take_waiting(recv: trio.MemoryReceiveChannel[Queued], queued: list[Queued]) -> None:
    """Add what waits in the queue to `queued`, up to WRITER_BATCH jobs."""
    while len(queued) < WRITER_BATCH:
        try:
            queued.append(recv.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return


def _done(queued: list[Queued]) -> None:
    """Wake those waiting for these jobs: carried out, or refused."""
    for _, done in queued:
        if done is not None:
            done.set()
