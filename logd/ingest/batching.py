"""Taking every complete message a connection has already buffered, as one batch.

A foreign Forward client (Node's `@fluent-org/logger`, Docker's driver) writes many small
messages back to back, each with its own `chunk`. Served one at a time, each waits for its
own durable write (issue 18 goal 4: ~380 acked messages/s); taken together, they share
one. No I/O: the connection task reads, hands the batch over and sends the acks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from logd_client import wire

from logd.index.states import Peer

__all__ = [
    "READ_AHEAD_SHARES",
    "SubmitMany",
    "Taken",
    "read_ahead_limit",
    "read_ahead_pool",
    "take_buffered",
]

# All connections together read ahead up to this many times `[limits] read_ahead_bytes`
# (`logd.ingest.streams.ReadAhead`), less READ_AHEAD_PER_CONNECTION for each open one,
# down to READ_AHEAD_FLOOR (or the full pool, when that is smaller).
READ_AHEAD_SHARES = 4
READ_AHEAD_PER_CONNECTION = 4 * 1024
READ_AHEAD_FLOOR = 4 * 128 * 1024

# Hands messages to the writer in order; returns how many of them, from the first, are
# durable (all of them unless the disk or the index refused a batch, or the daemon stops).
# The writer empties the list as it takes the messages' lines.
SubmitMany = Callable[[Peer, list[wire.Entries]], Awaitable[int]]


@dataclass(slots=True)
class Taken:
    """What `take_buffered` found: the messages, then what stopped it.

    `stopped_at` is None when the decoder needs more bytes. `error` is the peer's bad
    bytes after `entries`: those messages are still written and acked, then it closes.
    """

    entries: list[wire.Entries] = field(default_factory=list)
    stopped_at: wire.Ping | wire.Heartbeat | wire.Closed | None = None
    error: wire.RemoteProtocolError | None = None


def read_ahead_pool(read_ahead_bytes: int, connections: int) -> int:
    """Bytes all connections may read ahead between them, with `connections` open.

    Why it shrinks: reading ahead two messages of each busy client halves the writer's
    cost per file and batch, but costs about 3 bytes of memory per byte read ahead (the
    bytes, their decoder's buffer, their lines). Each open connection holds about 21 KiB
    of its own, so a thousand of them leave the pool at its floor: the daemon's memory
    then stays where a 128 KiB read-ahead kept it, while a few busy clients get it all.
    """
    full = READ_AHEAD_SHARES * read_ahead_bytes
    floor = min(full, READ_AHEAD_FLOOR)
    return max(floor, full - connections * READ_AHEAD_PER_CONNECTION)


def read_ahead_limit(read_ahead_bytes: int, pool: int) -> int:
    """Bytes one connection may read ahead: a share of the pool (a quarter), at most
    `read_ahead_bytes`; so one busy client cannot take a shrunken pool for itself."""
    return min(read_ahead_bytes, pool // READ_AHEAD_SHARES)


def take_buffered(decoder: wire.ForwardDecoder) -> Taken:
    """Every complete `Entries` message the decoder holds, up to the first other event."""
    taken = Taken()
    try:
        while isinstance(event := decoder.next_event(), wire.Entries):
            taken.entries.append(event)
    except wire.RemoteProtocolError as exc:
        taken.error = exc
        return taken
    taken.stopped_at = event
    return taken
