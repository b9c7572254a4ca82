"""Read the log tree back into registry rows and event rows, for an index rebuild.

Runs from ``metadata.json``, sessions from their JSON lines, calls from their logs and
their ``call:start``/``call:end`` events (``eventscan`` indexes ``events.log`` and its
archives and notes those on the way).
Reads only: never changes the tree, never follows a symlink, never fails on what it
finds (bad files and lines are counted in a :class:`Tally`). The careful file reading
is ``tree_files``; this module knows what the files mean.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from logd.index.errorscan import EventKeys, error_rows
from logd.index.events import EventIndex, EventRow
from logd.index.eventscan import EVENT_BATCH, CallSeen, index_events, str_or_none
from logd.index.names import safe_name
from logd.index.tables import CallRow, SessionRow, iso_to_ns
from logd.index.tree_files import file_groups, list_entries, mtime_ns, read_lines

__all__ = ["Tally", "app_dirs", "decode_name", "read_app"]

MAX_PROBLEMS = 100
_RUN_REASONS = frozenset({"shutdown", "disconnected", "lost"})
_ERROR_LEVELS = frozenset({"ERROR", "CRITICAL", "FATAL"})
_SESSION_FILE_RE = re.compile(r"session_(.+?)\.jsonl(?:\.([0-9]+))?(?:\.gz)?")
_CALL_FILE_RE = re.compile(r"call_(.+?)\.log(?:\.([0-9]+))?(?:\.gz)?")
# The call-log line of SPEC §4: `{time} - tid: {thread} - {level} - {msg}`. Traceback and
# multi-line message continuations do not match, so matches count records.
_CALL_LINE_RE = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}),([0-9]{3}) - tid: \S* - (\S+) - "
)


@dataclass(slots=True)
class Tally:
    """What a read found: row and line counts, and the files it could not use."""

    runs: int = 0
    sessions: int = 0
    calls: int = 0
    events: int = 0
    error_records: int = 0  # ERROR-and-above records found again in the text logs
    bad_lines: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, where: Path | str, why: object) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"{where}: {why}")


def decode_name(name: str, known: Mapping[str, str] | None = None) -> str:
    """The id a file name stands for: the inverse of ``names.safe_name`` where it has one.

    ``known`` maps names to ids seen inside the files, which also recovers ids whose
    names were cut and hashed (``~<hash>``); otherwise such a name is kept as the id.
    """
    if known is not None and name in known:
        return known[name]
    if "~" in name or "%" not in name:
        return name
    return "" if name == "%" else unquote(name)


def _ns_or_none(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return iso_to_ns(value)
    except ValueError:
        return None


def app_dirs(root: Path) -> list[Path]:
    """Folders of the root that look like an app: it has runs, sessions, calls or events."""
    apps = []
    for path in list_entries(root):
        if path.name.startswith(".") or path.name == "_rejected" or not path.is_dir():
            continue
        if any((path / n).is_dir() for n in ("runs", "sessions", "calls")) or any(
            path.glob("events.log*")
        ):
            apps.append(path)
    return apps


# --- runs --------------------------------------------------------------------------


# Metadata keys, the type the store needs, and what stands in for a value of another type.
_RUN_FIELDS: dict[str, tuple[type, Any]] = {
    "pids": (list, []),
    "host": (str, None),
    "argv": (list, None),
    "client_version": (str, None),
    "records": (int, 0),
    "counts": (dict, {}),
    "bytes": (int, 0),
    "files": (list, []),
    "dropped_by_client": (int, 0),
    "peers": (list, []),
}


def _clean_run(meta: Any, app: str, folder: str, path: str) -> dict[str, Any] | None:
    """A metadata dict with every value of the type the store expects, or None if unusable."""
    if not isinstance(meta, dict) or _ns_or_none(meta.get("start_time")) is None:
        return None
    run_id = meta.get("run_id")
    if not isinstance(run_id, str) or safe_name(run_id) != folder:
        run_id = decode_name(folder)
    end_time = meta.get("end_time")
    reason = meta.get("end_reason")
    run = dict(meta)  # keys this version does not know (e.g. newer ones) are kept as is
    run.update(
        (key, meta[key] if isinstance(meta.get(key), kind) else default)
        for key, (kind, default) in _RUN_FIELDS.items()
    )
    run.update(
        run_id=run_id,
        app=app,
        path=path,
        start_time=meta["start_time"],
        end_time=end_time if _ns_or_none(end_time) is not None else None,
        end_reason=reason if reason in _RUN_REASONS else None,
        opened_by="daemon" if meta.get("opened_by") == "daemon" else "client",
    )
    return run


def _scan_runs(root: Path, app_dir: Path, tally: Tally) -> tuple[list[Any], str]:
    """Run metadata dicts (app not yet set) and the app id their metadata gives."""
    found: list[tuple[Path, Any]] = []
    app = decode_name(app_dir.name)
    for run_dir in list_entries(app_dir / "runs"):
        if not run_dir.is_dir():
            continue  # `current.txt`; `current` itself is a symlink and skipped already
        try:
            meta = json.loads((run_dir / "metadata.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            tally.problem(run_dir / "metadata.json", exc)
            continue
        found.append((run_dir, meta))
        named = meta.get("app") if isinstance(meta, dict) else None
        if isinstance(named, str) and safe_name(named) == app_dir.name:
            app = named
    runs = []
    for run_dir, meta in found:
        rel = run_dir.relative_to(root).as_posix()
        run = _clean_run(meta, app, run_dir.name, rel)
        if run is None:
            tally.problem(run_dir / "metadata.json", "no usable start_time")
        else:
            runs.append(run)
    return runs, app


# --- sessions and calls ------------------------------------------------------------


def _scan_sessions(
    root: Path, app: str, app_dir: Path, calls: dict[str, CallSeen], tally: Tally
) -> list[SessionRow]:
    """Session rows from their JSON lines; also notes each call's run, session and bot."""
    rows = []
    for name, files in file_groups(app_dir / "sessions", _SESSION_FILE_RE).items():
        session_id = decode_name(name)
        runs: list[str] = []
        first_ns = last_ns = end_ns = None
        records = 0
        for path in files:
            for line in read_lines(path, tally.problem):
                records += 1
                try:
                    obj = json.loads(line)
                except ValueError:
                    tally.bad_lines += 1
                    continue
                if not isinstance(obj, dict):
                    continue
                sid, run_id = obj.get("session_id"), str_or_none(obj.get("run_id"))
                if isinstance(sid, str) and safe_name(sid) == name:
                    session_id = sid
                if run_id is not None and run_id not in runs:
                    runs.append(run_id)
                when = _ns_or_none(obj.get("time"))
                if when is not None:
                    first_ns = when if first_ns is None else first_ns
                    last_ns = when
                    # Ended only if `session:end` is its last record: a later one reopened it.
                    end_ns = when if obj.get("event_type") == "session:end" else None
                call_id = str_or_none(obj.get("call_id"))
                if call_id is not None:
                    seen = calls.setdefault(call_id, CallSeen())
                    seen.run_id = run_id or seen.run_id
                    seen.session_id = seen.session_id or str_or_none(sid)
                    seen.bot_id = str_or_none(obj.get("bot_id")) or seen.bot_id
        fallback_ns = mtime_ns(files[-1])
        rows.append(
            SessionRow(
                app=app,
                session_id=session_id,
                runs=runs,
                first_ns=first_ns if first_ns is not None else fallback_ns,
                last_ns=last_ns if last_ns is not None else fallback_ns,
                end_ns=end_ns,
                end_reason="ended" if end_ns is not None else None,
                records=records,
                path=f"{app_dir.relative_to(root).as_posix()}/sessions/session_{name}.jsonl",
            )
        )
    return rows


def _clock_ns(text: str, millis: str, utc: bool) -> int | None:
    """ns of a text-log time (`2025-11-05 14:30:52`), local or UTC as the layout wrote it."""
    try:
        moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    moment = moment.replace(tzinfo=UTC) if utc else moment.astimezone()
    return int(moment.timestamp()) * 1_000_000_000 + int(millis) * 1_000_000


def _scan_calls(
    root: Path, app: str, app_dir: Path, calls: dict[str, CallSeen], utc: bool, tally: Tally
) -> list[CallRow]:
    """Call rows from `calls/<day>/bot_<bot>/call_<id>.log`, timed by their events."""
    known_calls = {safe_name(call_id): call_id for call_id in calls}
    rows = []
    for day_dir in list_entries(app_dir / "calls"):
        for bot_dir in list_entries(day_dir):
            if not bot_dir.name.startswith("bot_") or not bot_dir.is_dir():
                continue
            bot_name = bot_dir.name[4:]
            for name, files in file_groups(bot_dir, _CALL_FILE_RE).items():
                call_id = decode_name(name, known_calls)
                seen = calls.get(call_id, CallSeen())
                records = errors = 0
                first_ns = None
                for path in files:
                    for line in read_lines(path, tally.problem):
                        match = _CALL_LINE_RE.match(line)
                        if match is None:
                            continue
                        records += 1
                        errors += match[3] in _ERROR_LEVELS
                        if first_ns is None:
                            first_ns = _clock_ns(match[1], match[2], utc)
                start_ns = seen.start_ns or first_ns or mtime_ns(files[0])
                end_ns = (
                    seen.end_ns if seen.end_ns is not None and seen.end_ns >= start_ns else None
                )
                duration = seen.duration_ms
                if end_ns is not None and duration is None:
                    duration = (end_ns - start_ns) / 1e6
                bot = seen.bot_id if seen.bot_id and safe_name(seen.bot_id) == bot_name else None
                rows.append(
                    CallRow(
                        app=app,
                        call_id=call_id,
                        bot_id=bot or decode_name(bot_name),
                        day=day_dir.name,
                        path=f"{bot_dir.relative_to(root).as_posix()}/call_{name}.log",
                        start_ns=start_ns,
                        end_ns=end_ns,
                        duration_ms=duration if end_ns is not None else None,
                        records=records,
                        errors=errors,
                        run_id=seen.run_id,
                        session_id=seen.session_id,
                    )
                )
    return rows


def read_app(
    root: Path, app_dir: Path, index: EventIndex, *, utc: bool, tally: Tally
) -> tuple[list[dict[str, Any]], list[SessionRow], list[CallRow]]:
    """One app folder's runs, sessions and calls; its events go into ``index`` as read.

    Args:
        utc: whether text-log times are UTC (``[layout] utc``); only used to date a
            call that has no ``call:start`` event.
    """
    runs, app = _scan_runs(root, app_dir, tally)
    keys: EventKeys = set()
    scan = index_events(app, app_dir, index, tally.problem, keys)
    tally.events += scan.events
    tally.bad_lines += scan.bad_lines
    calls = scan.calls
    sessions = _scan_sessions(root, app, app_dir, calls, tally)
    call_rows = _scan_calls(root, app, app_dir, calls, utc, tally)
    batch: list[EventRow] = []
    for row in error_rows(root, app, runs, call_rows, keys, tally.problem, utc=utc):
        batch.append(row)
        if len(batch) >= EVENT_BATCH:
            tally.error_records += index.insert_taken(batch)
            batch = []
    if batch:
        tally.error_records += index.insert_taken(batch)
    return runs, sessions, call_rows
