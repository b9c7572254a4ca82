"""Make a batch's files durable with one `syncfs(2)` per file system, not one fsync per file.

Why: acknowledging a batch under `fsync = "batch"` needs every file it touched on stable
storage. One `fsync(2)` per file made that cost grow with the number of live sessions and
calls (100 dirty files: ~50 ms here, 1,000: ~400 ms); one `syncfs(2)` on their file
system costs about what a single fsync does (~3 ms for 100 files, ~11-70 ms for 1,000).
The guarantee is the same: since Linux 5.8, syncfs reports a writeback error of any file
of that file system that happened since the descriptor it is called on was opened (the
superblock's error sequence), so each file system gets a long-lived directory descriptor,
opened before the first write to any of its files. Where syncfs is missing or too old to
report errors, and for a file system with a single dirty file, plain fsync is used.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

# Linux 5.8 made syncfs return writeback errors (per-superblock errseq).
_MIN_KERNEL = (5, 8)


def _kernel() -> tuple[int, int]:
    parts = platform.release().split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def _load_syncfs() -> Callable[[int], int] | None:
    if platform.system() != "Linux" or _kernel() < _MIN_KERNEL:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_SYNCFS = _load_syncfs()


class Syncing:
    """A batch's sync under way in the durability thread; `wait()` tells how it went."""

    __slots__ = ("_future",)

    def __init__(self, future: Future[None] | None = None) -> None:
        self._future = future

    def wait(self) -> None:
        """Block until the sync is over; may be called again.

        Raises:
            OSError: a write-back failed (as `Durability.sync` raises, on every call).
        """
        if self._future is not None:
            self._future.result()


SYNCED = Syncing()  # nothing to sync


class Durability:
    """Syncs dirty files: one syncfs per file system holding two or more of them.

    Resource handling: owns one directory descriptor per file system seen; `close()`
    releases them.

    Args:
        use_syncfs: False forces one fsync per file (also where syncfs is unavailable).
    """

    def __init__(self, *, use_syncfs: bool = True) -> None:
        self._syncfs = _SYNCFS if use_syncfs else None
        self._anchors: dict[int, int] = {}  # st_dev -> a directory fd on it
        self._owed: set[int] = set()  # file systems with closed files still to sync
        self.calls = 0  # fsync and syncfs calls made, for tests and benchmarks
        self._thread: ThreadPoolExecutor | None = None

    @property
    def uses_syncfs(self) -> bool:
        """Whether batches of files are synced with syncfs here."""
        return self._syncfs is not None

    def watch(self, dev: int, folder: str) -> None:
        """Note a file system before its first file is written: open its anchor."""
        if self._syncfs is None or dev in self._anchors:
            return
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return  # that file system's files get fsync, one by one
        if os.fstat(fd).st_dev != dev:  # a mount point in between: do not trust it
            os.close(fd)
            return
        self._anchors[dev] = fd

    def defer(self, dev: int | None) -> bool:
        """Whether a dirty file on `dev` may be closed unsynced: the next `sync()` then
        runs syncfs there, whose error report covers files closed since the anchor opened.
        """
        if self._syncfs is None or dev is None or dev not in self._anchors:
            return False
        self._owed.add(dev)
        return True

    def sync(self, files: Iterable[tuple[int, int]]) -> None:
        """Make each (fd, st_dev) file durable, and the files `defer()` let go unsynced.

        Raises:
            OSError: a write-back failed; nothing synced may be acknowledged.
        """
        by_dev: dict[int, list[int]] = {}
        for fd, dev in files:
            by_dev.setdefault(dev, []).append(fd)
        owed, self._owed = self._owed, set()
        for dev in owed:
            by_dev.setdefault(dev, [])
        for dev, fds in by_dev.items():
            anchor = self._anchors.get(dev)
            if self._syncfs is None or anchor is None or (len(fds) == 1 and dev not in owed):
                for fd in fds:
                    os.fsync(fd)
                    self.calls += 1
                continue
            self.calls += 1
            if self._syncfs(anchor) != 0:
                self._owed |= owed  # still owed: nothing of this batch is acknowledged
                code = ctypes.get_errno() or errno.EIO
                raise OSError(code, f"syncfs: {os.strerror(code)}")

    def start(self, files: Iterable[tuple[int, int]]) -> Syncing:
        """Begin `sync(files)` in a thread of its own and return at once.

        Why: a sync is mostly waiting for the disk (milliseconds with a thousand dirty
        files), while the rest of the batch (its index rows) needs the CPU and not the
        sync; the caller does that meanwhile and calls `wait()` before it commits. The
        descriptors in `files` must stay open until then.
        """
        listed = list(files)
        if not listed and not self._owed:
            return SYNCED
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logd-sync")
        return Syncing(self._thread.submit(self.sync, listed))

    def close(self) -> None:
        """Stop the sync thread (after the sync under way, if any) and close the anchors."""
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
        anchors, self._anchors = self._anchors, {}
        for fd in anchors.values():
            os.close(fd)
