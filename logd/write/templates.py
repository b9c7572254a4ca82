"""Ready-made lines for plain records: most records differ from the one before only in
their time and message.

A plain record is a log call's: no event, no traceback, no extra fields, below ERROR. Its
lines depend on its context (app, run, logger, level, session; for a call's record also
the call, its bot, its date folder and the thread, which call lines show) plus its time
and message, so the lines of a context are worked out once, by routing a probe record
through `route()` and cutting each line around the probe's time and message. What comes
out is therefore `route()`'s own output, not a second copy of the formats; a test holds
the two to the same lines. Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Final, NamedTuple, Protocol

from logd.config import Layout
from logd.index.eventline import iso_utc_ms
from logd.index.levels import ERROR_LEVELNO
from logd.write.records import Record
from logd.write.routing import Kind, Write, clock_text, day_text, route

# Any fixed moment serves; this one has a distinct digit in every position of its text.
_PROBE_NS: Final = 1_234_567_890_456_000_000  # 2009-02-13T23:31:30.456Z
_PROBE_MSG: Final = '\x00logd probe "msg"\x00'  # JSON escapes it: raw and JSON forms differ
_PROBE_JSON: Final = json.dumps(_PROBE_MSG, ensure_ascii=False)
# ~1.6 KiB each: 10,000 live sessions fit (~16 MiB); round-robin over more rebuilds.
MAX_CONTEXTS: Final = 10_240
_MAX_CACHED_MS: Final = 4096
_MILLIS: Final = tuple(f",{ms:03d}" for ms in range(1000))
_ISO_MILLIS: Final = tuple(f".{ms:03d}Z" for ms in range(1000))
# What `json.dumps(ensure_ascii=False)` escapes in a string; without any, it only quotes.
_JSON_ESCAPES: Final = re.compile(r'[\x00-\x1f"\\]')

# One line's constant parts: (head, time as ISO (else as clock text)?, middle, message as
# JSON?, tail).
_Piece = tuple[str, bool, str, bool, str]


class Template(NamedTuple):
    """A context's pieces and their files; whether any piece wants the clock text, the
    ISO time, the message as JSON."""

    pieces: tuple[_Piece, ...]
    paths: tuple[tuple[Kind, str], ...]
    wants_clock: bool
    wants_iso: bool
    wants_json: bool


_Key = tuple[str, str, str, str, str | None, str | None, str | None, str, int | None]


class Placed(Protocol):
    """A record's template and the batch's line lists of its files (a gatherer's context)."""

    @property
    def template(self) -> Template: ...

    @property
    def targets(self) -> Sequence[list[str]]: ...


def _dumps(text: str, _escapes: re.Pattern[str] = _JSON_ESCAPES) -> str:
    """`json.dumps(text, ensure_ascii=False)`; a message with nothing to escape is only
    quoted, at a tenth of the cost (most messages)."""
    if _escapes.search(text) is None:
        return f'"{text}"'
    return json.dumps(text, ensure_ascii=False)


class Templates:
    """The lines of plain records, one template per context, for one layout.

    Args:
        layout: the layout in force; make a new `Templates` when it changes.
    """

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._clock = partial(clock_text, utc=layout.utc)
        self._cache: dict[_Key, Template | None] = {}
        self._second, self._second_text = -1, ""
        self._iso_second, self._iso_second_text = -1, ""
        # Millisecond -> text: a message's records fall in a few hundred milliseconds.
        self._clock_ms: dict[int, str] = {}
        self._iso_ms: dict[int, str] = {}

    def writes(
        self, record: Record, run_id: str, call_day: str | None = None
    ) -> list[Write] | None:
        """The writes of `record`, exactly as `route()` gives them, or None when the record
        is not plain (or its context has no template): then use `route()`.
        """
        template = self.find(record, run_id, call_day)
        if template is None:
            return None
        lines: list[list[str]] = [[] for _ in template.pieces]
        self.render_into(template, lines, record.time_ns, record.msg)
        return [
            Write(kind, path, line)
            for (kind, path), (line,) in zip(template.paths, lines, strict=True)
        ]

    def find(self, record: Record, run_id: str, call_day: str | None = None) -> Template | None:
        """The template of `record`'s context, None when the record is not plain.

        `call_day` is the date folder of the record's call, as `route()` takes it.
        """
        if (
            record.event_type is not None
            or record.exc
            or record.extra
            or record.kv
            or record.levelno >= ERROR_LEVELNO  # indexed as well: route() makes its row
        ):
            return None
        call_id = record.call_id
        day, thread = "", None
        if call_id is not None:
            day = call_day or day_text(record.time_ns, self.layout.utc)
            thread = record.thread
        elif record.bot_id is not None:
            return None
        key = (
            record.app,
            run_id,
            record.logger,
            record.level,
            record.session_id,
            call_id,
            record.bot_id,
            day,
            thread,
        )
        try:
            return self._cache[key]
        except KeyError:
            return self._build(record, run_id, key, day)

    def render_into(
        self, template: Template, targets: Sequence[list[str]], time_ns: int, msg: str
    ) -> None:
        """Append the record's line for each piece of `template` to the matching target
        (the batch's lines of that piece's file): the writer's hot path."""
        pieces, _, wants_clock, wants_iso, wants_json = template
        clock = self._clock_of(time_ns) if wants_clock else ""
        iso = self._iso_of(time_ns) if wants_iso else ""
        quoted = _dumps(msg) if wants_json else ""
        for (head, is_iso, mid, js, tail), target in zip(pieces, targets, strict=True):
            target.append(f"{head}{iso if is_iso else clock}{mid}{quoted if js else msg}{tail}")

    def render_many(
        self,
        template: Template,
        targets: Sequence[list[str]],
        times: Sequence[int],
        msgs: Sequence[str],
    ) -> None:
        """`render_into()` for a run of records of one template, oldest first.

        A producer's records mostly come in such runs (see `Normalizer.repeats()`), and one
        list comprehension per file costs far less than a call per record.
        """
        pieces, _, wants_clock, wants_iso, wants_json = template
        clocks: Sequence[str] = ()
        if wants_clock:
            clocks = self._texts(times, self._clock_ms, self._clock_of)
        isos = self._texts(times, self._iso_ms, self._iso_of) if wants_iso else ()
        texts = [_dumps(msg) for msg in msgs] if wants_json else msgs
        for (head, is_iso, mid, js, tail), target in zip(pieces, targets, strict=True):
            stamps = isos if is_iso else clocks
            bodies = texts if js else msgs
            target.extend([f"{head}{t}{mid}{b}{tail}" for t, b in zip(stamps, bodies, strict=True)])

    def render_each(
        self, placed: Sequence[Placed], times: Sequence[int], msgs: Sequence[str]
    ) -> None:
        """`render_into()` for records of any templates, in the given order.

        Sessions taking turns make runs of records whose templates differ from one record
        to the next; one loop here costs about half of a call per record.
        """
        first = placed[0]
        if placed.count(first) == len(placed):
            self.render_many(first.template, first.targets, times, msgs)
            return
        distinct = list({id(where): where for where in placed}.values())
        # Only the texts some line wants: a call's line has no ISO time and no JSON.
        blank = [""] * len(times)
        clocks = isos = texts = blank
        if any(where.template.wants_clock for where in distinct):
            clocks = self._texts(times, self._clock_ms, self._clock_of)
        if any(where.template.wants_iso for where in distinct):
            isos = self._texts(times, self._iso_ms, self._iso_of)
        if any(where.template.wants_json for where in distinct):
            texts = [_dumps(msg) for msg in msgs]
        slots = _uniform_slots(distinct)
        # File by file (the nth line of every record, then the next): a third cheaper than
        # record by record, and each file still gets its lines in arrival order.
        for slot in range(slots):
            for where, clock, iso, text, msg in zip(placed, clocks, isos, texts, msgs, strict=True):
                head, is_iso, mid, js, tail = where.template.pieces[slot]
                where.targets[slot].append(
                    f"{head}{iso if is_iso else clock}{mid}{text if js else msg}{tail}"
                )
        if slots:
            return
        for where, clock, iso, text, msg in zip(placed, clocks, isos, texts, msgs, strict=True):
            for (head, is_iso, mid, js, tail), target in zip(
                where.template.pieces, where.targets, strict=True
            ):
                target.append(f"{head}{iso if is_iso else clock}{mid}{text if js else msg}{tail}")

    @staticmethod
    def _texts(
        times: Sequence[int], cache: dict[int, str], text_of: Callable[[int], str]
    ) -> list[str]:
        """`text_of(t)` for each time, from `cache` (keyed by millisecond) where it has it:
        a dictionary lookup costs less than half of a call per record."""
        get = cache.get
        texts = [get(time_ns // 1_000_000) for time_ns in times]
        if None in texts:
            for at, text in enumerate(texts):
                if text is None:
                    if len(cache) >= _MAX_CACHED_MS:
                        cache.clear()
                    time_ns = times[at]
                    texts[at] = cache[time_ns // 1_000_000] = text_of(time_ns)
        return texts  # type: ignore[return-value]  # no None is left

    def _clock_of(self, time_ns: int) -> str:
        # clock_text(), with the text of the last second kept: records come in bursts.
        second, rest = divmod(time_ns, 1_000_000_000)
        if second != self._second:
            self._second, self._second_text = second, self._clock(second * 1_000_000_000)[:-4]
        return self._second_text + _MILLIS[rest // 1_000_000]

    def _iso_of(self, time_ns: int) -> str:
        # iso_utc_ms(), with the text of the last second kept, as _clock_of() does.
        second, rest = divmod(time_ns, 1_000_000_000)
        if second != self._iso_second:
            text = iso_utc_ms(second * 1_000_000_000)[:-5]
            self._iso_second, self._iso_second_text = second, text
        return self._iso_second_text + _ISO_MILLIS[rest // 1_000_000]

    def _build(self, record: Record, run_id: str, key: _Key, day: str) -> Template | None:
        if len(self._cache) >= MAX_CONTEXTS:
            self._cache.clear()  # sessions come and go; a few rebuilds cost little
        # A call line shows the thread: its template is the thread's (the key has it).
        thread = record.thread if record.call_id is not None else None
        probe = replace(record, time_ns=_PROBE_NS, msg=_PROBE_MSG, pid=None, thread=thread)
        routed = route(probe, run_id, self.layout, call_day=day or None)
        pieces: list[tuple[tuple[Kind, str], _Piece]] = []
        for write in routed.writes:
            piece = self._cut(write)
            if piece is None:
                self._cache[key] = None
                return None
            pieces.append(((write.kind, write.path), piece))
        result = Template(
            tuple(piece for _, piece in pieces),
            tuple(where for where, _ in pieces),
            any(not piece[1] for _, piece in pieces),
            any(piece[1] for _, piece in pieces),
            any(piece[3] for _, piece in pieces),
        )
        self._cache[key] = result
        return result

    def _cut(self, write: Write) -> _Piece | None:
        """Split a probe's line into the constant parts around its time and message.

        None when the probe's time or message is not found exactly once, in that order
        (an id that happens to contain the probe's text): such a context is routed
        record by record.
        """
        line = write.line
        time_form = _once(line, self._clock(_PROBE_NS), iso_utc_ms(_PROBE_NS))
        msg_form = _once(line, _PROBE_MSG, _PROBE_JSON)
        if time_form is None or msg_form is None:
            return None
        (when, is_iso), (text, js) = time_form, msg_form
        time_at, msg_at = line.index(when), line.index(text)
        time_end = time_at + len(when)
        if msg_at < time_end:
            return None
        head, mid, tail = line[:time_at], line[time_end:msg_at], line[msg_at + len(text) :]
        return (head, is_iso, mid, js, tail)


def _uniform_slots(distinct: Sequence[Placed]) -> int:
    """How many lines each record of these contexts has, when rendering them file by file
    keeps each file's lines in arrival order: every context has that many, and each file
    is the nth of every context that writes to it. Else 0 (a session's file is second for
    one logger and third for another that has a component file): render record by record."""
    count = len(distinct[0].targets)
    slot_of: dict[int, int] = {}
    for where in distinct:
        targets = where.targets
        if len(targets) != count:
            return 0
        for slot, target in enumerate(targets):
            if slot_of.setdefault(id(target), slot) != slot:
                return 0
    return count


def _once(line: str, first: str, second: str) -> tuple[str, bool] | None:
    """The form found exactly once in `line`, `first` tried first, and whether it is `second`."""
    if line.count(first) == 1:
        return first, False
    if line.count(second) == 1:
        return second, True
    return None
