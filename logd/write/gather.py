"""Gather a batch: each message's records normalised, routed into lines and counted.

The engine's per-record half, split from `engine.py` along its seam: `Engine.process`
carries a batch out (files, index, metadata, acks); `Gatherer.ingest` decides what the
batch holds, record by record, with the registry kept in memory. No I/O here beyond what
the registry's lookups do.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from logd_client import wire

from logd.config import Layout
from logd.index.registry import Registry
from logd.index.states import Peer, RunState
from logd.write.batch import Batch, Totals, lifecycle_event, note_paths
from logd.write.dedup import Dedup, chunk_key
from logd.write.jobs import Ingest
from logd.write.records import Normalizer, Record, Unroutable, same_but_msg
from logd.write.routing import (
    Kind,
    Routed,
    day_text,
    rejected_write,
    route,
    run_dir,
    tail_item,
)
from logd.write.templates import Template, Templates

# Contexts kept per (connection, tag) at most; past it they are worked out again.
MAX_CONTEXTS = 10_240


class _Context:
    """A context's last plain record on one connection, with what routing it worked out.

    Kept from message to message and batch to batch: with many sessions on a connection,
    a message holds only a few records of each, and working each context out again per
    message put a third of the records on the slow path. Its repeats (equal but for time
    and message) are counted here and noted in the run's registry row at once (`settle`),
    when the context is replaced or the message ends. `targets` are `batch`'s line lists.
    """

    __slots__ = ("batch", "count", "last_ns", "raw", "record", "run", "targets", "template")

    def __init__(
        self,
        raw: dict[str, Any],
        record: Record,
        template: Template,
        targets: list[list[str]],
        run: RunState,
        batch: Batch,
    ) -> None:
        self.raw, self.record, self.template, self.targets, self.run = (
            raw,
            record,
            template,
            targets,
            run,
        )
        self.batch = batch
        self.count, self.last_ns = 0, record.time_ns

    def bind(self, batch: Batch) -> None:
        """Write into `batch` from now on: its line lists, its runs touched."""
        self.batch = batch
        self.targets = [batch.lines.to(kind, path) for kind, path in self.template.paths]
        batch.run_dirs[run_dir(self.run.app, self.run.run_id)] = self.run

    def settle(self, registry: Registry) -> None:
        """Note the repeats counted so far in the run's registry row."""
        registry.note_repeats(self.run, self.record, self.count, self.last_ns)
        self.count = 0


class _Tally:
    """A session's plain records in one message, not yet noted in the registry."""

    __slots__ = ("count", "first_ns", "last_ns", "path", "record", "run_id")

    def __init__(self, record: Record, run_id: str, path: str, time_ns: int) -> None:
        self.record, self.run_id, self.path = record, run_id, path
        self.count, self.first_ns, self.last_ns = 0, time_ns, time_ns


def _tally(
    tallies: dict[tuple[str, str, str], _Tally],
    record: Record,
    run_id: str,
    template: Template,
    time_ns: int,
) -> None:
    """Count a plain session record; the registry hears of it once per message."""
    assert record.session_id is not None
    key = (record.app, record.session_id, run_id)
    tally = tallies.get(key)
    if tally is None:
        path = next(path for kind, path in template.paths if kind is Kind.SESSION)
        tally = tallies[key] = _Tally(record, run_id, path, time_ns)
    tally.count += 1
    if time_ns < tally.first_ns:
        tally.first_ns = time_ns
    elif time_ns > tally.last_ns:
        tally.last_ns = time_ns


def _settle(
    tallies: dict[tuple[str, str, str], _Tally], registry: Registry, batch: Batch, now: int
) -> None:
    """Apply the tallies: what `note_paths()` per record would have left, in one step each.

    Registry updates once per session per message rather than per record: with sessions
    interleaved (the normal case) this was a tenth of the writer's time.
    """
    for tally in tallies.values():
        session = registry.note_session(tally.record, tally.run_id, now)
        session.records += tally.count - 1
        session.first_ns = min(session.first_ns, tally.first_ns)
        session.last_ns = max(session.last_ns, tally.last_ns)
        session.path = tally.path
        batch.sessions[(session.app, session.session_id)] = session
    tallies.clear()


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
        # Each (connection, tag)'s contexts by session id; see `_Context`.
        self._contexts: dict[tuple[int, str], dict[str | None, _Context]] = {}
        self._settling: list[_Context] = []  # contexts with repeats not yet settled

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
        for entries in job.messages:
            self.totals.messages += 1
            key = chunk_key(entries.chunk)
            if key is not None:
                if key in batch.chunks or self._dedup.already_written(key):
                    self.totals.duplicates += 1
                    continue
                batch.chunks.add(key)
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
        render, note_record = templates.render_into, registry.note_record
        follow = forward or published is not None
        # Each context's (session's) last plain record, its template and files: a record
        # equal to it but for time and message reuses all of that (`_Context`). Sessions
        # take turns record by record, so "the previous record" alone seldom matches.
        # Records followed live or forwarded are routed one by one (no contexts).
        contexts: dict[str | None, _Context] = {}
        if not follow:
            key = (peer.conn_id, entries.tag)
            contexts = self._contexts.get(key) or {}
            if len(contexts) >= MAX_CONTEXTS:
                contexts = {}
            self._contexts[key] = contexts
        settling = self._settling
        settling.clear()  # settled at the end of each message; left over only by an error
        files_of: dict[int, tuple[Template, list[list[str]]]] = {}
        tallies: dict[tuple[str, str, str], _Tally] = {}
        # Repeats of `pending` not written yet: their times and messages, in order.
        pending: _Context | None = None
        times: list[int] = []
        msgs: list[str] = []
        for time_ns, raw in entries.entries:
            if contexts and raw.__class__ is dict:
                sid = raw.get("session_id")
                ctx = contexts.get(sid) if sid is None or sid.__class__ is str else None
                if ctx is not None and ctx.run.active and same_but_msg(ctx.raw, time_ns, raw):
                    # Same run, files and counts as the context's record; only a
                    # session's registry row wants each record (tallied).
                    if ctx.batch is not batch:
                        ctx.bind(batch)
                    if not ctx.count:
                        settling.append(ctx)
                    if ctx is not pending:
                        if times:
                            self._write_repeats(pending, times, msgs)
                            times, msgs = [], []
                        pending = ctx
                    times.append(time_ns)
                    msgs.append(raw["msg"])
                    if ctx.record.session_id is not None:
                        _tally(tallies, ctx.record, ctx.run.run_id, ctx.template, time_ns)
                    continue
            if times:  # lines keep arrival order: the repeats go first
                self._write_repeats(pending, times, msgs)
                times, msgs = [], []
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
            template = templates.find(record, run.run_id)
            if template is not None:
                known = files_of.get(id(template))
                if known is not None and known[0] is template:
                    targets = known[1]
                else:
                    targets = [lines.to(kind, path) for kind, path in template.paths]
                    files_of[id(template)] = (template, targets)
                render(template, targets, record.time_ns, record.msg)
                paths = template.paths
                if not follow and normalize.last is record and isinstance(raw, dict):
                    sid = record.session_id
                    old = contexts.get(sid)
                    if old is not None and old.count:
                        old.settle(registry)
                    contexts[sid] = _Context(raw, record, template, targets, run, batch)
            else:
                if tallies:  # this record may end a session: the counts come first
                    _settle(tallies, registry, batch, now)
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
                _tally(tallies, record, run.run_id, template, record.time_ns)
            elif call is not None or record.session_id is not None:
                note_paths(registry, record, run, call, paths, batch, now)
            if record.event_type is not None:
                lifecycle_event(registry, self.totals, record, paths, batch)
        if times:
            self._write_repeats(pending, times, msgs)
        for ctx in settling:
            if ctx.count:
                ctx.settle(registry)
        settling.clear()
        if tallies:
            _settle(tallies, registry, batch, now)

    def _switch_off(self, routed: Routed) -> Routed:
        """`[events] off`: a matching event keeps its record lines but loses its
        `events.log` line and index row, and is counted."""
        assert routed.event is not None
        event_type = routed.event.event_type
        if not any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.events_off):
            return routed
        self.totals.events_off += 1
        return Routed([w for w in routed.writes if w.kind != Kind.EVENTS], None)

    def _write_repeats(self, ctx: _Context | None, times: list[int], msgs: list[str]) -> None:
        """Write a run of repeats of `ctx`'s record; their run counts are settled later."""
        assert ctx is not None
        if len(times) == 1:  # sessions taking turns: the usual run is one record long
            self.templates.render_into(ctx.template, ctx.targets, times[0], msgs[0])
        else:
            self.templates.render_many(ctx.template, ctx.targets, times, msgs)
        ctx.count += len(times)
        last_ns = max(times)
        if last_ns > ctx.last_ns:
            ctx.last_ns = last_ns

    def reject(
        self, batch: Batch, now: int, reason: str, tag: str, raw: object, peer: Peer
    ) -> None:
        self.totals.rejected += 1
        batch.lines.add((rejected_write(now, reason, tag, raw, peer.as_dict()),))
