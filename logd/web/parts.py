"""A log file and its rotated parts read as one: ``main.log.3.gz``, ``.2.gz``, ``.1.gz``
and ``main.log``, oldest first, behind one `Source`, so paging and search run through the
whole run and a rotation is not the end of the story.

No filesystem access of its own: parts come as open readers (see `views`). A ``.gz`` part
is decompressed only when a read reaches it; its size comes from the gzip trailer.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from logd.web.logview import BytesSource, Source

__all__ = ["ChainSource", "Part", "families", "family_of", "part_order"]

_PART_RE = re.compile(r"(?P<base>.+?)(?:\.(?P<n>[0-9]+))?(?P<gz>\.gz)?")


def family_of(name: str) -> str:
    """``main.log.2.gz`` -> ``main.log``: the file a rotated part was cut from."""
    match = _PART_RE.fullmatch(name)
    return match["base"] if match else name


def part_order(name: str) -> int:
    """How old a part is: the live file 0, ``.1`` 1, ``.2.gz`` 2 (sort descending)."""
    match = _PART_RE.fullmatch(name)
    return int(match["n"]) if match and match["n"] else 0


def families(names: Sequence[str]) -> dict[str, list[str]]:
    """Each family's part names, oldest first."""
    out: dict[str, list[str]] = {}
    for name in names:
        out.setdefault(family_of(name), []).append(name)
    for parts in out.values():
        parts.sort(key=lambda n: (-part_order(n), n.endswith(".gz")))
    return dict(sorted(out.items()))


def gzip_size(tail: bytes) -> int:
    """The uncompressed size a gzip file's trailer states (ISIZE, modulo 4 GiB)."""
    return int.from_bytes(tail[-4:], "little") if len(tail) >= 4 else 0


@dataclass(slots=True)
class Part:
    """One part: its size, and how to get at its bytes (`open` runs once, when needed)."""

    name: str
    size: int
    open: Callable[[], Source]
    _source: Source | None = field(default=None, init=False)

    def source(self) -> Source:
        if self._source is None:
            opened = self.open()
            if opened.size != self.size and isinstance(opened, BytesSource):
                # A trailer that lies (several members, or past 4 GiB): keep the offsets
                # the page planned with; the cut or padding shows as an odd line.
                data = opened.data[: self.size].ljust(self.size, b"\n")
                opened = BytesSource(data)
            self._source = opened
        return self._source


class ChainSource:
    """Parts back to back, oldest first; offsets run through all of them."""

    def __init__(self, parts: Sequence[Part]) -> None:
        self.parts = list(parts)
        self.starts: list[int] = []
        total = 0
        for part in self.parts:
            self.starts.append(total)
            total += part.size
        self._size = total

    @property
    def size(self) -> int:
        return self._size

    def part_at(self, offset: int) -> str | None:
        """The name of the part holding byte `offset`."""
        i = bisect_right(self.starts, offset) - 1
        return self.parts[i].name if 0 <= i < len(self.parts) else None

    def pread(self, n: int, offset: int) -> bytes:
        out = bytearray()
        i = max(bisect_right(self.starts, offset) - 1, 0)
        while n > 0 and i < len(self.parts):
            part, start = self.parts[i], self.starts[i]
            inner = offset - start
            if inner < part.size:
                chunk = part.source().pread(min(n, part.size - inner), inner)
                if not chunk:
                    break
                out += chunk
                n -= len(chunk)
                offset += len(chunk)
            i += 1
        return bytes(out)
