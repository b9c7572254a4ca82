"""What the trio side hands the writer: messages to write, a closed connection, a
tick, or an operator's maintenance request.

Plain data, no I/O: connection tasks and the control server build these, and the
writer passes them to `Engine.process` in batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from logd_client import wire

from logd.config import Config
from logd.index.states import Peer

__all__ = ["ConnClosed", "Ingest", "Job", "Maintain", "Note", "Tick"]


@dataclass(slots=True)
class Ingest:
    """Messages one connection had buffered, in order, written in one batch (never split
    across two, so a refused batch cannot be overtaken by the rest); `ok` once durable.

    The writer empties `messages` once it has their lines: decoded records take several
    times their size on the wire, and the batch's lines need the room meanwhile. Whoever
    queued the job keeps what its acks need (the chunks) on its own.
    """

    peer: Peer
    messages: list[wire.Entries]
    ok: bool = False
    written: int = 0  # records in `messages` not already written (duplicates left out)


@dataclass(slots=True)
class ConnClosed:
    peer: Peer
    by_daemon: bool


@dataclass(slots=True)
class Tick:
    """Periodic housekeeping: vanished processes, idle sessions, metadata refresh."""


@dataclass(slots=True)
class Maintain:
    """An operator's request carried out between batches: cleanup, rotate or reload."""

    action: str
    dry_run: bool = False
    config: Config | None = None
    result: dict[str, Any] = field(default_factory=dict)
    done: bool = False


@dataclass(slots=True)
class Note:
    """A fact about the daemon itself (start, stop, reload) for its own timeline."""

    ts_ns: int
    event_type: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)


Job = Ingest | ConnClosed | Tick | Maintain | Note
