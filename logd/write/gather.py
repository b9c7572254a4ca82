"""Gather a batch: each message's records normalised, routed into lines and counted.

The engine's per-record half, split from `engine.py` along its seam: `Engine.process`
carries a batch out (files, index, metadata, acks); `Gatherer.ingest` decides what the
batch holds, record by record, with the registry kept in memory. No I/O here beyond what
the registry's lookups do.
"""

from __future__ import annotations

from typing import Any

from logd.config import Layout
from logd.index.registry import Registry
from logd.index.states import Peer, RunState
from logd.write.batch import Batch, Totals, lifecycle_event, note_paths
from logd.write.dedup import Dedup, chunk_key
from logd.write.jobs import Ingest
from logd.write.records import Normalizer, Record, Unroutable
from logd.write.routing import Kind, day_text, rejected_write, route, run_dir, tail_item
from logd.write.templates import Template, Templates


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
        self.registry = registry
        self.totals = totals
        self._dedup = dedup

    def ingest(
        self,
        job: Ingest,
        batch: Batch,
        now: int,
        *,
        forward: bool,
        published: list[dict[str, Any]] | None,
    ) -> None:
        """Gather one message's records into `batch`; a duplicate chunk only marks the job.

        Args:
            forward: records go to `[[forward]]` outputs too (`batch.outbound`).
            published: where live-tail items go while someone follows, else None.
        """
        entries, peer = job.entries, job.peer
        self.totals.messages += 1
        key = chunk_key(entries.chunk)
        if key is not None:
            if key in batch.chunks or self._dedup.already_written(key):
                job.duplicate = True
                self.totals.duplicates += 1
                return
            batch.chunks.add(key)
        self.totals.records_in += len(entries.entries) + len(entries.invalid)
        for invalid in entries.invalid:
            self.reject(batch, now, invalid.reason, entries.tag, invalid.raw, peer)
        layout = self.templates.layout
        templates = self.templates
        registry = self.registry
        lines, rows = batch.lines, batch.rows
        run: RunState | None = None
        normalize = Normalizer(entries.tag)
        # The previous record's template and the batch's lists of its files, when it was
        # plain: a repeat of it only appends its lines there.
        template: Template | None = None
        targets: list[list[str]] = []
        files_of: dict[int, tuple[Template, list[list[str]]]] = {}
        tallies: dict[tuple[str, str, str], _Tally] = {}
        last: Record | None = None
        render, note_record = templates.render_into, registry.note_record
        follow = forward or published is not None
        # Repeats of `last` not written yet: their times and messages.
        times: list[int] = []
        msgs: list[str] = []
        for time_ns, raw in entries.entries:
            if (
                template is not None
                and last is not None
                and run is not None
                and not follow
                and normalize.repeats(time_ns, raw)
            ):
                # The previous record again but for time and message: same run, same
                # files, same counts; only a session's registry row wants the record.
                times.append(time_ns)
                msgs.append(raw["msg"])
                if last.session_id is not None:
                    _tally(tallies, last, run.run_id, template, time_ns)
                continue
            if times:
                self._write_repeats(template, targets, run, last, times, msgs)
                times, msgs = [], []
            try:
                record = normalize(time_ns, raw)
            except Unroutable as exc:
                self.reject(batch, now, str(exc), entries.tag, raw, peer)
                template = None
                continue
            last = normalize.last
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
                # Interleaved contexts (sessions) take turns: each finds its files' lists
                # once per message, not once per record.
                known = files_of.get(id(template))
                if known is not None and known[0] is template:
                    targets = known[1]
                else:
                    targets = [lines.to(kind, path) for kind, path in template.paths]
                    files_of[id(template)] = (template, targets)
                render(template, targets, record.time_ns, record.msg)
                paths = template.paths
            else:
                if tallies:  # this record may end a session: the counts come first
                    _settle(tallies, registry, batch, now)
                routed = route(record, run.run_id, layout, call_day=call.day if call else None)
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
            self._write_repeats(template, targets, run, last, times, msgs)
        if tallies:
            _settle(tallies, registry, batch, now)

    def _write_repeats(
        self,
        template: Template | None,
        targets: list[list[str]],
        run: RunState | None,
        last: Record | None,
        times: list[int],
        msgs: list[str],
    ) -> None:
        """Write the repeats of `last` gathered by `_ingest()`, and count them."""
        assert template is not None
        assert run is not None
        assert last is not None
        self.templates.render_many(template, targets, times, msgs)
        self.registry.note_repeats(run, last, len(times), max(times))

    def reject(
        self, batch: Batch, now: int, reason: str, tag: str, raw: object, peer: Peer
    ) -> None:
        self.totals.rejected += 1
        batch.lines.add((rejected_write(now, reason, tag, raw, peer.as_dict()),))
