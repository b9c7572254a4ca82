"""Gather a batch: each message's records normalised, routed into lines and counted.

The engine's per-record half, split from `engine.py` along its seam: `Engine.process`
carries a batch out (files, index, metadata, acks); `Gatherer.ingest` decides what the
batch holds, record by record, with the registry kept in memory. No I/O here beyond what
the registry's lookups do.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

from logd_client import wire

from logd.config import Layout
from logd.index.registry import Registry
from logd.index.states import Peer, RunState
from logd.write.batch import Batch, Totals, lifecycle_event, note_paths, tick
from logd.write.contexts import MAX_CONTEXTS, Context, Tally, settle_tallies, tally
from logd.write.dedup import ChunkKey, Dedup, chunk_key
from logd.write.jobs import ConnClosed, Ingest, Job, Tick
from logd.write.records import Normalizer, Unroutable, same_but_msg
from logd.write.rejects import rejected_write
from logd.write.routing import (
    Kind,
    Routed,
    day_text,
    route,
    run_dir,
    tail_item,
)
from logd.write.templates import Template, Templates


class Gatherer:
    """Turns `Ingest` jobs into a batch's lines, index rows and registry changes.

    Args:
        layout: the layout in force (`templates` is replaced on reload).
        registry, totals, dedup: the engine's, shared.
    """

    def __init__(self, layout: Layout, registry: Registry, totals: Totals, dedup: Dedup) -> None:
        self.templates = Templates(layout)
        # `[events] off` patterns (set by the engine, and again on reload).
        self.events_off: tuple[str, ...] = ()
        self.registry = registry
        self.totals = totals
        self._dedup = dedup
        # Each (connection, tag)'s contexts by (session id, call id); see `Context`.
        self._contexts: dict[tuple[int, str], dict[tuple[str | None, str | None], Context]] = {}
        self._settling: list[Context] = []  # contexts with repeats not yet settled
        # Chunks of the batch in flight (written, not yet committed): a resend of one
        # while it lands is a duplicate too (set by `Engine.overlap`).
        self.inflight: set[ChunkKey] = set()
        # Field prefixes of packed entries seen before: logd_client's records decode by them.
        self._prefixes = wire.Prefixes()

    def relayout(self, layout: Layout) -> None:
        """A reload changed the layout: lines are worked out afresh."""
        self.templates = Templates(layout)
        self._contexts.clear()

    @property
    def contexts_held(self) -> int:
        """How many contexts are kept (bounded per connection; they go with it)."""
        return sum(len(contexts) for contexts in self._contexts.values())

    def forget_connection(self, conn_id: int) -> None:
        """A connection closed: its contexts go (its run may end with it)."""
        for key in [key for key in self._contexts if key[0] == conn_id]:
            del self._contexts[key]

    def forget_contexts(self) -> None:
        """A batch was refused: the registry went back, so what contexts hold may be stale."""
        self._contexts.clear()
        self._settling.clear()

    def jobs(
        self,
        jobs: Sequence[Job],
        batch: Batch,
        now: int,
        *,
        session_idle_ns: int,
        forward: bool,
        published: list[dict[str, Any]] | None,
    ) -> None:
        """Gather a batch's jobs in order: records, closed connections, ticks (the
        operator's requests and the daemon's notes are the engine's)."""
        for job in jobs:
            if isinstance(job, Ingest):
                self.ingest(job, batch, now, forward=forward, published=published)
            elif isinstance(job, ConnClosed):
                batch.ended_runs += self.registry.connection_closed(
                    job.peer.conn_id, by_daemon=job.by_daemon, now_ns=now
                )
                self.forget_connection(job.peer.conn_id)
            elif isinstance(job, Tick):
                tick(self.registry, batch, now, session_idle_ns)

    def ingest(
        self,
        job: Ingest,
        batch: Batch,
        now: int,
        *,
        forward: bool,
        published: list[dict[str, Any]] | None,
    ) -> None:
        """Gather the records of a job's messages into `batch`; a chunk already written
        (a resend) is skipped and counted, and `job.written` counts the rest.

        Args:
            forward: records go to `[[forward]]` outputs too (`batch.outbound`).
            published: where live-tail items go while someone follows, else None.
        """
        # Each message leaves the job once its lines are gathered: its decoded records
        # (several times their size on the wire) may go while the batch goes on.
        messages = job.messages
        messages.reverse()
        while messages:
            entries = messages.pop()
            self.totals.messages += 1
            key = chunk_key(entries.chunk)
            if key is not None:
                if key in batch.chunks or key in self.inflight or self._dedup.already_written(key):
                    self.totals.duplicates += 1
                    continue
                batch.chunks.add(key)
            entries = wire.unpacked(entries, self._prefixes)
            job.written += len(entries.entries)
            self._message(entries, job.peer, batch, now, forward=forward, published=published)

    def _message(
        self,
        entries: wire.Entries,
        peer: Peer,
        batch: Batch,
        now: int,
        *,
        forward: bool,
        published: list[dict[str, Any]] | None,
    ) -> None:
        """Gather one message's records into `batch`."""
        self.totals.records_in += len(entries.entries) + len(entries.invalid)
        for invalid in entries.invalid:
            self.reject(batch, now, invalid.reason, entries.tag, invalid.raw, peer)
        layout = self.templates.layout
        templates = self.templates
        registry = self.registry
        lines, rows = batch.lines, batch.rows
        run: RunState | None = None
        normalize = Normalizer(entries.tag)
        note_record = registry.note_record
        follow = forward or published is not None
        # Each context's (session's) last plain record, its template and files: a record
        # equal to it but for time and message reuses all of that (`Context`). Sessions
        # take turns record by record, so "the previous record" alone seldom matches.
        # Records followed live or forwarded are routed one by one (no contexts).
        contexts: dict[tuple[str | None, str | None], Context] = {}
        if not follow:
            key = (peer.conn_id, entries.tag)
            contexts = self._contexts.get(key) or {}
            if len(contexts) >= MAX_CONTEXTS:
                contexts = {}
            self._contexts[key] = contexts
        settling = self._settling
        settling.clear()  # settled at the end of each message; left over only by an error
        files_of: dict[int, tuple[Template, list[list[str]]]] = {}
        tallies: dict[tuple[str, str, str], Tally] = {}
        # Repeats not written yet, in arrival order: their contexts' templates and files,
        # times and messages (written together: the run log keeps arrival order).
        where: list[Context] = []
        times: list[int] = []
        msgs: list[str] = []
        for time_ns, raw in entries.entries:
            if contexts and raw.__class__ is dict:
                sid, cid = raw.get("session_id"), raw.get("call_id")
                ctx = (
                    contexts.get((sid, cid))
                    if (sid is None or sid.__class__ is str)
                    and (cid is None or cid.__class__ is str)
                    else None
                )
                if ctx is not None and ctx.live and same_but_msg(ctx.raw, time_ns, raw):
                    # Same run, files and counts as the context's record: counted on it.
                    if ctx.batch is not batch:
                        ctx.bind(batch)
                    if not ctx.count:
                        settling.append(ctx)
                    ctx.repeat(time_ns)
                    where.append(ctx)
                    times.append(time_ns)
                    msgs.append(raw["msg"])
                    continue
            if times:  # lines keep arrival order: the repeats go first
                templates.render_each(where, times, msgs)
                where, times, msgs = [], [], []
            try:
                record = normalize(time_ns, raw)
            except Unroutable as exc:
                self.reject(batch, now, str(exc), entries.tag, raw, peer)
                continue
            # A message's records nearly always share one run: look it up once.
            if (
                run is None
                or record.run_id != run.run_id
                or record.app != run.app
                or record.run_id is None
                or not run.active
            ):
                run, created = registry.run_for(record, peer, now)
                if created:
                    batch.new_runs.append(run)
                batch.run_dirs[run_dir(run.app, run.run_id)] = run
            call = None
            if record.call_id is not None:
                day = day_text(record.time_ns, layout.utc)
                call = registry.note_call(record, run.run_id, day)
                batch.calls[(call.app, call.call_id, call.day)] = call
            template = templates.find(record, run.run_id, call.day if call else None)
            if template is not None:
                known = files_of.get(id(template))
                if known is not None and known[0] is template:
                    targets = known[1]
                else:
                    targets = [lines.to(kind, path) for kind, path in template.paths]
                    files_of[id(template)] = (template, targets)
                templates.render_into(template, targets, record.time_ns, record.msg)
                paths = template.paths
                if not follow and normalize.last is record and isinstance(raw, dict):
                    ids = (record.session_id, record.call_id)
                    old = contexts.get(ids)
                    if old is not None:
                        old.settle(registry, batch, now)
                    contexts[ids] = Context(raw, record, template, targets, run, batch, call)
            else:
                # This record may end a session: the counts so far come first.
                for ctx in settling:
                    ctx.settle(registry, batch, now)
                settling.clear()
                if tallies:
                    settle_tallies(tallies, registry, batch, now)
                routed = route(record, run.run_id, layout, call_day=call.day if call else None)
                if routed.event is not None and self.events_off:
                    routed = self._switch_off(routed)
                lines.add(routed.writes)
                paths = tuple((write.kind, write.path) for write in routed.writes)
                if routed.event is not None:
                    rows.append(routed.event)
            note_record(run, record)
            if forward:
                batch.outbound.append((record, run.run_id, peer))
            if published is not None:
                published.append(tail_item(record, run.run_id, layout))
            if template is not None and call is None and record.session_id is not None:
                tally(tallies, record, run.run_id, template, record.time_ns)
            elif call is not None or record.session_id is not None:
                note_paths(registry, record, run, call, paths, batch, now)
            if record.event_type is not None:
                lifecycle_event(registry, self.totals, record, paths, batch)
        if times:
            templates.render_each(where, times, msgs)
        for ctx in settling:
            ctx.settle(registry, batch, now)
        settling.clear()
        if tallies:
            settle_tallies(tallies, registry, batch, now)

    def _switch_off(self, routed: Routed) -> Routed:
        """`[events] off`: a matching event keeps its record lines but loses its
        `events.log` line and index row, and is counted."""
        assert routed.event is not None
        event_type = routed.event.event_type
        if not any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.events_off):
            return routed
        self.totals.events_off += 1
        return Routed([w for w in routed.writes if w.kind != Kind.EVENTS], None)

    def reject(
        self, batch: Batch, now: int, reason: str, tag: str, raw: object, peer: Peer
    ) -> None:
        self.totals.rejected += 1
        batch.lines.add((rejected_write(now, reason, tag, raw, peer.as_dict()),))
