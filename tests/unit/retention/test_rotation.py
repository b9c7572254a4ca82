"""Rotation decisions as tables: sizes, names and days in, renames and cuts out."""

from __future__ import annotations

import calendar

import pytest

from logd.config import RotationPolicy
from logd.retention.rotation import (
    backup_renames,
    events_archive_name,
    events_rotation_due,
    rotation_cuts,
    rotation_due,
    utc_day,
    utc_day_end,
)

NOW = float(calendar.timegm((2025, 7, 1, 12, 0, 0)))  # 2025-07-01T12:00:00Z

P = RotationPolicy(max_bytes=100, backups=3, compress=True)


@pytest.mark.parametrize(
    ("size", "incoming", "due"),
    [
        pytest.param(0, 10, False, id="empty"),
        pytest.param(0, 500, False, id="empty-huge-line-goes-alone"),
        pytest.param(90, 10, False, id="exactly-max"),
        pytest.param(91, 10, True, id="would-pass-max"),
        pytest.param(150, 1, True, id="already-over-after-huge-line"),
        pytest.param(1, 500, True, id="huge-line-into-fresh-file"),
    ],
)
def test_rotation_due(size: int, incoming: int, due: bool) -> None:
    assert rotation_due(size, incoming, P) is due


@pytest.mark.parametrize(
    ("size", "lines", "cuts"),
    [
        pytest.param(0, [40, 40], [], id="fits"),
        pytest.param(0, [40, 40, 40], [2], id="third-line-starts-a-new-file"),
        pytest.param(90, [40, 40, 40], [0, 2], id="full-file-rotates-before-the-first"),
        pytest.param(0, [60, 40, 60, 40, 60], [2, 4], id="exactly-full-stays"),
        pytest.param(0, [500, 10, 500], [1, 2], id="huge-lines-alone"),
        pytest.param(0, [100] * 5, [1, 2, 3, 4], id="one-line-per-file"),
    ],
)
def test_rotation_cuts(size: int, lines: list[int], cuts: list[int]) -> None:
    """A batch bound for one file is cut wherever the next line would pass max_bytes."""
    assert P.max_bytes == 100
    assert rotation_cuts(size, lines, P.max_bytes) == cuts
    # Replaying the cuts never leaves a file over the limit but for a lone huge line.
    files, current = [], size
    for index, count in enumerate(lines):
        if index in cuts:
            files.append(current)
            current = 0
        current += count
    files.append(current)
    assert all(f <= P.max_bytes or f in lines for f in files)


@pytest.mark.parametrize(
    ("existing", "backups", "plan"),
    [
        pytest.param(set(), 3, [("f", "f.1")], id="first"),
        pytest.param({"f.1.gz"}, 3, [("f.1.gz", "f.2.gz"), ("f", "f.1")], id="shift-keeps-gz"),
        pytest.param(
            {"f.1", "f.2.gz", "f.3.gz"},
            3,
            [("f.3.gz", None), ("f.2.gz", "f.3.gz"), ("f.1", "f.2"), ("f", "f.1")],
            id="drop-oldest-uncompressed-shifts-plain",
        ),
        pytest.param(
            {"f.1.gz", "f.2.gz", "f.5", "f.9.gz"},
            2,
            [("f.9.gz", None), ("f.5", None), ("f.2.gz", None), ("f.1.gz", "f.2.gz"), ("f", "f.1")],
            id="leftovers-beyond-backups-dropped",
        ),
        pytest.param(
            {"f.1", "f.1.gz"},
            3,
            [("f.1", None), ("f.1.gz", "f.2.gz"), ("f", "f.1")],
            id="crash-mid-compression-keeps-gz",
        ),
        pytest.param({"f.2.gz"}, 3, [("f.2.gz", "f.3.gz"), ("f", "f.1")], id="gap"),
        pytest.param({"f.1", "f.2"}, 0, [("f.2", None), ("f.1", None), ("f", None)], id="zero"),
        pytest.param(
            {"f.log", "f.01", "f.x.gz", "g.1", "f.1.tmp"}, 1, [("f", "f.1")], id="ignores-others"
        ),
    ],
)
def test_backup_renames(
    existing: set[str], backups: int, plan: list[tuple[str, str | None]]
) -> None:
    policy = RotationPolicy(max_bytes=100, backups=backups)
    assert backup_renames("f", existing, policy) == plan


def test_backup_renames_full_paths() -> None:
    existing = {"a/runs/r/main.log", "a/runs/r/main.log.1.gz", "a/runs/r/other.log.1"}
    assert backup_renames("a/runs/r/main.log", existing, P) == [
        ("a/runs/r/main.log.1.gz", "a/runs/r/main.log.2.gz"),
        ("a/runs/r/main.log", "a/runs/r/main.log.1"),
    ]


@pytest.mark.parametrize(
    ("existing", "name"),
    [
        pytest.param(set(), "events.log.2025-07-01", id="first"),
        pytest.param({"events.log.2025-07-01.gz"}, "events.log.2025-07-01.1", id="second"),
        pytest.param(
            {"events.log.2025-07-01", "events.log.2025-07-01.1.gz", "events.log.2025-07-01.4"},
            "events.log.2025-07-01.5",
            id="past-highest",
        ),
        pytest.param(
            {"events.log.2025-06-30.3.gz", "events.log", "events.log.2025-07-01x"},
            "events.log.2025-07-01",
            id="other-days-ignored",
        ),
    ],
)
def test_events_archive_name(existing: set[str], name: str) -> None:
    assert events_archive_name("2025-07-01", existing) == name


@pytest.mark.parametrize(
    ("last_day", "size", "incoming", "due"),
    [
        pytest.param("2025-07-01", 50, 10, False, id="same-day-small"),
        pytest.param("2025-06-30", 50, 10, True, id="midnight-utc"),
        pytest.param("2025-06-30", 0, 10, False, id="empty-never"),
        pytest.param("2025-07-01", 95, 10, True, id="size"),
    ],
)
def test_events_rotation_due(last_day: str, size: int, incoming: int, due: bool) -> None:
    assert events_rotation_due(last_day, utc_day(NOW), size, incoming, P) is due


def test_utc_days() -> None:
    assert utc_day(NOW) == "2025-07-01"
    assert utc_day_end("2025-07-01") == calendar.timegm((2025, 7, 2, 0, 0, 0))
    assert utc_day_end("2025-02-30") is None
    assert utc_day_end("20250701") is None
