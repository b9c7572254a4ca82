"""What `logd-ctl` prints: the status block, listings as tables, run-log lines in colour.

Pure: results in, lines out. No I/O, no clock (`now` is an argument), no terminal
queries; the caller decides the width and whether colour is on.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

__all__ = [
    "Column",
    "calls_table",
    "cleanup_lines",
    "colour_line",
    "events_table",
    "human_bytes",
    "human_duration",
    "printable",
    "run_block",
    "runs_table",
    "sessions_table",
    "short_time",
    "sparkline",
    "status_block",
    "table",
]

STATUS_WIDTH = 80
MAX_CLIENT_LINES = 10
SPARK_WIDTH = 30
_BARS = "▁▂▃▄▅▆▇█"
_ELLIPSIS = "…"
_GAP = "  "
_LABEL = 12  # status labels are right-aligned to this width, like `systemctl status`
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


def _count(value: Any) -> str:
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


def _cut(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + _ELLIPSIS if width > 0 else ""


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
            text = _cut(cell, widths[i]) if width is not None else cell
            last = i == len(columns) - 1
            if column.align == ">":
                parts.append(text.rjust(widths[i]))
            else:
                parts.append(text if last else text.ljust(widths[i]))
        line = _GAP.join(parts).rstrip()
        return _cut(line, width) if width is not None else line

    return [render([c.header for c in columns]), *(render(row) for row in rows)]


def _errors(counts: Any) -> int:
    if not isinstance(counts, Mapping):
        return 0
    return sum(
        n for level, n in counts.items() if level in ("ERROR", "CRITICAL") and type(n) is int
    )


def _elapsed(start: Any, end: Any, now: float) -> str:
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
    return lambda row, now: _count(row.get(key))


def _run_end(row: Row, now: float) -> str:
    return "running" if row.get("active") else str(row.get("end_reason") or "-")


def _session_end(row: Row, now: float) -> str:
    return str(row.get("end_reason") or ("active" if row.get("end_ts") is None else "ended"))


def _call_duration(row: Row, now: float) -> str:
    ms = row.get("duration_ms")
    if isinstance(ms, int | float) and not isinstance(ms, bool):
        return human_duration(ms / 1000)
    return _elapsed(row.get("start_ts"), None, now) + "+"  # still going


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
    (Column("DURATION", ">"), lambda r, now: _elapsed(r.get("start_time"), r.get("end_time"), now)),
    (Column("RECORDS", ">"), _number("records")),
    (Column("ERRORS", ">"), lambda r, now: _count(_errors(r.get("counts")))),
    (Column("END", min_width=7), _run_end),
)
_SESSIONS: Sequence[tuple[Column, _Cell]] = (
    (Column("SESSION_ID"), _text("session_id")),
    (Column("APP", min_width=6), _text("app")),
    (Column("FIRST", min_width=11, compact=_month_to_minute), _time("first_ts")),
    (Column("LAST", min_width=11, compact=_month_to_minute), _time("last_ts")),
    (Column("RECORDS", ">"), _number("records")),
    (Column("RUNS", ">"), lambda r, now: _count(len(r.get("runs") or ()))),
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
    (Column("TYPE", min_width=8), _text("event_type")),
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


# --- blocks -------------------------------------------------------------------------------------


def _field(label: str, value: str) -> str:
    return f"{label:>{_LABEL}}: {value}"


def _more(label: str, values: Sequence[str]) -> list[str]:
    if not values:
        return [_field(label, "none")]
    indent = " " * (_LABEL + 2)
    return [_field(label, values[0]), *(indent + v for v in values[1:])]


def _clients(clients: Sequence[Mapping[str, Any]]) -> list[str]:
    if not clients:
        return [_field("Clients", "none")]
    indent = " " * (_LABEL + 2)
    columns = [Column("PID", ">"), Column("UID", ">"), Column("APP", min_width=6)]
    columns.append(Column("RUN", min_width=8))
    rows = []
    for c in clients[:MAX_CLIENT_LINES]:
        pid = c.get("pid")
        who = str(pid) if pid is not None else str(c.get("address") or c.get("transport", "?"))
        uid = c.get("uid")
        rows.append(
            [
                who,
                str(uid) if uid is not None else "-",
                ",".join(map(str, c.get("apps") or ())) or "-",
                ",".join(map(str, c.get("runs") or ())) or "-",
            ]
        )
    lines = [_field("Clients", f"{len(clients)} connected")]
    lines += [indent + line for line in table(columns, rows, STATUS_WIDTH - len(indent))]
    if len(clients) > MAX_CLIENT_LINES:
        lines.append(f"{indent}{_ELLIPSIS} and {len(clients) - MAX_CLIENT_LINES} more")
    return lines


def _outputs(outputs: Sequence[Mapping[str, Any]]) -> list[str]:
    """`[[forward]]` outputs: where and whether connected, the buffer, the counters, and
    the last error if any."""
    indent = " " * (_LABEL + 2)
    lines: list[str] = []
    for index, out in enumerate(outputs):
        state = "connected" if out.get("connected") else "not connected"
        head = f"{out.get('name', '?')} {out.get('type', '?')} {out.get('target', '?')} {state}"
        lines.append(_field("Outputs", head) if index == 0 else indent + head)
        size = out.get("buffered_bytes")
        buffered = (
            f"{indent}buffered {_count(out.get('buffered_records'))}"
            f" ({human_bytes(size) if isinstance(size, int) else '-'})"
        )
        dropped = out.get("dropped") or {}
        total = sum(n for n in dropped.values() if isinstance(n, int))
        if total:
            buffered += f" · dropped {total:,} ({', '.join(sorted(dropped))})"
        lines.append(buffered)
        lines.append(
            f"{indent}sent {_count(out.get('sent'))} · acked {_count(out.get('acked'))}"
            f" · retried {_count(out.get('retried'))}"
        )
        error = out.get("last_error")
        if error:
            text = f"{short_time(out.get('last_error_time'))} {printable(str(error))}"
            wrap = STATUS_WIDTH - len(indent)
            wrapped = textwrap.wrap(text, wrap, max_lines=2, placeholder=" " + _ELLIPSIS)
            lines += [indent + line for line in wrapped]
    return lines


def _joined(values: Mapping[str, Any], names: str) -> str:
    """`in 12 · written 12` from `values` and `"in=records_in written=records_written"`."""
    pairs = (part.split("=") for part in names.split())
    return " · ".join(
        f"{label.replace('_', ' ')} {_count(values.get(key))}" for label, key in pairs
    )


def status_block(status: Mapping[str, Any], width: int = STATUS_WIDTH) -> list[str]:
    """`logd-ctl status`: a `systemctl status`-like block, every line at most `width`."""
    totals = status.get("totals") or {}
    rate = status.get("rate_1m")
    rate_text = f"{rate:.1f}/s" if isinstance(rate, int | float) else "-"
    spark = sparkline(status.get("rate_series") or [], SPARK_WIDTH)
    uptime = status.get("uptime_s")
    up = human_duration(uptime) if isinstance(uptime, int | float) else "-"
    disk = status.get("disk_bytes")
    lines = [
        f"● logd {status.get('version', '?')} - running, pid {status.get('pid', '?')}, up {up}",
        *_more("Listeners", [str(x) for x in status.get("listeners") or ()]),
        _field("Root", str(status.get("root", "-"))),
        *_clients(status.get("clients") or []),
        _field(
            "Records",
            _joined(totals, "in=records_in written=records_written events=events_indexed"),
        ),
        _field("Refused", _joined(totals, "rejected=rejected duplicates=duplicates")),
        _field("Dropped", _joined(totals, "by_clients=dropped_by_clients")),
        _field("Rate", f"{rate_text:<9} {spark} last minute"),
        _field("Open files", _count(status.get("open_files"))),
        _field(
            "Active", _joined(status.get("active") or {}, "runs=runs sessions=sessions calls=calls")
        ),
        _field("Disk", human_bytes(disk) if isinstance(disk, int) else "-"),
        *_outputs(status.get("outputs") or []),
    ]
    errors = status.get("errors") or {}
    if errors:
        counted = sorted(errors.items(), key=lambda kv: (-int(kv[1]), kv[0]))
        lines.append(_field("Errors", ", ".join(f"{code} {n}" for code, n in counted)))
    last_error = status.get("last_error")
    if last_error:
        wrap = width - _LABEL - 2
        wrapped = textwrap.wrap(str(last_error), wrap, max_lines=3, placeholder=" " + _ELLIPSIS)
        lines += _more("Last error", wrapped or [""])
    else:
        lines.append(_field("Last error", "none"))
    lines.append(_field("Last cleanup", _cleanup_summary(status.get("last_cleanup"))))
    return [_cut(line, width) for line in lines]


def _cleanup_summary(last: Any) -> str:
    if not isinstance(last, Mapping):
        return "never"
    deleted = last.get("deleted")
    count = len(deleted) if isinstance(deleted, list) else deleted
    freed = last.get("freed_bytes")
    size = human_bytes(freed) if isinstance(freed, int) else "-"
    if last.get("dry_run"):
        return f"{short_time(last.get('time'))}, dry run: would delete {_count(count)}"
    return f"{short_time(last.get('time'))}, deleted {_count(count)}, freed {size}"


def run_block(run: Mapping[str, Any], now: float) -> list[str]:
    """`logd-ctl run ID`: the metadata an operator reads first; `--json` has all of it."""
    end = run.get("end_time")
    if end is None and run.get("active", True):
        ended = f"running for {_elapsed(run.get('start_time'), None, now)}"
    else:
        reason = run.get("end_reason") or "?"
        after = _elapsed(run.get("start_time"), end, now)
        ended = f"{short_time(end)} ({reason}), after {after}"
    counts = run.get("counts") or {}
    by_level = " · ".join(f"{level} {_count(n)}" for level, n in counts.items())
    records = _count(run.get("records")) + (f" ({by_level})" if by_level else "")
    size = run.get("bytes")
    argv = run.get("argv")
    pairs: list[tuple[str, str]] = [
        ("Run", f"{run.get('run_id', '?')} ({run.get('app', '?')})"),
        ("Start", short_time(run.get("start_time"))),
        ("End", ended),
        ("Host", str(run.get("host") or "-")),
        ("PIDs", ", ".join(map(str, run.get("pids") or ())) or "-"),
        ("Argv", " ".join(map(str, argv)) if isinstance(argv, list) else "-"),
        ("Records", records),
        ("Size", human_bytes(size) if isinstance(size, int) else "-"),
        ("Files", ", ".join(map(str, run.get("files") or ())) or "-"),
        ("Path", str(run.get("path") or "-")),
    ]
    return [_field(label, value) for label, value in pairs]


def cleanup_lines(result: Mapping[str, Any]) -> list[str]:
    """`logd-ctl cleanup`: what went (or would go), then the size freed."""
    dry = bool(result.get("dry_run"))
    deleted = [str(p) for p in result.get("deleted") or ()]
    freed = result.get("freed_bytes")
    size = human_bytes(freed) if isinstance(freed, int) else "-"
    verb = "would delete" if dry else "deleted"
    lines = [f"  {path}" for path in deleted]
    noun = "path" if len(deleted) == 1 else "paths"
    summary = f"{verb.capitalize()} {len(deleted)} {noun}, " + (
        f"would free {size}" if dry else f"freed {size}"
    )
    return [f"{summary}{':' if deleted else '.'}", *lines]
