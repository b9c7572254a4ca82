"""The files the writer has open under the root, at most `limit` of them.

One `OpenFile` per open file holds its descriptor and what the writer keeps of it (size,
day of its last line, kind, file system, inode); the least recently used one closes
first when another must open (`Sinks.close_file`, which decides whether it needs a sync
first). Files are opened for appending with O_NOFOLLOW, so a planted symlink cannot
redirect a write out of the root; the folders and files a batch creates are noted, so a
refused batch can remove them again. Blocking file I/O, in the writer's thread only.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from logd.retention.rotation import utc_day
from logd.write.durable import Durability
from logd.write.routing import Kind

__all__ = ["Handles", "OpenFile"]

_REOPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
_OPEN_FLAGS = _REOPEN_FLAGS | os.O_CREAT


@dataclass(slots=True)
class OpenFile:
    """An open file: its descriptor, its size as appended so far, the UTC day of its last
    line (the event log rotates by day), its kind once written, its file system (syncs go
    by file system) and inode (the batch intent names it)."""

    fd: int
    size: int
    day: str
    dev: int
    ino: int
    kind: Kind | None = None


class Handles:
    """The open files, least recently used first.

    Resource handling: the caller closes each descriptor it `pop()`s; `Sinks.close()`
    closes them all.
    """

    def __init__(
        self,
        root: Path,
        *,
        limit: int,
        clock: Callable[[], float],
        durability: Durability,
    ) -> None:
        self.root = root
        self._root = os.fspath(root)
        self.limit = max(1, limit)
        self.clock = clock
        self.durability = durability
        self.files: OrderedDict[str, OpenFile] = OrderedDict()
        self._made_dirs: set[str] = set()
        self._watched: set[int] = set()  # file systems `durability` has been shown
        # Files and folders created since the last `take_created()`.
        self.new_files: list[str] = []
        self.new_dirs: list[Path] = []

    def get(self, path: str) -> OpenFile | None:
        """The open file at `path`, now the most recently used; None when not open."""
        found = self.files.get(path)
        if found is not None:
            self.files.move_to_end(path)
        return found

    def oldest_if_full(self) -> str | None:
        """The least recently used path when no other file may open, else None."""
        if len(self.files) >= self.limit:
            return next(iter(self.files))
        return None

    def open(self, path: str) -> OpenFile:
        """Open (creating it and its folders if needed) the file at `path` for appending.

        Raises:
            OSError: the disk or the file system refused.
        """
        full = f"{self._root}/{path}"
        parent = path.rpartition("/")[0]
        if parent not in self._made_dirs:
            self._make_dirs(self.root / parent)
            self._made_dirs.add(parent)
        try:
            fd = self._open(path, full)
        except FileNotFoundError:
            # The folder went away under us (cleanup, an operator): make it again.
            self._make_dirs(self.root / parent)
            fd = self._open(path, full)
        info = os.fstat(fd)
        dev = info.st_dev
        if dev not in self._watched:
            self.durability.watch(dev, full.rpartition("/")[0])
            self._watched.add(dev)
        day = utc_day(info.st_mtime if info.st_size else self.clock())
        opened = self.files[path] = OpenFile(fd, info.st_size, day, dev, info.st_ino)
        return opened

    def pop(self, path: str) -> OpenFile | None:
        """Take a file out of the table; its descriptor is the caller's to close."""
        return self.files.pop(path, None)

    def take_created(self) -> tuple[list[str], list[Path]]:
        """The files and folders created since the last call, and forget them."""
        files, folders = self.new_files, self.new_dirs
        self.new_files, self.new_dirs = [], []
        return files, folders

    def forget_dirs(self) -> None:
        """Folders may have gone (cleanup, a rollback): check them again before opening."""
        self._made_dirs.clear()

    def _open(self, path: str, full: str) -> int:
        """Open for appending, noting whether this created the file.

        An existing file (a reopen after eviction, the usual case) costs one `open(2)`;
        only a missing one takes the exclusive create that tells us we made it.
        """
        try:
            return os.open(full, _REOPEN_FLAGS)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(full, _OPEN_FLAGS | os.O_EXCL, 0o640)
        except FileExistsError:
            return os.open(full, _OPEN_FLAGS, 0o640)
        self.new_files.append(path)
        return fd

    def _make_dirs(self, folder: Path) -> None:
        """`mkdir -p`, noting the folders created."""
        missing = []
        while not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        for made in reversed(missing):
            with contextlib.suppress(FileExistsError):
                made.mkdir()
                self.new_dirs.append(made)
