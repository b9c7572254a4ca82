"""Reading files of the log tree without trusting them: never through a symlink, and
never failing on damage (a bad file or a truncated archive is reported, not raised).

Blocking reads, used by ``readback``, ``eventscan`` and ``errorscan`` for the index
rebuild; what the files mean is their business, not this module's.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

__all__ = ["file_groups", "list_entries", "list_files", "mtime_ns", "read_lines"]

Problem = Callable[[Path, object], None]


def _open_text(path: Path) -> TextIO:
    # "replace": the index cannot bind lone surrogates, and a damaged byte must not
    # cost the rest of the file.
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_lines(path: Path, problem: Problem) -> Iterator[str]:
    """Non-empty lines without their newline; a truncated archive yields what it holds."""
    try:
        with _open_text(path) as handle:
            for line in handle:
                line = line.rstrip("\n")
                if line:
                    yield line
    except (OSError, EOFError, zlib.error) as exc:
        problem(path, exc)


def list_entries(folder: Path) -> list[Path]:
    """Sorted children, without symlinks: the rebuild never follows a link out of the root."""
    try:
        return sorted(p for p in folder.iterdir() if not p.is_symlink())
    except OSError:
        return []


def list_files(folder: Path) -> list[Path]:
    """Sorted regular files; a rotated file is read once even if found twice.

    A crash during compression can leave both `x.1` and a complete `x.1.gz` (see
    `cleanup.compress_file`): the uncompressed one is read, the copy skipped.
    """
    files = [p for p in list_entries(folder) if p.is_file()]
    names = {p.name for p in files}
    return [p for p in files if not (p.name.endswith(".gz") and p.name[:-3] in names)]


def file_groups(folder: Path, pattern: re.Pattern[str]) -> dict[str, list[Path]]:
    """Live files and their rotated backups by name, oldest backup first, live file last.

    ``pattern`` captures the name (group 1) and the backup number, if any (group 2).
    """
    found: dict[str, list[tuple[int, Path]]] = {}
    for path in list_files(folder):
        match = pattern.fullmatch(path.name)
        if match is not None:
            order = -int(match[2]) if match[2] else 0
            found.setdefault(match[1], []).append((order, path))
    return {name: [p for _, p in sorted(files)] for name, files in found.items()}


def mtime_ns(path: Path) -> int:
    """A file's mtime in ns, 0 when it cannot be read."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
