"""The daemon's own timeline: its facts as canonical events of app `logd` (#16 item 12).

Start, stop, reload, rotation, a disk that refused and recovered, cleanup and I/O errors
are what an operator asks about first when lines are missing; journald keeps them next
to the logs, and so does logd: in `<root>/logd/events.log` and the index, where
`logd-ctl events --app logd` and the web's status page read them.

Pure: facts go in with their time, writes and index rows come out; the engine puts them
in a batch. A fact noted while the disk refuses waits (`restore`) and is written with
the first batch that gets through, so the refusal itself is on record once it is over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from logd.index.eventline import EventRow, format_event_line, iso_utc_ms
from logd.index.levels import ERROR_LEVELNO, INFO_LEVELNO
from logd.write.routing import Kind, Write

__all__ = ["APP", "Fact", "Timeline", "writes_for"]

APP = "logd"
"""The app name the daemon's own events are filed under."""
SOURCE = "logd"
EVENTS_PATH = f"{APP}/events.log"


@dataclass(frozen=True, slots=True)
class Fact:
    """One thing the daemon did or saw, as an event: when, what, and its fields."""

    ts_ns: int
    event_type: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Refusal:
    since_ns: int
    error: str
    batches: int = 0
    bytes: int = 0


class Timeline:
    """Facts waiting to be written, and the state of a disk refusal in progress."""

    def __init__(self) -> None:
        self._waiting: list[Fact] = []
        self._refusal: _Refusal | None = None
        # error:io while it repeats: one event per distinct error, with how many times.
        self._io_errors: dict[str, tuple[int, int]] = {}

    def note(self, ts_ns: int, event_type: str, text: str, **fields: Any) -> None:
        self._waiting.append(Fact(ts_ns, event_type, text, fields))

    def rotated(self, ts_ns: int, rotations: list[tuple[str, int]]) -> None:
        for path, size in rotations:
            self.note(ts_ns, "system:log_rotated", "rotated", file=path, size=size)

    def refused(self, ts_ns: int, error: str, nbytes: int, *, no_room: bool) -> None:
        """A batch the disk refused: a full disk opens (or extends) a refusal; any other
        I/O error is an `error:io`, counted while it repeats."""
        if no_room:
            if self._refusal is None:
                self._refusal = _Refusal(ts_ns, error)
            self._refusal.batches += 1
            self._refusal.bytes += nbytes
            return
        first, count = self._io_errors.get(error, (ts_ns, 0))
        self._io_errors[error] = (first, count + 1)

    def take(self) -> list[Fact]:
        """Every fact to write in the batch being built; `restore` them if it fails.

        A refusal in progress is not over yet: its events wait for a batch that commits
        (`committed`). I/O errors are written as soon as a batch can carry them.
        """
        facts, self._waiting = self._waiting, []
        for error, (first, count) in self._io_errors.items():
            facts.append(Fact(first, "error:io", error, {"count": count}))
        self._io_errors.clear()
        return facts

    def restore(self, facts: list[Fact]) -> None:
        """Put back the facts of a batch that was refused, ahead of newer ones."""
        self._waiting[:0] = [f for f in facts if f.event_type != "error:io"]
        for fact in facts:
            if fact.event_type == "error:io":
                first, count = self._io_errors.get(fact.text, (fact.ts_ns, 0))
                self._io_errors[fact.text] = (min(first, fact.ts_ns), count + fact.fields["count"])

    def committed(self, now_ns: int) -> None:
        """A batch got through: a refusal in progress is over, and goes on record."""
        refusal, self._refusal = self._refusal, None
        if refusal is None:
            return
        self.note(
            refusal.since_ns,
            "system:disk",
            "write refused",
            state="refused",
            error=refusal.error,
            batches=refusal.batches,
            bytes=refusal.bytes,
        )
        self.note(
            now_ns,
            "system:disk",
            "write recovered",
            state="recovered",
            duration_ms=(now_ns - refusal.since_ns) // 1_000_000,
            batches=refusal.batches,
            bytes=refusal.bytes,
        )

    @property
    def waiting(self) -> int:
        return len(self._waiting) + len(self._io_errors)


def writes_for(facts: list[Fact]) -> tuple[list[Write], list[EventRow]]:
    """The `logd/events.log` lines and index rows of some facts."""
    writes: list[Write] = []
    rows: list[EventRow] = []
    for fact in sorted(facts, key=lambda f: f.ts_ns):
        line = format_event_line(fact.ts_ns, fact.event_type, SOURCE, fact.text, fact.fields)
        writes.append(Write(Kind.EVENTS, EVENTS_PATH, line + "\n"))
        rows.append(
            EventRow(
                ts=iso_utc_ms(fact.ts_ns),
                event_type=fact.event_type,
                source=SOURCE,
                message=fact.text,
                app=APP,
                run_id=None,
                session_id=None,
                call_id=None,
                kv_json=_kv_json(fact.fields),
                raw_line=line,
                levelno=ERROR_LEVELNO if fact.event_type.startswith("error:") else INFO_LEVELNO,
            )
        )
    return writes, rows


def _kv_json(fields: dict[str, Any]) -> str | None:
    if not fields:
        return None
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"), default=str)
