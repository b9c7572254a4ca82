"""Retention decisions as tables: explicit `now`, made-up listings."""

from __future__ import annotations

import calendar
import dataclasses
from typing import Any

import pytest

from logd.config import Retention
from logd.retention.policy import (
    Archive,
    CallDay,
    Deletion,
    Listing,
    Reason,
    RejectedDay,
    RunEntry,
    SessionEntry,
    UnitKind,
    decide_cleanup,
)
from logd.retention.rotation import utc_day_end

DAY = 86400.0
HOUR = 3600.0
NOW = float(calendar.timegm((2025, 7, 1, 12, 0, 0)))  # 2025-07-01T12:00:00Z


def run(
    rid: str, *, started: float, ended: float | None, app: str = "a", size: int = 100
) -> RunEntry:
    """A run that started and ended the given number of seconds before NOW."""
    end = None if ended is None else NOW - ended
    return RunEntry(app, rid, f"{app}/runs/{rid}", NOW - started, end, size)


def call_day(day: str, *, active: bool = False, app: str = "a", size: int = 100) -> CallDay:
    end = utc_day_end(day)
    assert end is not None
    return CallDay(app, day, f"{app}/calls/{day}", end, size, active)


def session(
    sid: str,
    *,
    last: float,
    ended: float | None = None,
    active: bool = False,
    backups: int = 0,
    app: str = "a",
    size: int = 100,
) -> SessionEntry:
    live = f"{app}/sessions/session_{sid}.jsonl"
    files = [(live, size)] + [(f"{live}.{i}.gz", size) for i in range(1, backups + 1)]
    end = None if ended is None else NOW - ended
    return SessionEntry(app, sid, tuple(files), NOW - last, end, active)


def archive(name: str, *, app: str = "a", size: int = 100) -> Archive:
    day = name.split(".")[2]
    end = utc_day_end(day)
    assert end is not None
    return Archive(app, f"{app}/{name}", day, end, size)


def rejected(day: str, *, size: int = 100) -> RejectedDay:
    end = utc_day_end(day)
    assert end is not None
    return RejectedDay(f"_rejected/{day}.jsonl", day, end, size)


OFF = Retention(runs_days=1e6, runs_keep=0, calls_days=1e6, sessions_days=1e6, events_days=1e6)


def keep(**changes: Any) -> Retention:
    """A policy that keeps everything except what the changed keys say."""
    return dataclasses.replace(OFF, **changes)


RETENTION_CASES = [
    pytest.param(
        keep(runs_days=30),
        Listing(
            runs=(
                run("old", started=40 * DAY, ended=31 * DAY),
                run("new", started=40 * DAY, ended=29 * DAY),
            )
        ),
        {"a/runs/old"},
        id="runs-age-counts-from-end",
    ),
    pytest.param(
        keep(runs_days=30, runs_keep=2),
        Listing(
            runs=(
                run("r1", started=90 * DAY, ended=89 * DAY),
                run("r2", started=80 * DAY, ended=79 * DAY),
                run("r3", started=70 * DAY, ended=69 * DAY),
                run("r4", started=60 * DAY, ended=59 * DAY),
            )
        ),
        {"a/runs/r1", "a/runs/r2"},
        id="runs-keep-newest-even-when-old",
    ),
    pytest.param(
        keep(runs_days=30, runs_keep=2),
        Listing(
            runs=(
                run("r1", started=90 * DAY, ended=89 * DAY),
                run("r2", started=80 * DAY, ended=79 * DAY),
                run("r3", started=70 * DAY, ended=69 * DAY),
                run("live", started=60 * DAY, ended=None),
            )
        ),
        {"a/runs/r1", "a/runs/r2"},
        id="active-run-counts-among-kept",
    ),
    pytest.param(
        keep(runs_days=0, runs_keep=0),
        Listing(runs=(run("live", started=400 * DAY, ended=None), run("done", started=2, ended=1))),
        {"a/runs/done"},
        id="active-run-never-deleted-zero-days",
    ),
    pytest.param(
        keep(runs_days=0, runs_keep=1),
        Listing(
            runs=(
                run("a1", started=3 * DAY, ended=2 * DAY),
                run("a2", started=2 * DAY, ended=1 * DAY),
                run("b1", started=3 * DAY, ended=2 * DAY, app="b"),
            )
        ),
        {"a/runs/a1"},
        id="runs-keep-is-per-app",
    ),
    pytest.param(
        keep(runs_days=0.5),
        Listing(
            runs=(
                run("r13h", started=DAY, ended=13 * HOUR),
                run("r11h", started=DAY, ended=11 * HOUR),
            )
        ),
        {"a/runs/r13h"},
        id="fractional-days",
    ),
    pytest.param(
        keep(calls_days=1),
        Listing(
            call_days=(
                call_day("2025-06-29"),  # ended 06-30 00:00, + 1 d < NOW
                call_day("2025-06-30"),  # ended 07-01 00:00, + 1 d > NOW
                call_day("2025-06-01", active=True),
            )
        ),
        {"a/calls/2025-06-29"},
        id="call-days-from-end-of-day-active-kept",
    ),
    pytest.param(
        keep(calls_days=0),
        Listing(call_days=(call_day("2025-06-30"), call_day("2025-07-01"))),
        {"a/calls/2025-06-30"},
        id="call-days-zero-keeps-today",
    ),
    pytest.param(
        keep(sessions_days=7),
        Listing(
            sessions=(
                session("old", last=8 * DAY, backups=2),
                session("recent", last=6 * DAY),
                session("live", last=30 * DAY, active=True),
                session("late-end", last=10 * DAY, ended=5 * DAY),
            )
        ),
        {
            "a/sessions/session_old.jsonl",
            "a/sessions/session_old.jsonl.1.gz",
            "a/sessions/session_old.jsonl.2.gz",
        },
        id="sessions-after-end-active-kept",
    ),
    pytest.param(
        keep(events_days=90),
        Listing(
            archives=(
                archive("events.log.2025-03-01"),
                archive("events.log.2025-03-01.1.gz"),
                archive("events.log.2025-04-02.gz"),  # ends 04-03, + 90 d > NOW
            ),
            rejected=(rejected("2025-03-01"), rejected("2025-07-01")),
        ),
        {
            "a/events.log.2025-03-01",
            "a/events.log.2025-03-01.1.gz",
            "_rejected/2025-03-01.jsonl",
        },
        id="archives-and-rejected-by-day",
    ),
    pytest.param(
        keep(events_days=0),
        Listing(archives=(archive("events.log.2025-06-30"),), rejected=(rejected("2025-07-01"),)),
        {"a/events.log.2025-06-30"},
        id="events-zero-days-keeps-today",
    ),
    pytest.param(
        keep(max_total_bytes=350, runs_keep=5),
        Listing(
            runs=(
                run("r1", started=9 * DAY, ended=8 * DAY),
                run("r2", started=3 * DAY, ended=2 * DAY),
                run("live", started=50 * DAY, ended=None),
            ),
            sessions=(session("s", last=5 * DAY),),
            call_days=(call_day("2025-06-20", active=True), call_day("2025-07-01")),
        ),
        # 600 bytes, 250 over: r1 (ended 8 d ago), s (5 d), r2 (2 d) go, in that order.
        {"a/runs/r1", "a/sessions/session_s.jsonl", "a/runs/r2"},
        id="size-cap-oldest-ended-first-overrides-keep",
    ),
    pytest.param(
        keep(max_total_bytes=1),
        Listing(
            runs=(run("live", started=DAY, ended=None),),
            sessions=(session("live", last=DAY, active=True),),
            call_days=(call_day("2025-06-01", active=True), call_day("2025-07-01")),
            rejected=(rejected("2025-07-01"),),
        ),
        set(),
        id="size-cap-never-active-or-unended",
    ),
    pytest.param(
        keep(max_total_bytes=1000, runs_days=10),
        Listing(
            runs=(
                run("r1", started=20 * DAY, ended=11 * DAY, size=500),
                run("r2", started=9, ended=8),
            ),
            other_bytes=550,
        ),
        # age frees 500; 650 - 1000 fits, so the cap deletes nothing more.
        {"a/runs/r1"},
        id="size-cap-counts-age-deletions-and-other-bytes",
    ),
    pytest.param(
        keep(max_total_bytes=0),
        Listing(runs=(run("r", started=2, ended=1, size=10**12),), other_bytes=10**12),
        set(),
        id="size-cap-zero-is-off",
    ),
]


@pytest.mark.parametrize(("policy", "listing", "expected"), RETENTION_CASES)
def test_decide_cleanup(policy: Retention, listing: Listing, expected: set[str]) -> None:
    deletions = decide_cleanup(policy, listing, NOW)
    paths = [d.path for d in deletions]
    assert len(paths) == len(set(paths))
    assert set(paths) == expected


def test_size_cap_order_and_reasons() -> None:
    """Age deletions come first; the cap then takes whole units, oldest end first."""
    listing = Listing(
        runs=(
            run("aged", started=50 * DAY, ended=40 * DAY),
            run("r", started=3 * DAY, ended=2 * DAY),
        ),
        sessions=(session("s", last=4 * DAY, backups=1),),
        archives=(archive("events.log.2025-06-25"),),
    )
    policy = keep(runs_days=30, max_total_bytes=100)
    got = [(d.path, d.reason, d.kind) for d in decide_cleanup(policy, listing, NOW)]
    assert got == [
        ("a/runs/aged", Reason.AGE, UnitKind.RUN),
        ("a/events.log.2025-06-25", Reason.SIZE_CAP, UnitKind.EVENTS_ARCHIVE),
        ("a/sessions/session_s.jsonl", Reason.SIZE_CAP, UnitKind.SESSION),
        ("a/sessions/session_s.jsonl.1.gz", Reason.SIZE_CAP, UnitKind.SESSION),
    ]


def test_deletion_names_the_unit() -> None:
    listing = Listing(runs=(run("r", started=3 * DAY, ended=2 * DAY, size=7),))
    assert decide_cleanup(keep(runs_days=1), listing, NOW) == [
        Deletion("a/runs/r", Reason.AGE, 7, UnitKind.RUN, "a", "r")
    ]


def test_default_policy_keeps_fresh_tree() -> None:
    listing = Listing(
        runs=tuple(run(f"r{i}", started=(i + 2) * DAY, ended=(i + 1) * DAY) for i in range(25)),
        call_days=(call_day("2025-06-01"),),
        sessions=(session("s", last=6 * DAY),),
    )
    got = {d.path for d in decide_cleanup(Retention(), listing, NOW)}
    # Nothing has been over for 30 days yet.
    assert got == set()
    listing = Listing(
        runs=tuple(run(f"r{i}", started=40 * DAY + i, ended=31 * DAY + i) for i in range(25))
    )
    got = {d.path for d in decide_cleanup(Retention(), listing, NOW)}
    # All ended over 30 days ago; the newest 20 by start stay.
    assert got == {f"a/runs/r{i}" for i in range(20, 25)}


def test_leftover_temp_files_go_whatever_the_policy() -> None:
    listing = Listing(
        runs=(run("r1", started=2 * DAY, ended=None),),
        temps=(("a/runs/r1/.metadata.json.tmp", 3), ("a/runs/.current.tmp", 2)),
        other_bytes=2,
    )
    keep_all = Retention(runs_days=10_000, runs_keep=100, max_total_bytes=0)
    got = decide_cleanup(keep_all, listing, NOW)
    assert [(d.path, d.reason, d.kind, d.app, d.name) for d in got] == [
        ("a/runs/.current.tmp", Reason.LEFTOVER, UnitKind.TEMP, "a", ".current.tmp"),
        (
            "a/runs/r1/.metadata.json.tmp",
            Reason.LEFTOVER,
            UnitKind.TEMP,
            "a",
            ".metadata.json.tmp",
        ),
    ]
