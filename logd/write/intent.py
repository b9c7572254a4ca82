"""A batch's intent, for a crash in the middle of it: where each file stood before the
batch wrote, and how to put the files back there at the next start.

A batch is acknowledged only after it is committed, so a crash before that leaves
nothing its producers were told is safe: they send it again. Cutting the files back to
the intent first means the resent batch is written once, not twice. Blocking file I/O,
in the writer's thread at start; the intent itself is kept in ``index.sqlite3``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["cut_back"]

log = logging.getLogger("logd.engine")


def cut_back(root: Path, files: Sequence[tuple[str, int, int]]) -> list[str]:
    """Cut each file of an uncommitted batch back to its size before the batch.

    A file is found by its inode in its folder, under its own name or a rotated one
    (the batch may have rotated it: rotated copies are compressed only after the commit,
    so it is still there uncompressed). A live file with another inode was started by
    such a rotation and held only the batch's lines: it is emptied.

    Args:
        files: `(path relative to root, inode, size)` as recorded before the batch.

    Returns:
        The paths (relative to root) that were cut.
    """
    cut: list[str] = []
    for path, inode, size in files:
        full = root / path
        folder, name = full.parent, full.name
        try:
            family = [
                entry
                for entry in os.scandir(folder)
                if entry.name == name or entry.name.startswith(name + ".")
            ]
        except OSError:
            continue  # the folder is gone: nothing of the batch is left there
        for entry in family:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.name.endswith(".gz") or not entry.is_file(follow_symlinks=False):
                continue
            keep = size if info.st_ino == inode else (0 if entry.name == name else None)
            if keep is None or info.st_size <= keep:
                continue
            try:
                os.truncate(entry.path, keep)
            except OSError as exc:
                log.error("could not cut %s back to %d bytes: %s", entry.path, keep, exc)
                continue
            cut.append(os.path.relpath(entry.path, root))
    return cut
