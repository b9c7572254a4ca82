"""Spools left by clients that exited before the daemon came back: written at start.

A client that could not reach the daemon keeps what it logged in a spool file
(`logd_client.spool`). The next client of the same user delivers orphaned spools; the
daemon does too when it starts, for the case where no client comes back. Claims are
exclusive (flock), and a message is marked done only after the writer made it durable.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
from logd_client import spool, wire

from logd.index.states import Peer

log = logging.getLogger("logd.intake")
SPOOL_PEER = Peer(conn_id=0, transport="spool", address="spool")

Submit = Callable[[Peer, wire.Entries], Awaitable[bool]]


def deliver_orphans(directory: Path, submit: Submit, *, max_message_bytes: int) -> int:
    """Write every unacknowledged message of every orphaned spool; returns how many.

    Runs in a worker thread and hands each message to the writer through trio. A file
    is deleted only once all of it is written; on a write failure it stays for later.
    """
    report = spool.ReadReport()
    delivered = 0
    for claim in spool.claim_orphans(directory):
        with claim:
            complete = True
            for frame in claim.frames(report):
                decoder = wire.ForwardDecoder(max_message_bytes=max_message_bytes)
                decoder.receive_data(frame.message)
                decoder.receive_eof()
                ok = True
                try:
                    while not isinstance(event := decoder.next_event(), wire.Closed | None):
                        if isinstance(event, wire.Entries):
                            ok = ok and trio.from_thread.run(submit, SPOOL_PEER, event)
                except wire.RemoteProtocolError as exc:
                    log.warning("spool %s: unreadable message skipped (%s)", claim, exc)
                if not ok:
                    complete = False
                    break
                claim.mark_acked(frame)
                delivered += 1
            if complete:
                claim.delete()
    if report.damaged_frames:
        log.warning(
            "spools: %d damaged message(s) (%d record(s)) could not be read",
            report.damaged_frames,
            report.damaged_records,
        )
    return delivered
