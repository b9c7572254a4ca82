"""Record and event volume over time, as buckets a chart draws: how many records per
time step, by level; how many events per step, by type; numeric fields' p50/p95.

Pure: points in (epoch seconds), buckets out. No files, no clock.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LEVEL_CLASSES",
    "MAX_BUCKETS",
    "Buckets",
    "Spread",
    "bucket",
    "level_class",
    "spreads",
]

MAX_BUCKETS = 60
# Stacking order, bottom up; errors (ERROR and CRITICAL) on top where the eye lands.
LEVEL_CLASSES = ("debug", "info", "warning", "error")
# Bucket widths a reader can name ("5 min"), smallest first.
_STEPS_S = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    172800, 604800, 2592000,
)  # fmt: skip


def level_class(levelno: int) -> str:
    """Which stack a record goes in: ERROR and above, WARNING, INFO (and unknown), DEBUG."""
    if levelno >= 40:
        return "error"
    if levelno >= 30:
        return "warning"
    if 0 < levelno < 20:
        return "debug"
    return "info"


@dataclass(frozen=True, slots=True)
class Buckets:
    """Counts per time step: bucket ``i`` covers ``[start + i*step, start + (i+1)*step)``."""

    start: float
    step: int
    counts: tuple[Mapping[str, int], ...]

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.counts)

    @property
    def peak(self) -> int:
        return max((sum(c.values()) for c in self.counts), default=0)


def bucket(points: Iterable[tuple[float, str]], max_buckets: int = MAX_BUCKETS) -> Buckets | None:
    """Points ``(epoch, series)`` counted into at most ``max_buckets`` steps of a round
    width, aligned to it; None when there are no points."""
    items = list(points)
    if not items:
        return None
    first = min(t for t, _ in items)
    last = max(t for t, _ in items)
    step = next(
        (s for s in _STEPS_S if math.floor(last / s) - math.floor(first / s) < max_buckets),
        _STEPS_S[-1],
    )
    start = math.floor(first / step) * step
    n = int(math.floor(last / step) - math.floor(first / step)) + 1
    counts: list[Counter[str]] = [Counter() for _ in range(n)]
    for moment, series in items:
        counts[min(int((moment - start) // step), n - 1)][series] += 1
    return Buckets(float(start), step, tuple(counts))


@dataclass(frozen=True, slots=True)
class Spread:
    """A numeric field of one event type: how many, the median, the 95th percentile."""

    event_type: str
    key: str
    n: int
    p50: float
    p95: float
    high: float


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    # Nearest rank: a value that occurred, as a reader expects of "p95 = 2333 ms".
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def spreads(events: Iterable[Mapping[str, Any]]) -> list[Spread]:
    """p50/p95 of every numeric ``kv`` field seen at least twice, per event type
    (``llm:response``'s ``latency_ms``, ``tokens_out``...), by type then key."""
    values: dict[tuple[str, str], list[float]] = {}
    for event in events:
        kv = event.get("kv")
        if not isinstance(kv, Mapping):
            continue
        for key, value in kv.items():
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if numeric and math.isfinite(value):
                values.setdefault((str(event.get("event_type")), str(key)), []).append(value)
    out = []
    for (event_type, key), found in sorted(values.items()):
        if len(found) < 2:
            continue  # one value has no spread (an app:start's pid)
        ordered = sorted(found)
        out.append(
            Spread(
                event_type,
                key,
                len(ordered),
                _percentile(ordered, 0.5),
                _percentile(ordered, 0.95),
                ordered[-1],
            )
        )
    return out
