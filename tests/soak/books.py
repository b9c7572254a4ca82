"""The campaign's verdict: every acknowledged record on disk, and the books agreeing with it.

Compares four witnesses of one history: the producers' acks files, the files in the tree
(`scan`), the registry in `index.sqlite3` with each run's `metadata.json`, and what
`logd-ctl --json runs` / `sessions` answered. Each book check has a stable name, so a test
can name the ones known to fail (see tests/e2e/test_campaign.py).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.soak.scan import (
    APP,
    Producer,
    RunFiles,
    SessionFiles,
    ms_of,
    read_tree,
    temp_files,
)

RUN_ROWS = "run rows"
RUN_RECORDS = "run records"
RUN_END_REASONS = "run end reasons"
RUNS_LEFT_ACTIVE = "runs left active"
RUN_TIMES = "run times"
RUN_PIDS = "run pids"
SESSION_ROWS = "session rows"
SESSION_RECORDS = "session records"
SESSION_RUNS = "session runs"
SESSION_TIMES = "session times"
SESSION_END_REASONS = "session end reasons"
CTL_AGREES = "logd-ctl agrees with the index"
WHOLE_LINES = "whole lines"
TEMP_FILES = "no temp files left"
ROTATION_SIZE = "rotation size"
BOOK_CHECKS = (
    RUN_ROWS,
    RUN_RECORDS,
    RUN_END_REASONS,
    RUNS_LEFT_ACTIVE,
    RUN_TIMES,
    RUN_PIDS,
    SESSION_ROWS,
    SESSION_RECORDS,
    SESSION_RUNS,
    SESSION_TIMES,
    SESSION_END_REASONS,
    CTL_AGREES,
    WHOLE_LINES,
    TEMP_FILES,
    ROTATION_SIZE,
)
# How many mismatches of one check are quoted in the report (all are counted).
_QUOTE = 5


@dataclass
class Verdict:
    """Counts and mismatches; `mismatches[check]` lists what disagreed, one line each."""

    acknowledged: int = 0
    lost: int = 0
    lost_examples: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)
    dropped_by_clients: int = 0
    mismatches: dict[str, list[str]] = field(default_factory=lambda: {c: [] for c in BOOK_CHECKS})

    def note(self, check: str, text: str) -> None:
        self.mismatches[check].append(text)

    def failed(self, checks: Iterable[str] = BOOK_CHECKS) -> list[str]:
        """The named checks that found a mismatch."""
        return [c for c in checks if self.mismatches[c]]

    @property
    def book_mismatches(self) -> int:
        return sum(len(found) for found in self.mismatches.values())


@dataclass
class CtlView:
    """What `logd-ctl --json runs` / `sessions` answered, and the registry rows read from
    `index.sqlite3` right after, while the same daemon ran (the final stop may still write)."""

    runs: list[dict[str, Any]]
    sessions: list[dict[str, Any]]
    index_runs: dict[str, dict[str, Any]]
    index_sessions: dict[str, dict[str, Any]]


def judge(
    root: Path,
    producers: list[Producer],
    ctl: CtlView,
    *,
    daemon_downs: list[tuple[float, float]],
    rotate_at_bytes: int,
) -> Verdict:
    """Scan the tree under `root` (the daemon stopped) and run every check.

    Args:
        daemon_downs: (signal sent, process gone), wall-clock seconds, of every time the
            daemon went down: a run may rightly end `lost` when that caught it between
            its app:shutdown and the close of its connection.
    """
    problems: list[str] = []
    run_files, session_files = read_tree(root, problems)
    runs = {r.run_id: r for r in run_files}
    sessions = {s.session_id: s for s in session_files}
    run_rows, session_rows = read_registry(root)
    _name_runs(producers, run_rows)
    verdict = Verdict()
    check_delivery(verdict, producers, runs, sessions)
    check_runs(verdict, producers, runs, run_rows, daemon_downs)
    check_sessions(verdict, sessions, session_rows)
    check_ctl(verdict, ctl)
    check_files(verdict, runs, sessions, problems, temp_files(root), rotate_at_bytes)
    return verdict


def _name_runs(producers: list[Producer], rows: dict[str, dict[str, Any]]) -> None:
    # A producer killed between install() and writing its acks file's first line has a run
    # all the same: its app:start names the producer in argv.
    by_name = {p.name: p for p in producers if p.run_id is None}
    for run_id, row in rows.items():
        argv = row.get("argv") or []
        if "--name" in argv[:-1]:
            producer = by_name.get(argv[argv.index("--name") + 1])
            if producer is not None:
                producer.run_id = run_id


def read_registry(root: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The app's run and session rows in `index.sqlite3`; read-only, so also while the
    daemon runs (WAL)."""
    db = sqlite3.connect(f"file:{root / 'index.sqlite3'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        runs = {
            r["run_id"]: dict(r) for r in db.execute("SELECT * FROM runs WHERE app = ?", (APP,))
        }
        sessions = {
            r["session_id"]: dict(r)
            for r in db.execute("SELECT * FROM sessions WHERE app = ?", (APP,))
        }
    finally:
        db.close()
    for row in runs.values():
        row["pids"] = json.loads(row.pop("pids_json"))
        row["counts"] = json.loads(row.pop("counts_json"))
        row["argv"] = json.loads(row.pop("argv_json") or "null")
    for row in sessions.values():
        row["runs"] = json.loads(row.pop("runs_json"))
    return runs, sessions


def check_delivery(
    verdict: Verdict,
    producers: list[Producer],
    runs: dict[str, RunFiles],
    sessions: dict[str, SessionFiles],
) -> None:
    """Every acknowledged record in its run's main log, component log and session file."""
    for producer in producers:
        verdict.acknowledged += producer.acked
        verdict.dropped_by_clients += producer.dropped
        if not producer.acked:
            continue
        run = runs.get(producer.run_id or "")
        if run is None:
            verdict.lost += producer.acked
            if len(verdict.lost_examples) < _QUOTE:
                verdict.lost_examples.append(f"{producer.name}: run {producer.run_id} not on disk")
            continue
        main = run.ids.get("main.log", Counter[int]())
        component = run.ids.get(f"{APP}.{producer.name.split('.')[0]}.log", Counter[int]())
        for seq in range(producer.acked):
            missing = [
                name for name, ids in (("main", main), ("component", component)) if not ids.get(seq)
            ]
            session_id = run.sessions.get(seq)
            if session_id is not None:
                session = sessions.get(session_id)
                if session is None or not session.ids.get((producer.name, seq)):
                    missing.append(f"session {session_id}")
            if missing:
                verdict.lost += 1
                if len(verdict.lost_examples) < _QUOTE:
                    verdict.lost_examples.append(
                        f"id={producer.name}.{seq} not in {', '.join(missing)}"
                    )
    for run in runs.values():
        for base, ids in run.ids.items():
            kind = "main" if base == "main.log" else "component"
            extra = sum(count - 1 for count in ids.values() if count > 1)
            verdict.duplicated[kind] = verdict.duplicated.get(kind, 0) + extra
    extra = sum(c - 1 for s in sessions.values() for c in s.ids.values() if c > 1)
    verdict.duplicated["session"] = verdict.duplicated.get("session", 0) + extra


def check_runs(
    verdict: Verdict,
    producers: list[Producer],
    runs: dict[str, RunFiles],
    rows: dict[str, dict[str, Any]],
    daemon_downs: list[tuple[float, float]],
) -> None:
    """Registry rows and `metadata.json` against the run folders and the producers' fates.

    A producer SIGKILLed leaves its run `disconnected` (or `lost`, when no daemon saw it go);
    one that exited leaves `shutdown`, or `lost` when the daemon went down after its
    app:shutdown and before its connection closed (SPEC §5: a run open when the daemon
    stops becomes `lost` at the next start if its processes are gone).
    """
    by_run = {p.run_id: p for p in producers if p.run_id}
    for run_id in sorted(set(runs) - set(rows)):
        verdict.note(RUN_ROWS, f"run {run_id}: a folder without a registry row")
    for run_id in sorted(set(rows) - set(runs)):
        verdict.note(RUN_ROWS, f"run {run_id}: a registry row without a folder")
    for run_id in sorted(set(runs) - set(by_run)):
        verdict.note(RUN_ROWS, f"run {run_id}: no producer opened it")
    for producer in producers:
        if producer.run_id and producer.acked and producer.run_id not in runs:
            verdict.note(RUN_ROWS, f"{producer.name}: its run {producer.run_id} has no folder")
    for run_id in sorted(set(runs) & set(rows)):
        run, row = runs[run_id], rows[run_id]
        meta = _metadata(run.folder)
        owner = by_run.get(run_id)
        where = f"run {run_id} ({owner.name if owner else '?'})"
        if meta is None:
            verdict.note(RUN_ROWS, f"{where}: metadata.json missing or unreadable")
            meta = {}
        if not (row["records"] == meta.get("records") == run.lines):
            verdict.note(
                RUN_RECORDS,
                f"{where}: registry {row['records']}, metadata.json {meta.get('records')}, "
                f"main.log {run.lines} records",
            )
        if sum(row["counts"].values()) != row["records"]:
            verdict.note(RUN_RECORDS, f"{where}: counts by level {row['counts']} != records")
        if row["end_ts"] is None or meta.get("end_time") is None:
            verdict.note(RUNS_LEFT_ACTIVE, f"{where}: still active after the final stop")
        if owner is not None:
            expected = {"disconnected", "lost"} if owner.killed else {"shutdown"}
            if owner.killed and owner.done:
                # Killed in its exit hook, which may already have sent app:shutdown.
                expected.add("shutdown")
            if not owner.killed and _caught_by_a_stop(run.shutdown_ms, daemon_downs):
                expected.add("lost")
            for source, reason in (
                ("registry", row["end_reason"]),
                ("metadata", meta.get("end_reason")),
            ):
                if reason is not None and reason not in expected:
                    fate = "killed" if owner.killed else f"exited {owner.exit_status}"
                    verdict.note(
                        RUN_END_REASONS, f"{where}: {source} says {reason}, producer {fate}"
                    )
            if row["pids"] != [owner.pid]:
                verdict.note(RUN_PIDS, f"{where}: pids {row['pids']}, producer pid {owner.pid}")
        _check_run_times(verdict, where, run, row, meta)


def _check_run_times(
    verdict: Verdict, where: str, run: RunFiles, row: dict[str, Any], meta: dict[str, Any]
) -> None:
    # Times come from the records: start at the first record, a clean end at app:shutdown's
    # time, any other end not before the last record.
    start = ms_of(row["start_ts"])
    if run.first_ms is not None and start != run.first_ms:
        verdict.note(
            RUN_TIMES, f"{where}: start {row['start_ts']}, first record {_iso(run.first_ms)}"
        )
    if meta.get("start_time") and ms_of(meta["start_time"]) != start:
        verdict.note(
            RUN_TIMES, f"{where}: metadata start {meta['start_time']} != registry {row['start_ts']}"
        )
    if row["end_ts"] is None:
        return
    end = ms_of(row["end_ts"])
    if meta.get("end_time") and ms_of(meta["end_time"]) != end:
        verdict.note(
            RUN_TIMES, f"{where}: metadata end {meta['end_time']} != registry {row['end_ts']}"
        )
    if row["end_reason"] == "shutdown" and run.shutdown_ms is not None:
        if end != run.shutdown_ms:
            verdict.note(
                RUN_TIMES,
                f"{where}: end {row['end_ts']}, app:shutdown record {_iso(run.shutdown_ms)}",
            )
    elif run.last_ms is not None and end < run.last_ms:
        verdict.note(
            RUN_TIMES, f"{where}: end {row['end_ts']} before last record {_iso(run.last_ms)}"
        )


def _caught_by_a_stop(shutdown_ms: int | None, downs: list[tuple[float, float]]) -> bool:
    # The app:shutdown record's time is the producer's; it is written a moment later, and
    # during a SIGTERM's drain. 2 s of slack covers a loaded machine's delays.
    if shutdown_ms is None:
        return False
    return any(signalled - 2.0 <= shutdown_ms / 1000 <= gone for signalled, gone in downs)


def check_sessions(
    verdict: Verdict, sessions: dict[str, SessionFiles], rows: dict[str, dict[str, Any]]
) -> None:
    """Session rows against the session files: records, runs, first/last time, end."""
    for session_id in sorted(set(sessions) - set(rows)):
        verdict.note(SESSION_ROWS, f"session {session_id}: a file without a registry row")
    for session_id in sorted(set(rows) - set(sessions)):
        verdict.note(SESSION_ROWS, f"session {session_id}: a registry row without a file")
    for session_id in sorted(set(sessions) & set(rows)):
        files, row = sessions[session_id], rows[session_id]
        where = f"session {session_id}"
        if row["records"] != files.lines:
            verdict.note(
                SESSION_RECORDS, f"{where}: registry {row['records']}, file {files.lines} records"
            )
        if sorted(row["runs"]) != sorted(files.runs):
            verdict.note(
                SESSION_RUNS,
                f"{where}: registry {len(row['runs'])} runs, file {len(files.runs)} runs",
            )
        first, last = ms_of(row["first_ts"]), ms_of(row["last_ts"])
        if (first, last) != (files.first_ms, files.last_ms):
            verdict.note(
                SESSION_TIMES,
                f"{where}: registry {row['first_ts']} .. {row['last_ts']}, file "
                f"{_iso(files.first_ms)} .. {_iso(files.last_ms)}",
            )
        ended = files.last_event == "session:end"
        if ended and (row["end_reason"] != "ended" or row["end_ts"] != row["last_ts"]):
            verdict.note(
                SESSION_END_REASONS, f"{where}: ends with session:end, registry {row['end_reason']}"
            )
        if not ended and row["end_ts"] is not None:
            verdict.note(
                SESSION_END_REASONS,
                f"{where}: records after its last session:end, registry {row['end_reason']}",
            )


def check_ctl(verdict: Verdict, ctl: CtlView) -> None:
    """`logd-ctl --json runs` / `sessions` show what the registry held at that moment."""
    for kind, key, shown, rows, fields in (
        ("run", "run_id", ctl.runs, ctl.index_runs, _CTL_RUN_FIELDS),
        ("session", "session_id", ctl.sessions, ctl.index_sessions, _CTL_SESSION_FIELDS),
    ):
        by_id = {item[key]: item for item in shown}
        if set(by_id) != set(rows):
            verdict.note(
                CTL_AGREES,
                f"{kind}s: logd-ctl lists {len(by_id)}, the index {len(rows)} "
                f"({len(set(by_id) ^ set(rows))} differ)",
            )
        for ident in sorted(set(by_id) & set(rows)):
            for name in fields:
                if by_id[ident].get(name) != rows[ident].get(name):
                    verdict.note(
                        CTL_AGREES,
                        f"{kind} {ident}: {name} {by_id[ident].get(name)!r} in logd-ctl, "
                        f"{rows[ident].get(name)!r} in the index",
                    )


_CTL_RUN_FIELDS = ("records", "end_reason", "start_ts", "end_ts", "pids", "counts")
_CTL_SESSION_FIELDS = ("records", "runs", "first_ts", "last_ts", "end_ts", "end_reason")


def check_files(
    verdict: Verdict,
    runs: dict[str, RunFiles],
    sessions: dict[str, SessionFiles],
    problems: list[str],
    temp_files: list[str],
    max_bytes: int,
) -> None:
    """Whole lines only, no temp files left behind, rotation at `max_bytes`."""
    for problem in problems:
        verdict.note(WHOLE_LINES, problem)
    for owner, torn in [(f"run {r.run_id}", r.torn) for r in runs.values()] + [
        (f"session {s.session_id}", s.torn) for s in sessions.values()
    ]:
        for line in torn:
            verdict.note(WHOLE_LINES, f"{owner}: not a whole record: {line!r}")
    for path in temp_files:
        verdict.note(TEMP_FILES, path)
    for owner, sizes in [(f"run {r.run_id}", r.sizes) for r in runs.values()] + [
        (f"session {s.session_id}", s.sizes) for s in sessions.values()
    ]:
        for name, (size, longest) in sorted(sizes.items()):
            if size > max_bytes and longest <= max_bytes:
                verdict.note(ROTATION_SIZE, f"{owner}: {name} holds {size} bytes (max {max_bytes})")


def quote(found: list[str]) -> list[str]:
    """The first few mismatches of a check, and how many more there are."""
    more = len(found) - _QUOTE
    return found[:_QUOTE] + ([f"... and {more} more"] if more > 0 else [])


def _metadata(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _iso(ms: int | None) -> str:
    if ms is None:
        return "none"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
