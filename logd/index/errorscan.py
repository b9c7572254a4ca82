"""Find the ERROR-and-above records of an app's text logs again, for a rebuilt index.

The writer indexes such records as they arrive (#16 item 11), but they live only in run
logs and call files, not in `events.log`: a rebuild reads them back from there. A
record with a traceback is already an `error:runtime` event, and a line whose first
word is an event indexed at that moment is that event; neither is indexed twice.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from logd.index.eventline import EventRow, split_message
from logd.index.levels import ERROR_LEVELNO, LEVELS
from logd.index.textlines import CALL_HEAD_RE, RUN_HEAD_RE, TRACEBACK, iso_from_clock
from logd.index.tree_files import Problem, file_groups, read_lines

__all__ = ["EventKeys", "error_rows"]

# (ts, first word of the message): the events already indexed, to tell them apart.
EventKeys = set[tuple[str, str]]

_MAIN_RE = re.compile(r"(main\.log)(?:\.(\d+))?(?:\.gz)?")
_NUMBERED_RE = re.compile(r"Level (-?\d+)")
_NO_SESSION = "in-progress"


def _levelno(name: str) -> int:
    numbered = _NUMBERED_RE.fullmatch(name)
    return int(numbered[1]) if numbered else LEVELS.get(name, 20)


def _records(lines: Iterator[str], head: re.Pattern[str]) -> Iterator[tuple[re.Match[str], bool]]:
    """Each head line at ERROR or above, and whether a traceback follows it."""
    pending: re.Match[str] | None = None
    traceback = False
    for line in lines:
        match = head.fullmatch(line)
        if match is None:
            traceback = traceback or line.startswith(TRACEBACK)
            continue
        if pending is not None:
            yield pending, traceback
        pending = match if _levelno(match["level"]) >= ERROR_LEVELNO else None
        traceback = False
    if pending is not None:
        yield pending, traceback


def _row(
    match: re.Match[str], line: str, *, app: str, utc: bool, **ids: Any
) -> tuple[str, EventRow] | None:
    try:
        ts = iso_from_clock(match["time"], utc)
    except ValueError:
        return None
    logger = match.groupdict().get("logger")
    message, extras = match["body"], dict[str, Any]()
    if "=" in message:
        # A message with an "=" of its own and no extra fields does not split: kept whole.
        with contextlib.suppress(ValueError):
            message, extras = split_message(message)
    return ts, EventRow(
        ts=ts,
        event_type="",
        source=logger or "",
        message=message,
        app=app,
        run_id=ids.get("run_id"),
        session_id=ids.get("session_id"),
        call_id=ids.get("call_id"),
        kv_json=json.dumps(extras, ensure_ascii=False, separators=(",", ":")) if extras else None,
        raw_line=line,
        levelno=_levelno(match["level"]),
    )


def _scan(
    files: Sequence[Path],
    head: re.Pattern[str],
    events: EventKeys,
    problem: Problem,
    *,
    app: str,
    utc: bool,
    **ids: Any,
) -> Iterator[EventRow]:
    for path in files:
        for match, traceback in _records(read_lines(path, problem), head):
            if traceback:
                continue  # an error:runtime event, indexed from events.log
            session = match.groupdict().get("session")
            if session is not None:
                ids["session_id"] = None if session == _NO_SESSION else session
            found = _row(match, match.group(0), app=app, utc=utc, **ids)
            if found is None:
                continue
            ts, row = found
            if (ts, match["body"].split(" ", 1)[0]) in events:
                continue  # an event logged at ERROR: its own row is there
            yield row


def error_rows(
    root: Path,
    app: str,
    runs: Sequence[dict[str, Any]],
    calls: Sequence[Any],
    events: EventKeys,
    problem: Problem,
    *,
    utc: bool,
) -> Iterator[EventRow]:
    """The rows of every ERROR-or-above record in the app's run logs (all parts) and
    call files that is not an event."""
    for run in runs:
        folder = root / str(run["path"])
        for files in file_groups(folder, _MAIN_RE).values():
            yield from _scan(
                files, RUN_HEAD_RE, events, problem, app=app, utc=utc, run_id=run["run_id"]
            )
    for call in calls:
        path = root / call.path
        folder, name = path.parent, path.name
        pattern = re.compile(f"({re.escape(name)})(?:\\.(\\d+))?(?:\\.gz)?")
        for files in file_groups(folder, pattern).values():
            yield from _scan(
                files,
                CALL_HEAD_RE,
                events,
                problem,
                app=app,
                utc=utc,
                run_id=call.run_id,
                session_id=call.session_id,
                call_id=call.call_id,
            )
