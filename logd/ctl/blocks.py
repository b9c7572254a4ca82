"""What `logd-ctl` prints for one result: the status block, a run's metadata, a cleanup.

Pure: results in, lines out. No I/O, no clock (`now` is an argument); cells and tables
come from `format`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from logd.ctl.format import (
    ELLIPSIS,
    Column,
    count_text,
    cut,
    elapsed,
    human_bytes,
    human_duration,
    printable,
    short_time,
    sparkline,
    table,
)

__all__ = ["STATUS_WIDTH", "cleanup_lines", "reload_line", "run_block", "status_block"]

STATUS_WIDTH = 80
MAX_CLIENT_LINES = 10
SPARK_WIDTH = 30
_LABEL = 12  # status labels are right-aligned to this width, like `systemctl status`


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
        lines.append(f"{indent}{ELLIPSIS} and {len(clients) - MAX_CLIENT_LINES} more")
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
            f"{indent}buffered {count_text(out.get('buffered_records'))}"
            f" ({human_bytes(size) if isinstance(size, int) else '-'})"
        )
        dropped = out.get("dropped") or {}
        total = sum(n for n in dropped.values() if isinstance(n, int))
        if total:
            buffered += f" · dropped {total:,} ({', '.join(sorted(dropped))})"
        lines.append(buffered)
        lines.append(
            f"{indent}sent {count_text(out.get('sent'))} · acked {count_text(out.get('acked'))}"
            f" · retried {count_text(out.get('retried'))}"
        )
        error = out.get("last_error")
        if error:
            text = f"{short_time(out.get('last_error_time'))} {printable(str(error))}"
            wrap = STATUS_WIDTH - len(indent)
            wrapped = textwrap.wrap(text, wrap, max_lines=2, placeholder=" " + ELLIPSIS)
            lines += [indent + line for line in wrapped]
    return lines


def _joined(values: Mapping[str, Any], names: str) -> str:
    """`in 12 · written 12` from `values` and `"in=records_in written=records_written"`."""
    pairs = (part.split("=") for part in names.split())
    return " · ".join(
        f"{label.replace('_', ' ')} {count_text(values.get(key))}" for label, key in pairs
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
        # Only when `[events] off` switched some off: most daemons have none.
        *(
            [_field("Events off", count_text(totals["events_off"]))]
            if totals.get("events_off")
            else []
        ),
        _field("Rate", f"{rate_text:<9} {spark} last minute"),
        _field("Open files", count_text(status.get("open_files"))),
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
        wrapped = textwrap.wrap(str(last_error), wrap, max_lines=3, placeholder=" " + ELLIPSIS)
        lines += _more("Last error", wrapped or [""])
    else:
        lines.append(_field("Last error", "none"))
    lines.append(_field("Last cleanup", _cleanup_summary(status.get("last_cleanup"))))
    return [cut(line, width) for line in lines]


def _cleanup_summary(last: Any) -> str:
    if not isinstance(last, Mapping):
        return "never"
    deleted = last.get("deleted")
    count = len(deleted) if isinstance(deleted, list) else deleted
    freed = last.get("freed_bytes")
    size = human_bytes(freed) if isinstance(freed, int) else "-"
    if last.get("dry_run"):
        return f"{short_time(last.get('time'))}, dry run: would delete {count_text(count)}"
    return f"{short_time(last.get('time'))}, deleted {count_text(count)}, freed {size}"


def run_block(run: Mapping[str, Any], now: float) -> list[str]:
    """`logd-ctl run ID`: the metadata an operator reads first; `--json` has all of it."""
    end = run.get("end_time")
    if end is None and run.get("active", True):
        ended = f"running for {elapsed(run.get('start_time'), None, now)}"
    else:
        reason = run.get("end_reason") or "?"
        after = elapsed(run.get("start_time"), end, now)
        ended = f"{short_time(end)} ({reason}), after {after}"
    counts = run.get("counts") or {}
    by_level = " · ".join(f"{level} {count_text(n)}" for level, n in counts.items())
    records = count_text(run.get("records")) + (f" ({by_level})" if by_level else "")
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
    if run.get("container_id"):
        # A container's run (Docker's fluentd driver): name, short id, image.
        image = f", image {run['image']}" if run.get("image") else ""
        container = f"{run.get('container_name') or '?'} ({str(run['container_id'])[:12]}{image})"
        pairs.insert(1, ("Container", container))
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


def reload_line(result: Mapping[str, Any]) -> str:
    """`logd-ctl reload`: done, naming every changed setting that waits for a restart."""
    pending = [printable(str(key)) for key in result.get("restart_needed") or ()]
    if not pending:
        return "Configuration reloaded."
    return f"Configuration reloaded; these changes need a restart: {', '.join(pending)}."
