"""One way `logd web` shows a time: local wall-clock text on the page, the zone named once
per page, ISO UTC in tooltips and JSON. Also the epoch of the times the files hold.

Pure apart from the process's time zone (which `tz` overrides in tests); no clock.
"""

from __future__ import annotations

import calendar
import time
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from typing import Any

__all__ = ["clock_epoch", "epoch_of", "iso_utc", "local_text", "zone_label"]


def epoch_of(value: Any) -> float | None:
    """Seconds since the epoch of an ISO time (``...Z`` or with an offset; naive is UTC)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def clock_epoch(text: str, utc: bool) -> float | None:
    """The epoch of a text-line time (``2025-11-05 14:30:52,123``), written in local time
    unless the layout says UTC (`[layout] utc`)."""
    whole = _second_epoch(text[:19], utc)
    if whole is None:
        return None
    try:
        millis = int(text[20:23]) if len(text) >= 23 else 0
    except ValueError:
        return None
    return whole + millis / 1000


@lru_cache(maxsize=4096)
def _second_epoch(text: str, utc: bool) -> float | None:
    # Cached: a chart dates tens of thousands of records, most sharing their second.
    try:
        parsed = time.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return float(calendar.timegm(parsed) if utc else time.mktime(parsed))


def iso_utc(epoch: float) -> str:
    """``2025-11-05T14:30:52.123Z``, the index's own form."""
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def local_text(value: Any, *, ms: bool = False, tz: tzinfo | None = None) -> str:
    """An ISO time (or epoch) as local ``2025-11-05 15:30:52`` (``,123`` with `ms`, as the
    run-log lines write it); anything unreadable is returned as it came."""
    epoch = epoch_of(value)
    if epoch is None:
        return "" if value is None else str(value)
    moment = datetime.fromtimestamp(epoch, tz=UTC).astimezone(tz)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return text + f",{moment.microsecond // 1000:03d}" if ms else text


def zone_label(now: float, tz: tzinfo | None = None) -> str:
    """``CET (UTC+01:00)``: said once per page, so the rows need not repeat it."""
    moment = datetime.fromtimestamp(now, tz=UTC).astimezone(tz)
    offset = moment.strftime("%z")
    sign_hours = f"{offset[:3]}:{offset[3:]}" if offset else "+00:00"
    name = moment.tzname() or ""
    return (
        f"{name} (UTC{sign_hours})"
        if name and not name.startswith(("+", "-"))
        else (f"UTC{sign_hours}")
    )
