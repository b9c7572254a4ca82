"""How to cut a batch back: each file's length before the batch wrote to it, and the
copies its rotations made, followed through the renames of later rotations.

The writer notes here as it appends and rotates; a refused batch (`Sinks.rollback`) puts
every file back to where the batch found it, so retrying the batch writes nothing twice.
Blocking file I/O, in the writer's thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger("logd.sinks")

__all__ = ["Undo"]


class Undo:
    """One batch's undo record, from its first write to its commit or rollback.

    `lengths` and `rotated` are changed in place only: the writer's append loop holds on
    to `lengths` for the whole batch.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        # (path, length before an append) in the order of the appends.
        self.lengths: list[tuple[str, int]] = []
        # (live file, rotated copy) of each rotation in the batch, compressed only once
        # the batch is committed or cut back: until then it may have to shrink again.
        self.rotated: list[tuple[Path, Path]] = []

    def moved(self, source: str, target: str | None) -> None:
        """A rotation renamed `source` to `target` (None: deleted it): follow it."""
        if target is None:
            self.lengths[:] = [(path, length) for path, length in self.lengths if path != source]
            gone = self.root / source
            self.rotated[:] = [(f, r) for f, r in self.rotated if r != gone]
            return
        self.lengths[:] = [(target if p == source else p, n) for p, n in self.lengths]
        old, new = self.root / source, self.root / target
        self.rotated[:] = [(f, new if r == old else r) for f, r in self.rotated]

    def take_rotated(self) -> list[tuple[Path, Path]]:
        """The copies rotated since the last call, to compress now."""
        taken = list(self.rotated)
        self.rotated.clear()
        return taken

    def forget(self) -> None:
        """The batch is committed: nothing of it is to be undone any more."""
        self.lengths.clear()

    def cut_back(self) -> list[tuple[str, int]]:
        """Cut every file appended to back to its length before the batch, newest append
        first, and drop rotated copies left empty. Returns `(path, length)` of each cut,
        in the order done (a file's last one is its length now). Never raises: what
        cannot be cut is logged.
        """
        cut = []
        for path, length in reversed(self.lengths):
            try:
                os.truncate(self.root / path, length)
            except OSError as exc:
                log.error("could not cut %s back to %d bytes: %s", path, length, exc)
                continue
            cut.append((path, length))
        self.lengths.clear()
        for _family, copy in self.rotated:
            with contextlib.suppress(OSError):
                if copy.stat().st_size == 0:
                    copy.unlink()
        self.rotated[:] = [(f, r) for f, r in self.rotated if r.exists()]
        return cut
