"""Syslog output: RFC 5424 over TCP with octet-counting framing, to rsyslog or syslog-ng.

Plain syslog over TCP has no acknowledgement. A batch counts as delivered, and leaves
the buffer, once the peer's TCP has acknowledged every byte sent (SIOCOUTQ is 0) and
the connection is still open `confirm_s` after the batch went out. If the connection
breaks before that, the batch is sent again on the next connection (the receiver may
then see it twice). What a receiver loses after that, it loses silently.
"""

from __future__ import annotations

from collections import deque

import trio

from logd.forward.sender import IDLE_CHECK_S, Sender, UpstreamError, peer_closed, unacked_bytes
from logd.forward.syslog import format_message, frame

# Batches read at once, and records sent but not yet confirmed, per batch_records.
READ_BATCHES = 16
PENDING_BATCHES_OF_RECORDS = 10
_RECHECK_S = 0.05


class SyslogSender(Sender):
    """`type = "syslog"`."""

    type_name = "syslog"

    async def _session(self, stream: trio.SocketStream) -> None:
        self._up()
        pending: deque[tuple[int, int, float]] = deque()  # seq, records, sent at
        pending_records = 0
        last_sent = self.buffer.acked_seq  # resend whatever was not confirmed
        confirm_s = self.settings.confirm_s
        limit = self.settings.batch_records * PENDING_BATCHES_OF_RECORDS
        while True:
            self._fresh_wake()
            if peer_closed(stream):
                if not pending:
                    return  # closed while idle: nothing was lost
                raise UpstreamError(f"{self.target} closed the connection")
            now = trio.current_time()
            if pending and pending[0][2] + confirm_s <= now:
                queued = unacked_bytes(stream)
                if queued == 0:
                    seq = records = 0
                    while pending and pending[0][2] + confirm_s <= now:
                        seq, count, _ = pending.popleft()
                        records += count
                    pending_records -= records
                    await self._ack(seq, records)
                    continue
                if now - pending[0][2] > confirm_s + self.settings.timeout_s:
                    raise UpstreamError(
                        f"{self.target} is not reading: {queued} bytes unacknowledged "
                        f"for {self.settings.timeout_s:g}s"
                    )
                deadline = now + _RECHECK_S
            elif pending:
                deadline = pending[0][2] + confirm_s
            else:
                deadline = now + IDLE_CHECK_S
            if pending_records < limit and self.buffer.last_seq > last_sent:
                prepared, examined = await trio.to_thread.run_sync(
                    self._prepare, last_sent, READ_BATCHES
                )
                for seq, records, data in prepared:
                    await self._send(stream, data)
                    self._count_sent(seq, records)
                    pending.append((seq, records, trio.current_time()))
                    pending_records += records
                # Past what was sent or dropped meanwhile: never look again.
                last_sent = max(last_sent, examined)
                continue
            await self._wait(deadline)

    def _prepare(self, after_seq: int, count: int) -> tuple[list[tuple[int, int, bytes]], int]:
        # Worker thread: read and format off the event loop. Also returns the seq the
        # buffer got through, so batches gone meanwhile are not looked for again.
        batches, examined = self.buffer.take(after_seq, count)
        settings = self.settings
        prepared = []
        for batch in batches:
            data = b"".join(
                frame(
                    format_message(
                        time_ns,
                        record,
                        facility=settings.facility,
                        hostname=self.hostname,
                        utf8_bom=settings.utf8_bom,
                    )
                )
                for time_ns, record in batch.entries
            )
            prepared.append((batch.seq, len(batch.entries), data))
        return prepared, examined
