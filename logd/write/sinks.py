"""Carry out a batch's writes under the root: append, rotate, sync, or cut back.

Synchronous and single-owner: only the writer task calls this (directly or in its worker
thread), so no locks are needed. Paths come from `routing` and are relative to the root;
their parts are already safe names. The open files themselves are `handles.Handles`'.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

from logd.config import Rotation, RotationPolicy
from logd.retention.rotation import rotation_cuts, utc_day
from logd.write.batch import Lines
from logd.write.durable import SYNCED, Durability, Syncing
from logd.write.handles import Handles, OpenFile
from logd.write.rotator import Rotator
from logd.write.routing import Kind, Write
from logd.write.undo import Undo

log = logging.getLogger("logd.sinks")
FsyncMode = Literal["none", "batch", "always"]


class Sinks:
    """Appends lines to files, keeping at most `open_files` handles open (LRU).

    Resource handling: owns every descriptor it opens; `close()` releases them all.
    """

    def __init__(
        self,
        root: Path,
        *,
        open_files: int = 4096,
        fsync: FsyncMode = "batch",
        rotation: Rotation | None = None,
        clock: Callable[[], float] = time.time,
        durability: Durability | None = None,
    ) -> None:
        self.root = root
        self._root = os.fspath(root)
        self.durability = durability or Durability()
        self.fsync = fsync
        self.clock = clock
        # Files and folders a batch creates are noted there: a rollback removes them
        # again, so a batch refused by a full disk leaves no empty file or folder behind.
        self.handles = Handles(root, limit=open_files, clock=clock, durability=self.durability)
        self._dirty: set[str] = set()
        self._undo = Undo(root)
        self.rotator = Rotator(root, self._undo, rotation)

    @property
    def open_files(self) -> int:
        """How many files may be open at once (`[limits] open_files`)."""
        return self.handles.limit

    @open_files.setter
    def open_files(self, limit: int) -> None:
        self.handles.limit = max(1, limit)

    def write_many(self, writes: Lines | Iterable[Write]) -> dict[str, int]:
        """Append each line to its file, one `write(2)` per file, in the given order.

        Lines for one file keep their order; whole lines go in one call on an O_APPEND
        descriptor, so a line is never split. Until `commit()`, `rollback()` can cut every
        file back to where this batch started. Returns bytes written per path.

        Raises:
            OSError: when the disk refuses (full, quota, file-size limit). The files are
                already cut back, so the caller can retry the batch without duplicates.
        """
        batch = writes if isinstance(writes, Lines) else Lines(writes)
        grouped, kinds = batch.by_path, batch.kinds
        written: dict[str, int] = {}
        today = utc_day(self.clock())
        files = self.handles.files
        policies = self.rotator.policies
        undo, dirty = self._undo.lengths, self._dirty
        each_fsync = self.fsync == "always"
        try:
            for path, lines in grouped.items():
                if not lines:
                    continue
                data = _encode("".join(lines))
                kind = kinds[path]
                opened = files.get(path)
                if opened is None:
                    opened = self._file(path, kind)
                else:
                    files.move_to_end(path)
                    opened.kind = kind
                policy = policies.get(kind)
                size = len(data)
                if policy is not None and (
                    opened.size + size > policy.max_bytes
                    or (kind is Kind.EVENTS and opened.day != today)
                ):
                    if len(lines) > 1 and opened.size + size > policy.max_bytes:
                        self._append_cut(path, kind, lines, policy, today)
                        written[path] = written.get(path, 0) + size
                        continue
                    if self._rotation_due(path, size, policy, today):
                        self._rotate(path, kind, policy)
                        opened = self._file(path, kind)
                # The common case, inline: one write(2) of whole lines, noted for undo.
                undo.append((path, opened.size))
                fd = opened.fd
                count = os.write(fd, data)
                opened.size += count
                if count < size:
                    view = memoryview(data)[count:]
                    while view:
                        count = os.write(fd, view)
                        view = view[count:]
                        opened.size += count
                opened.day = today
                if each_fsync:
                    os.fsync(fd)
                else:
                    dirty.add(path)
                written[path] = written.get(path, 0) + size
        except OSError:
            self.rollback()
            raise
        return written

    def intent(self, lines: Lines) -> list[tuple[str, int, int]]:
        """Where each file of a batch stands before the batch: `(path, inode, size)`.

        Files not open are looked up with `lstat`, not opened: with more live files than
        handles, opening them here evicted the very handles the writes then reopened.
        A file that does not exist yet stands at `(path, 0, 0)`.
        """
        stand = []
        files = self.handles.files
        for path, batch in lines.by_path.items():
            if not batch:
                continue
            opened = files.get(path)
            if opened is not None:
                stand.append((path, opened.ino, opened.size))
                continue
            try:
                info = os.lstat(f"{self._root}/{path}")
            except FileNotFoundError:
                stand.append((path, 0, 0))
            else:
                stand.append((path, info.st_ino, info.st_size))
        return stand

    def _append(self, path: str, data: bytes, today: str, opened: OpenFile | None = None) -> None:
        """One `write(2)` loop of whole lines, remembered so `rollback()` can undo it.

        `opened` is the file when the caller has just got it from `_file()`.
        """
        if opened is None:
            opened = self._file(path)
        fd = opened.fd
        self._undo.lengths.append((path, opened.size))
        view = memoryview(data)
        while view:
            count = os.write(fd, view)
            view = view[count:]
            opened.size += count
        opened.day = today
        if self.fsync == "always":
            os.fsync(fd)
        else:
            self._dirty.add(path)

    def _append_cut(
        self, path: str, kind: Kind, lines: list[str], policy: RotationPolicy, today: str
    ) -> None:
        """A batch's lines that would take the file past `max_bytes`: rotate between lines,
        wherever the next line would not fit, so no file outgrows the limit (a single line
        larger than it lands alone in a fresh file)."""
        pieces = [_encode(line) for line in lines]
        if path.endswith("/events.log") and self._rotation_due(path, 0, policy, today):
            self._rotate(path, kind, policy)  # the UTC day changed since its last line
        size = self._file(path, kind).size
        start = 0
        for cut in rotation_cuts(size, [len(p) for p in pieces], policy.max_bytes):
            if cut > start:
                self._append(path, b"".join(pieces[start:cut]), today)
            self._rotate(path, kind, policy)
            self._file(path, kind)
            start = cut
        self._append(path, b"".join(pieces[start:]), today)

    def commit(self) -> None:
        """The batch is acknowledged: forget how to undo it, compress what it rotated."""
        self._undo.forget()
        self.rotator.compress_rotated()
        self.handles.take_created()

    def rollback(self) -> None:
        """Cut every file written since the last commit back to its length before it.

        A failed batch leaves no partial line behind, and retrying it writes nothing twice.
        Files and folders it created are removed (when still empty). Never raises.
        """
        files = self.handles.files
        for path, length in self._undo.cut_back():
            if (opened := files.get(path)) is not None:
                opened.size = length
        self.rotator.compress_rotated()
        new_files, new_dirs = self.handles.take_created()
        for path in new_files:
            opened = self.handles.pop(path)
            self._dirty.discard(path)
            if opened is not None:
                os.close(opened.fd)
            full = self.root / path
            with contextlib.suppress(OSError):
                if full.stat().st_size == 0:
                    full.unlink()
        for folder in reversed(new_dirs):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: something else may have arrived there
        if new_dirs:
            self.handles.forget_dirs()

    def sync(self) -> None:
        """Make written data durable per the fsync mode, before acknowledging it."""
        self.start_sync().wait()

    def start_sync(self) -> Syncing:
        """Begin making written data durable per the fsync mode; what it covers may be
        acknowledged once the returned `wait()` returns. No file may close before that."""
        syncing = SYNCED
        if self.fsync == "batch":
            files = self.handles.files
            syncing = self.durability.start(
                [(files[path].fd, files[path].dev) for path in self._dirty if path in files]
            )
        self._dirty.clear()
        if self.rotator.compressor.busy:
            self.rotator.compressor.reap()
        return syncing

    def close_file(self, path: str) -> None:
        """Release one file's handle, e.g. when its call or session ends."""
        opened = self.handles.pop(path)
        if opened is not None:
            # An evicted file (more live files than handles) is left to the batch's
            # syncfs when there is one: an fsync each made the cost grow with them again.
            if (
                self.fsync != "none"
                and path in self._dirty
                and (self.fsync == "always" or not self.durability.defer(opened.dev))
            ):
                os.fsync(opened.fd)
            self._dirty.discard(path)
            os.close(opened.fd)

    def settle(self) -> None:
        """Wait until every rotated copy is compressed: before cleanup looks at the tree."""
        self.rotator.compressor.settle()

    def close(self) -> None:
        self.rotator.compress_rotated()
        self.sync()
        for path in list(self.handles.files):
            self.close_file(path)
        self.rotator.compressor.close()
        self.durability.close()

    @property
    def open_count(self) -> int:
        return len(self.handles.files)

    def _file(self, path: str, kind: Kind | None = None) -> OpenFile:
        """The open file at `path`, opened now if it is not (closing the least recently
        used one when no other may open); `kind` is noted when given."""
        handles = self.handles
        opened = handles.get(path)
        if opened is None:
            while (oldest := handles.oldest_if_full()) is not None:
                self.close_file(oldest)
            opened = handles.open(path)
        if kind is not None:
            opened.kind = kind
        return opened

    # --- rotation ------------------------------------------------------------------

    def _rotation_due(self, path: str, incoming: int, policy: RotationPolicy, today: str) -> bool:
        return self.rotator.due(path, self._file(path), incoming, policy, today)

    def _rotate(self, path: str, kind: Kind, policy: RotationPolicy) -> None:
        """Move a full file aside (between batches' lines, never mid-line) and start anew."""
        opened = self._file(path)
        self.close_file(path)
        self.rotator.move_aside(path, kind, policy, opened)

    def rotate_all(self) -> int:
        """Rotate every open file that has content (`logd-ctl rotate`); returns how many."""
        count = 0
        for path, opened in list(self.handles.files.items()):
            kind = opened.kind
            policy = self.rotator.policies.get(kind) if kind is not None else None
            if kind is not None and policy is not None and opened.size > 0:
                self._rotate(path, kind, policy)
                count += 1
        self.rotator.compress_rotated()
        return count

    def forget(self, deleted: Iterable[str]) -> None:
        """Cleanup removed these paths: close handles under them, forget known folders.

        A handle left open on a deleted file would swallow every later line.
        """
        prefixes = tuple(path.rstrip("/") + "/" for path in deleted)
        exact = {path.rstrip("/") for path in deleted}
        for path in list(self.handles.files):
            if path in exact or path.startswith(prefixes):
                self.close_file(path)
        self.handles.forget_dirs()


def _encode(text: str) -> bytes:
    # Strings from the wire carry undecodable bytes as surrogate escapes: write them back
    # as the bytes they were. Anything else unencodable becomes "?".
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")
