"""A transport's spool files: the one it appends to, and the orphans it claimed.

Used by the sender thread only, so it takes no locks; the file format and the claim protocol
are `spool`'s. Each file is read through one cursor, so delivering a large spool costs memory
for the in-flight window only.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from . import spool

# Orphans claimed at a time: each holds a descriptor until it is delivered.
_MAX_CLAIMED_ORPHANS: Final = 8


@dataclass(eq=False)
class SpoolSource:
    """One claimed or owned spool file and how far it was read.

    Attributes:
        claim: the file and its lock.
        own: whether this transport wrote it (else: an orphan of another producer).
        read_at: where the next frame to send starts.
        end: where the file ends (an orphan's never grows).
        unacked: frames handed out (read, or spooled while in flight) and not acked yet.
        next_seq: for an own file, the writer's number of the frame at `read_at`.
    """

    claim: spool.Claim
    own: bool
    read_at: int = 0
    end: int = 0
    unacked: int = 0
    next_seq: int | None = None

    @property
    def unread(self) -> bool:
        return self.read_at < self.end


class Spooler:
    """The spool files of one transport, oldest first: claimed orphans, then its own.

    Args:
        directory: the spool directory; None disables spooling.
        producer_id: names the files this transport creates.
        max_bytes: bound on the bytes of every spool file in `directory` together.

    Resource handling:
        Owns the claims (descriptors and locks) of its sources. `close()` releases them,
        deleting none that still hold unacknowledged frames; `abandon()` is for a forked
        child, whose copies must not touch the parent's locks.
    """

    def __init__(self, directory: Path | None, producer_id: str, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.sources: list[SpoolSource] = []
        self.own: SpoolSource | None = None
        self.scan_due = True
        self._producer_id = producer_id
        self._generation = 0

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def unread(self) -> bool:
        """Whether some file has frames not handed out yet."""
        return any(source.unread for source in self.sources)

    def own_next_seq(self) -> int | None:
        """The writer's number of the oldest own frame not handed out, None if none."""
        for source in self.sources:
            if source.own and source.unread:
                return source.next_seq if source.next_seq is not None else 0
        return None

    def own_bytes(self) -> int:
        """Bytes of the files this transport wrote and still holds."""
        return sum(source.end for source in self.sources if source.own)

    def room(self) -> int:
        """Bytes that may still be appended before the per-user bound."""
        if self.directory is None:
            return 0
        return max(0, self.max_bytes - spool.total_bytes(self.directory))

    def append(self, frames: list[bytes], *, sent: bool, first_seq: int) -> list[int]:
        """Append encoded frames to this transport's own file, creating it if needed.

        Args:
            frames: from `spool.encode_frame()`, oldest first.
            sent: they are in flight already: the read cursor skips them, and they count
                as handed out. Only valid while every own frame was handed out before.
            first_seq: the writer's number of the first frame.

        Returns:
            Each frame's offset in the file.

        Raises:
            OSError: no file could be created or written; nothing was appended.
        """
        own = self._own_source()
        if sent and own.unread:
            # They are older than the unread frames: behind those, they would be skipped.
            raise ValueError("in-flight messages spooled behind unsent ones")
        offsets = []
        at = own.end
        for frame in frames:
            offsets.append(at)
            at += len(frame)
        end = own.claim.append(frames, own.end)
        if sent:
            own.read_at = end
            own.unacked += len(frames)
        elif not own.unread:
            own.next_seq = first_seq
        own.end = end
        return offsets

    def sync(self) -> None:
        """fsync the own file after a batch of appends.

        Raises:
            OSError: the data may not be on disk.
        """
        if self.own is not None:
            self.own.claim.sync()

    def next_frame(self, report: spool.ReadReport) -> tuple[SpoolSource, spool.Frame] | None:
        """Hand out the oldest frame not handed out yet, None when every file was read.

        Frames acked by an earlier claimant are skipped. A damaged or unreadable frame ends
        its file's readable part and is counted in `report`; the file is deleted once the
        frames before it are acked.
        """
        for source in list(self.sources):
            while source.unread:
                try:
                    frame = source.claim.read_frame(source.read_at)
                except spool.SpoolDamage as damage:
                    report.damaged_frames += 1
                    report.damaged_records += damage.count or 0
                    report.damaged_bytes += source.end - source.read_at
                    self._give_up(source)
                    break
                except OSError:
                    report.damaged_frames += 1
                    report.damaged_bytes += source.end - source.read_at
                    self._give_up(source)
                    break
                if frame is None or frame.end > source.end:
                    # The file is shorter than we knew it, or longer: not ours to trust.
                    report.damaged_frames += 1
                    report.damaged_bytes += source.end - source.read_at
                    self._give_up(source)
                    break
                source.read_at = frame.end
                if frame.acked:
                    report.acked_frames += 1
                    continue
                report.frames += 1
                source.unacked += 1
                if source.own:
                    next_seq = source.claim.first_seq_at(source.read_at) if source.unread else None
                    source.next_seq = next_seq
                return source, frame
            self._finish_if_done(source)
        return None

    def acked(self, source: SpoolSource, offset: int) -> None:
        """Note that the frame at `offset` of `source` was acknowledged."""
        # Unmarked, the frame is only sent again by a later claimant, and recognised.
        with contextlib.suppress(OSError):
            source.claim.mark_acked(offset)
        source.unacked -= 1
        self._finish_if_done(source)

    def claim_orphans(self) -> int:
        """Claim orphaned spool files of other producers, to deliver them first.

        Returns:
            How many were claimed.
        """
        self.scan_due = False
        if self.directory is None:
            return 0
        orphans = [source for source in self.sources if not source.own]
        claimed: list[SpoolSource] = []
        for claim in spool.claim_orphans(self.directory, _MAX_CLAIMED_ORPHANS - len(orphans)):
            try:
                end = claim.size()
            except OSError:
                claim.close()
                continue
            claimed.append(SpoolSource(claim, own=False, end=end))
        self.sources[len(orphans) : len(orphans)] = claimed
        return len(claimed)

    def close(self) -> None:
        """Release every file: unacked frames stay for the next claimant."""
        for source in self.sources:
            source.claim.close()
        self.sources.clear()
        self.own = None

    def abandon(self) -> None:
        """In a forked child: close the inherited descriptors, leaving the parent's locks."""
        for source in self.sources:
            source.claim.abandon()
        self.sources.clear()
        self.own = None

    def _own_source(self) -> SpoolSource:
        if self.own is not None:
            return self.own
        if self.directory is None:
            raise FileNotFoundError("spooling is disabled")
        spool.prepare_directory(self.directory)
        # A later file of the same transport (the first was damaged, or deleted while
        # another is still open) needs a name of its own.
        if any(source.own for source in self.sources):
            self._generation += 1
        while True:
            name = self._producer_id
            if self._generation:
                name = f"{name}_{self._generation}"
            try:
                claim = spool.Claim.create(self.directory, name, os.getpid())
                break
            except FileExistsError:  # a file of ours whose deletion failed
                if self._generation > 100:
                    raise
                self._generation += 1
        self.own = SpoolSource(claim, own=True)
        self.sources.append(self.own)
        return self.own

    def _give_up(self, source: SpoolSource) -> None:
        # Nothing after this point can be read; appending to the file would hide it too.
        source.read_at = source.end
        source.next_seq = None
        if source is self.own:
            self.own = None
        self._finish_if_done(source)

    def _finish_if_done(self, source: SpoolSource) -> None:
        if source.unread or source.unacked or source not in self.sources:
            return
        if source is self.own and source.end == 0:
            return  # just created, about to be written
        self.sources.remove(source)
        if source is self.own:
            self.own = None
        if not source.own:
            self.scan_due = True  # there may be more orphans than were claimed
        with contextlib.suppress(OSError):
            source.claim.delete()
