"""Rotation decisions: when a file rotates, where a write is cut, how backups shift.

Pure: no I/O and no clock. Sizes, names and days are arguments (days as UTC
``YYYY-MM-DD`` texts, times as POSIX seconds), so the rules of SPEC §6 are tested as
tables; `write.sinks` carries them out. The UTC-day helpers live here because rotation
(events.log turns over at UTC midnight) needs them first; retention reads them too.
"""

from __future__ import annotations

import calendar
import functools
import re
import time
from collections.abc import Collection, Sequence
from datetime import date

from logd.config import RotationPolicy

__all__ = [
    "DAY_S",
    "backup_renames",
    "events_archive_name",
    "events_rotation_due",
    "rotation_cuts",
    "rotation_due",
    "utc_day",
    "utc_day_end",
]

DAY_S = 86400
_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def rotation_due(size_bytes: int, incoming_bytes: int, policy: RotationPolicy) -> bool:
    """Whether to rotate *before* appending `incoming_bytes` to a file of `size_bytes`.

    Rotating before the write keeps every file at or under `max_bytes`, except that a
    single line larger than `max_bytes` lands alone in a fresh file: an empty file never
    rotates, or such a line would rotate forever.
    """
    return size_bytes > 0 and size_bytes + incoming_bytes > policy.max_bytes


def rotation_cuts(size_bytes: int, line_bytes: Sequence[int], max_bytes: int) -> list[int]:
    """Where to rotate within a batch of lines bound for one file: before each index
    returned. The rule is `rotation_due`'s, applied line by line, so no file passes
    `max_bytes` unless one line alone is larger than it."""
    cuts = []
    size = size_bytes
    for index, count in enumerate(line_bytes):
        if size > 0 and size + count > max_bytes:
            cuts.append(index)
            size = 0
        size += count
    return cuts


def _backup_variants(path: str, index: int, existing: Collection[str]) -> list[str]:
    return [name for name in (f"{path}.{index}", f"{path}.{index}.gz") if name in existing]


def backup_renames(
    path: str, existing: Collection[str], policy: RotationPolicy
) -> list[tuple[str, str | None]]:
    """The renames that rotate `path` to `path.1`, in the order to carry them out.

    Each step is `(source, target)`; target None means delete the source. Backups keep
    their `.gz` suffix when they shift (`file.1.gz` -> `file.2.gz`); those at or beyond
    `policy.backups` are dropped (also ones left over from a larger `backups` before a
    reload). When both `file.N` and `file.N.gz` exist, a crash hit compression between
    its rename and its unlink: the `.gz` is complete, so the plain copy is dropped. With
    `backups = 0` the live file itself is dropped (it starts again empty), as stdlib's
    RotatingFileHandler would. Compressing the new `file.1` is the caller's next step.

    Args:
        path: the live file, in whatever form `existing` uses (name or path).
        existing: the names present beside it, in the same form.
        policy: `backups` is read; `max_bytes` and `compress` do not change the plan.
    """
    prefix = path + "."
    indexes: set[int] = set()
    for name in existing:
        if not name.startswith(prefix):
            continue
        suffix = name[len(prefix) :].removesuffix(".gz")
        if suffix.isascii() and suffix.isdigit() and not suffix.startswith("0"):
            indexes.add(int(suffix))
    plan: list[tuple[str, str | None]] = []
    for index in sorted((i for i in indexes if i >= policy.backups), reverse=True):
        plan.extend((name, None) for name in _backup_variants(path, index, existing))
    for index in sorted((i for i in indexes if i < policy.backups), reverse=True):
        variants = _backup_variants(path, index, existing)
        if len(variants) == 2:
            plan.append((variants[0], None))
            variants = variants[1:]
        source = variants[0]
        target = f"{path}.{index + 1}" + (".gz" if source.endswith(".gz") else "")
        plan.append((source, target))
    plan.append((path, f"{path}.1" if policy.backups > 0 else None))
    return plan


def utc_day(ts: float) -> str:
    """The UTC `YYYY-MM-DD` of a moment: the event log rotates at 00:00 UTC."""
    return _utc_day_of(int(ts // DAY_S))


@functools.lru_cache(maxsize=64)
def _utc_day_of(day: int) -> str:
    # Asked for every file (re)opened, nearly always about the same few days.
    return time.strftime("%Y-%m-%d", time.gmtime(day * DAY_S))


def utc_day_end(day: str) -> float | None:
    """The moment a UTC day ends (00:00 UTC the day after), or None if not a date."""
    if not _DAY_RE.fullmatch(day):
        return None
    try:
        parsed = date.fromisoformat(day)
    except ValueError:
        return None
    return float(calendar.timegm(parsed.timetuple()) + DAY_S)


def events_archive_name(day: str, existing: Collection[str], *, base: str = "events.log") -> str:
    """The name to rename `base` to when archiving the lines of UTC `day`.

    The first archive of a day is `events.log.YYYY-MM-DD`, later ones (size rotation)
    `.1`, `.2` …; always one past the highest present, so names sort in time order even
    after a gap. An archive counts as present compressed or not; the returned name is
    the uncompressed one, and compression adds `.gz` afterwards.

    Args:
        day: the UTC day the archived lines belong to (the day of the last write).
        existing: the names in the folder, in the same form as `base`.
        base: the live event log.
    """
    stem = f"{base}.{day}"
    highest = -1
    for name in existing:
        name = name.removesuffix(".gz")
        if name == stem:
            highest = max(highest, 0)
        elif name.startswith(stem + "."):
            suffix = name[len(stem) + 1 :]
            if suffix.isascii() and suffix.isdigit():
                highest = max(highest, int(suffix))
    return stem if highest < 0 else f"{stem}.{highest + 1}"


def events_rotation_due(
    last_day: str, now_day: str, size_bytes: int, incoming_bytes: int, policy: RotationPolicy
) -> bool:
    """Whether `events.log` rotates before the next write: the UTC day changed since its
    last write, or the write would pass `max_bytes`. An empty log never rotates."""
    if size_bytes > 0 and last_day != now_day:
        return True
    return rotation_due(size_bytes, incoming_bytes, policy)
