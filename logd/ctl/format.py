"""How `logd-ctl` writes values and tables: sizes, durations, local times, sparklines,
listings as aligned tables, run-log lines in colour.

Pure: results in, lines out. No I/O, no clock (`now` is an argument), no terminal
queries; the caller decides the width and whether colour is on. The one-result blocks
(status, run, cleanup) are in `blocks`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

__all__ = [
    "ELLIPSIS",
    "Column",
    "calls_table",
    "colour_line",
    "count_text",
    "cut",
    "elapsed",
    "events_table",
    "human_bytes",
    "human_duration",
    "printable",
    "runs_table",
    "sessions_table",
    "short_time",
    "sparkline",
    "table",
]

_BARS = "▁▂▃▄▅▆▇█"
ELLIPSIS = "…"
_GAP = "  "
# SGR codes; each physical line is wrapped on its own so `less -R` and `grep` keep working.
_COLOURS = {
    "DEBUG": "\x1b[2m",
    "WARNING": "\x1b[33m",
    "ERROR": "\x1b[31m",
    "CRITICAL": "\x1b[1;31m",
}
_RESET = "\x1b[0m"
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


# --- small values -------------------------------------------------------------------------------


def human_bytes(size: float) -> str:
    """`512 B`, `1.5 KiB`, `3.2 MiB`, ...: binary units, as `du -h` and the config use."""
    if size < 1024:
        return f"{int(size)} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def human_duration(seconds: float) -> str:
    """`850ms`, `42s`, `3m 12s`, `2h 05m`, `3d 04h`: two units at most, the rest is noise."""
    if seconds < 0:
        seconds = 0
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600:02d}h"


def _moment(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def short_time(value: Any, tz: tzinfo | None = None) -> str:
    """An ISO time (or epoch seconds) as local `YYYY-MM-DD HH:MM:SS`; other values as given.

    The daemon keeps UTC `...Z` and offset-carrying times; operators read local time,
    as in `journalctl`. `tz` exists for tests.
    """
    moment = _moment(value)
    if moment is None:
        return "-" if value is None or value == "" else str(value)
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def _epoch(value: Any) -> float | None:
    moment = _moment(value)
    return moment.timestamp() if moment is not None else None


def count_text(value: Any) -> str:
    """An integer with thousands separators (`1,234`); anything else is `-`."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "-"


def sparkline(series: Sequence[float], width: int | None = None) -> str:
    """Bars for `series`, scaled to its maximum; averaged into `width` buckets if given.

    An all-zero series is a flat line of the lowest bar, so the line never vanishes.
    """
    values = [max(float(v), 0.0) for v in series]
    if width is not None and 0 < width < len(values):
        buckets = []
        for i in range(width):
            part = values[i * len(values) // width : (i + 1) * len(values) // width]
            buckets.append(sum(part) / len(part))
        values = buckets
    top = max(values, default=0.0)
    if top <= 0:
        return _BARS[0] * len(values)
    last = len(_BARS) - 1
    return "".join(_BARS[min(last, round(v / top * last))] for v in values)


def colour_line(line: str, level: str | None, enabled: bool) -> str:
    """A run-log line (possibly several, with a traceback) coloured by level when enabled."""
    code = _COLOURS.get(level or "") if enabled else None
    if code is None:
        return line
    return "\n".join(f"{code}{part}{_RESET}" if part else part for part in line.split("\n"))


def printable(text: str) -> str:
    """`text` with control characters escaped (`\\n`, `\\x1b`), so a hostile id cannot
    break a table row or send escape sequences to the operator's terminal."""
    return _CONTROL_RE.sub(lambda m: repr(m[0])[1:-1], text)


def cut(text: str, width: int) -> str:
    """`text` in at most `width` characters, ending in an ellipsis when cut."""
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + ELLIPSIS if width > 0 else ""


# --- tables -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """One table column. `min_width` None: never shortened (ids an operator copies)."""

    header: str
    align: Literal["<", ">"] = "<"
    min_width: int | None = None
    compact: Callable[[str], str] | None = None  # a shorter form, tried before cutting


def _month_to_minute(text: str) -> str:
    # "2025-11-05 14:30:52" -> "11-05 14:30": on a terminal the year is rarely news.
    return text[5:16] if len(text) == 19 else text


def _month_to_second(text: str) -> str:
    return text[5:] if len(text) == 19 else text


def table(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int | None) -> list[str]:
    """Aligned rows under a header; with `width`, shrinkable columns are cut to fit.

    The widest shrinkable column loses a character at a time, so one long message
    does not starve every other column.
    """
    rows = [[printable(cell) for cell in row] for row in rows]

    def measure() -> list[int]:
        return [max([len(c.header), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]

    def overflow() -> int:
        return sum(widths) + len(_GAP) * (len(columns) - 1) - (width or 0)

    widths = measure()
    if width is not None and overflow() > 0:
        shorter = [c.compact or (lambda text: text) for c in columns]
        rows = [[short(x) for short, x in zip(shorter, row, strict=True)] for row in rows]
        widths = measure()
    if width is not None:
        excess = overflow()
        while excess > 0:
            candidates = [
                i
                for i, c in enumerate(columns)
                if c.min_width is not None and widths[i] > max(c.min_width, len(c.header))
            ]
            if not candidates:
                break
            widest = max(candidates, key=lambda i: widths[i])
            widths[widest] -= 1
            excess -= 1

    def render(cells: Sequence[str]) -> str:
        parts = []
        for i, (column, cell) in enumerate(zip(columns, cells, strict=True)):
            text = cut(cell, widths[i]) if width is not None else cell
            last = i == len(columns) - 1
            if column.align == ">":
                parts.append(text.rjust(widths[i]))
            else:
                parts.append(text if last else text.ljust(widths[i]))
        line = _GAP.join(parts).rstrip()
        return cut(line, width) if width is not None else line

    return [render([c.header for c in columns]), *(render(row) for row in rows)]


def _errors(counts: Any) -> int:
    if not isinstance(counts, Mapping):
        return 0
    return sum(
        n for level, n in counts.items() if level in ("ERROR", "CRITICAL") and type(n) is int
    )


def elapsed(start: Any, end: Any, now: float) -> str:
    """From `start` to `end` (to `now` while going) as `human_duration`; `-` if unknown."""
    begin = _epoch(start)
    finish = _epoch(end) if end is not None else now
    if begin is None or finish is None:
        return "-"
    return human_duration(finish - begin)


Row = Mapping[str, Any]
_Cell = Callable[[Row, float], str]


def _text(key: str) -> _Cell:
    return lambda row, now: str(row.get(key) if row.get(key) is not None else "-")


def _time(key: str) -> _Cell:
    return lambda row, now: short_time(row.get(key))


def _number(key: str) -> _Cell:
    return lambda row, now: count_text(row.get(key))


def _run_end(row: Row, now: float) -> str:
    return "running" if row.get("active") else str(row.get("end_reason") or "-")


def _session_end(row: Row, now: float) -> str:
    return str(row.get("end_reason") or ("active" if row.get("end_ts") is None else "ended"))


def _call_duration(row: Row, now: float) -> str:
    ms = row.get("duration_ms")
    if isinstance(ms, int | float) and not isinstance(ms, bool):
        return human_duration(ms / 1000)
    return elapsed(row.get("start_ts"), None, now) + "+"  # still going


def _event_message(row: Row, now: float) -> str:
    # The canonical line's last column is the message with its key=value pairs, already
    # escaped onto one line; rebuild it only if the daemon sent no raw line.
    raw = row.get("raw_line")
    if isinstance(raw, str) and raw.count("|") >= 3:
        return raw.split("|", 3)[3]
    text = str(row.get("message") or "")
    kv = row.get("kv") or {}
    pairs = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in kv.items()]
    return " ".join([text, *pairs] if text else pairs).replace("\n", "\\n")


# Ids an operator copies are never shortened; free text goes first on a narrow terminal.
_RUNS: Sequence[tuple[Column, _Cell]] = (
    (Column("RUN_ID"), _text("run_id")),
    (Column("APP", min_width=5), _text("app")),
    (Column("START", min_width=11, compact=_month_to_minute), _time("start_time")),
    (Column("DURATION", ">"), lambda r, now: elapsed(r.get("start_time"), r.get("end_time"), now)),
    (Column("RECORDS", ">"), _number("records")),
    (Column("ERRORS", ">"), lambda r, now: count_text(_errors(r.get("counts")))),
    (Column("END", min_width=7), _run_end),
)
_SESSIONS: Sequence[tuple[Column, _Cell]] = (
    (Column("SESSION_ID"), _text("session_id")),
    (Column("APP", min_width=6), _text("app")),
    (Column("FIRST", min_width=11, compact=_month_to_minute), _time("first_ts")),
    (Column("LAST", min_width=11, compact=_month_to_minute), _time("last_ts")),
    (Column("RECORDS", ">"), _number("records")),
    (Column("RUNS", ">"), lambda r, now: count_text(len(r.get("runs") or ()))),
    (Column("END", min_width=6), _session_end),
)
_CALLS: Sequence[tuple[Column, _Cell]] = (
    (Column("CALL_ID"), _text("call_id")),
    (Column("APP", min_width=6), _text("app")),
    (Column("BOT", min_width=6), _text("bot_id")),
    (Column("START", min_width=11, compact=_month_to_minute), _time("start_ts")),
    (Column("DURATION", ">"), _call_duration),
    (Column("RECORDS", ">"), _number("records")),
    (Column("ERRORS", ">"), _number("errors")),
)
_EVENTS: Sequence[tuple[Column, _Cell]] = (
    (Column("TS", compact=_month_to_second), _time("ts")),
    (Column("TYPE", min_width=8), lambda r, now: r.get("event_type") or f"({r.get('level')})"),
    (Column("SOURCE", min_width=6), _text("source")),
    (Column("MESSAGE", min_width=10), _event_message),
)


def _listing(
    spec: Sequence[tuple[Column, _Cell]], rows: Sequence[Row], now: float, width: int | None
) -> list[str]:
    cells = [[cell(row, now) for _, cell in spec] for row in rows]
    return table([column for column, _ in spec], cells, width)


def runs_table(runs: Sequence[Row], now: float, width: int | None) -> list[str]:
    """`logd-ctl runs`, in the daemon's order (newest first)."""
    return _listing(_RUNS, runs, now, width)


def sessions_table(sessions: Sequence[Row], now: float, width: int | None) -> list[str]:
    """`logd-ctl sessions`."""
    return _listing(_SESSIONS, sessions, now, width)


def calls_table(calls: Sequence[Row], now: float, width: int | None) -> list[str]:
    """`logd-ctl calls`; a call still going shows its age so far, e.g. `12s+`."""
    return _listing(_CALLS, calls, now, width)


def events_table(events: Sequence[Row], now: float, width: int | None) -> list[str]:
    """`logd-ctl events`: TS TYPE SOURCE MESSAGE, the message cut first on a terminal."""
    return _listing(_EVENTS, events, now, width)
