"""The head of a run-log or call-file line (SPEC §4), for everything that reads them back.

A text record is a head line (`[session] - time - logger - LEVEL - message`, or the call
file's `time - tid: N - LEVEL - message`) and its continuation lines. Pure: patterns
and the clock-text conversion, no I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from logd.index.eventline import iso_utc_ms

__all__ = ["CALL_HEAD_RE", "RUN_HEAD_RE", "TRACEBACK", "iso_from_clock"]

_TIME = r"(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"
_LEVEL = r"(?P<level>[A-Z][A-Z0-9_]{0,15}|Level -?\d+)"
RUN_HEAD_RE = re.compile(
    rf"\[(?P<session>.*?)\] - {_TIME} - (?P<logger>.*?) - {_LEVEL} - (?P<body>.*)", re.S
)
CALL_HEAD_RE = re.compile(rf"{_TIME} - tid: (?P<thread>-?\d+) - {_LEVEL} - (?P<body>.*)", re.S)
TRACEBACK = "Traceback (most recent call last):"


def iso_from_clock(text: str, utc: bool) -> str:
    """The index's ISO UTC time of a line's `2025-11-05 14:30:52,123` clock text.

    Raises:
        ValueError: not a clock text.
    """
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f")
    # Local text lines: the zone in force at that moment (an hour repeated when clocks
    # go back reads as its first occurrence).
    moment = moment.replace(tzinfo=UTC) if utc else moment.astimezone()
    return iso_utc_ms(round(moment.timestamp() * 1000) * 1_000_000)
