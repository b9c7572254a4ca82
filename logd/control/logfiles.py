"""Reading a log file family backwards: the live file, then its rotated and gzip parts.

A family is a live file (`main.log`) and its backups, newest first: `main.log.1` (or
`main.log.1.gz` once compressed), `main.log.2.gz`, ... Records come out newest first,
each with its continuation lines (tracebacks) in order. Blocking file I/O: the control
server calls this from worker threads. Never writes.

A follower's backlog must stop exactly where the live records begin, so the live file
can be read up to a size taken earlier (`Limit`, while the writer was paused): the part
with that inode is read up to that size, and parts rotated in since are skipped.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Limit", "limit_of", "parts", "records_back"]

_BLOCK = 64 * 1024
_PART_RE = re.compile(r"\.(\d+)(\.gz)?")


@dataclass(frozen=True, slots=True)
class Limit:
    """Where a family's live file stood: its inode and size (no inode: it did not exist)."""

    inode: int | None
    size: int


def limit_of(live: Path) -> Limit:
    try:
        info = os.stat(live)
    except FileNotFoundError:
        return Limit(None, 0)
    return Limit(info.st_ino, info.st_size)


def parts(live: Path) -> list[Path]:
    """The live file (if it exists) and its rotated copies, newest first.

    While a copy is being compressed both `x.1` and `x.1.gz` exist; the plain one is
    complete, the other may not be yet.
    """
    found: dict[int, Path] = {}
    try:
        names = os.listdir(live.parent)
    except OSError:
        return []
    prefix = live.name
    for name in names:
        if not name.startswith(prefix) or name == prefix:
            continue
        match = _PART_RE.fullmatch(name, len(prefix))
        if match is None:
            continue
        number = int(match[1])
        if number not in found or not match[2]:
            found[number] = live.parent / name
    ordered = [found[number] for number in sorted(found)]
    return ([live] if prefix in names else []) + ordered


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _plain_lines_back(path: Path, size: int | None) -> Iterator[str]:
    """Complete lines of a plain file, last first; a last line without its newline (being
    written) is left out, and so is anything past `size`."""
    with open(path, "rb") as handle:
        end = os.fstat(handle.fileno()).st_size
        pos = end if size is None else min(end, size)
        pending = b""
        trimmed = False
        while pos > 0:
            step = min(_BLOCK, pos)
            pos -= step
            handle.seek(pos)
            pending = handle.read(step) + pending
            if not trimmed:
                newline = pending.rfind(b"\n")
                if newline < 0:
                    continue
                pending = pending[: newline + 1]
                trimmed = True
            segments = pending.split(b"\n")[:-1]
            first = 1 if pos > 0 else 0
            for segment in reversed(segments[first:]):
                yield _decode(segment)
            pending = segments[0] + b"\n" if pos > 0 else b""


def _gzip_lines_back(path: Path, size: int | None) -> Iterator[str]:
    with gzip.open(path, "rb") as handle:
        data = handle.read() if size is None else handle.read(size)
    lines = data.split(b"\n")
    for raw in reversed(lines[:-1]):  # the piece after the last newline is incomplete
        yield _decode(raw)


def _lines_back(path: Path, size: int | None) -> Iterator[str]:
    if path.name.endswith(".gz"):
        return _gzip_lines_back(path, size)
    return _plain_lines_back(path, size)


def _start(family: list[Path], limit: Limit) -> tuple[int, int | None]:
    """Which part held the live file when `limit` was taken, and how far to read it."""
    if limit.inode is None:
        return len(family), None  # there was no live file: nothing was written before
    for index, part in enumerate(family):
        if part.name.endswith(".gz"):
            # Rotated and compressed since: the first compressed copy is the newest.
            return index, limit.size
        try:
            if os.stat(part).st_ino == limit.inode:
                return index, limit.size
        except FileNotFoundError:
            continue
    return len(family), None


def records_back(
    live: Path, is_head: Callable[[str], bool] | None, limit: Limit | None = None
) -> Iterator[list[str]]:
    """Records of a family, newest first, each as its lines in order.

    Args:
        live: the family's live file.
        is_head: whether a line starts a record; None when every line is one (JSONL).
        limit: read only what the family held when this was taken.

    A part that disappears while it is read (rotated away) is skipped. Lines at the
    start of a part that continue a record from the part before are dropped.
    """
    family = parts(live)
    start, size = (0, None) if limit is None else _start(family, limit)
    for index in range(start, len(family)):
        pending: list[str] = []
        try:
            for line in _lines_back(family[index], size if index == start else None):
                if is_head is None or is_head(line):
                    pending.reverse()
                    yield [line, *pending]
                    pending = []
                else:
                    pending.append(line)
        except FileNotFoundError:
            continue
        except (OSError, EOFError, gzip.BadGzipFile):
            continue  # a damaged or half-written copy: what could be read was used
