"""Read what the campaign left on disk: producers' acks files and the daemon's log tree.

Files only: the registry and `logd-ctl` come in through `books`. A file "family" is a
live file and its rotated copies (`main.log`, `main.log.1`, `main.log.2.gz`, ...), read
newest first; where a crash left both `X` and `X.gz`, the uncompressed one is read.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

APP = "soak"
# [layout] utc = true: text lines are UTC, like the session files and the registry.
RUN_LINE = re.compile(
    r"^\[(?P<session>[^\]]*)\] - (?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - "
    r"(?P<logger>\S+) - (?P<level>[A-Z]+) - (?P<msg>.*)$"
)
RECORD_ID = re.compile(r"^id=(?P<name>p\d+\.\d+)\.(?P<seq>\d+)$")
_BACKUP = re.compile(r"^(?P<base>.+?)(?:\.(?P<index>\d+))?(?P<gz>\.gz)?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Producer:
    """One producer process (slot and generation), from the campaign and its acks file."""

    name: str
    pid: int | None = None
    run_id: str | None = None
    acked: int = 0
    dropped: int = 0
    done: bool = False
    killed: bool = False
    exit_status: int | None = None


def read_acks(producer: Producer, path: Path) -> None:
    """Fill in the run id, pid and the highest acknowledged count from an acks file."""
    if not path.exists():
        return
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if number == 0:
            header = json.loads(line)
            producer.run_id, producer.pid = header["run_id"], header["pid"]
        elif line.startswith("acked "):
            _, count, _, dropped = line.split()
            producer.acked = max(producer.acked, int(count))
            producer.dropped = max(producer.dropped, int(dropped))
        elif line == "done":
            producer.done = True


def ms_of(text: str) -> int:
    """ms since the epoch (truncated, as logd writes times) of an ISO 8601 time or of a
    text-line time (`2026-11-22 10:00:00,123`, UTC per `[layout] utc`)."""
    if "," in text:
        moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
    else:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def _base(name: str) -> str | None:
    match = _BACKUP.match(name)
    return None if match is None or name.startswith(".") else match["base"]


def family(folder: Path, base: str) -> list[Path]:
    """`base` and its rotated copies in `folder`, newest first."""
    found: dict[int, Path] = {}
    for path in folder.iterdir():
        match = _BACKUP.match(path.name)
        if not match or match["base"] != base or path.name.startswith("."):
            continue
        index = int(match["index"] or 0)
        if index in found and not match["gz"]:
            found[index] = path  # both X and X.gz: a crash mid-compression; X is whole
        elif index not in found:
            found[index] = path
    return [found[index] for index in sorted(found)]


def read_lines(
    paths: list[Path], problems: list[str], sizes: dict[str, tuple[int, int]]
) -> Iterator[tuple[Path, str]]:
    """Every line of a family, newest file first, each file in order.

    `sizes` receives each file's (uncompressed bytes, longest line in bytes).
    """
    for path in paths:
        try:
            if path.name.endswith(".gz"):
                with gzip.open(path, "rt", encoding="utf-8") as handle:
                    text = handle.read()
            else:
                text = path.read_text(encoding="utf-8")
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: unreadable ({exc})")
            continue
        if text and not text.endswith("\n"):
            problems.append(f"{path}: ends in a partial line")
        lines = text.splitlines()
        longest = max((len(line.encode("utf-8")) + 1 for line in lines), default=0)
        sizes[path.name] = (len(text.encode("utf-8")), longest)
        for line in lines:
            yield path, line


@dataclass
class RunFiles:
    """What one run folder holds: its main log and component logs, counted."""

    run_id: str
    folder: Path
    lines: int = 0
    torn: list[str] = field(default_factory=list)
    first_ms: int | None = None
    last_ms: int | None = None
    shutdown_ms: int | None = None
    # seq -> copies, per file family (main.log, soak.pN.log), for this run's producer
    ids: dict[str, Counter[int]] = field(default_factory=dict)
    sessions: dict[int, str] = field(default_factory=dict)  # seq -> session of the record
    name: str | None = None
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)


def read_run(folder: Path, problems: list[str]) -> RunFiles:
    """Count a run folder's main log (every record of the run) and its component logs."""
    run = RunFiles(folder.name, folder)
    bases = {_base(p.name) for p in folder.glob("*.log*")}
    for base in sorted(b for b in bases if b is not None):
        ids: Counter[int] = Counter()
        main = base == "main.log"
        for _, line in read_lines(family(folder, base), problems, run.sizes):
            match = RUN_LINE.match(line)
            if match is None:
                if main:
                    run.torn.append(line[:120])
                continue
            if main:
                run.lines += 1
                moment = ms_of(match["time"])
                run.first_ms = moment if run.first_ms is None else min(run.first_ms, moment)
                run.last_ms = moment if run.last_ms is None else max(run.last_ms, moment)
                if match["msg"].startswith("app:shutdown"):
                    run.shutdown_ms = moment
            record = RECORD_ID.match(match["msg"])
            if record is None:
                continue
            run.name = record["name"]
            seq = int(record["seq"])
            ids[seq] += 1
            if main and match["session"] != "in-progress":
                run.sessions[seq] = match["session"]
        if ids or main:
            run.ids[base] = ids
    return run


@dataclass
class SessionFiles:
    """What one session file family holds."""

    session_id: str
    path: Path
    lines: int = 0
    torn: list[str] = field(default_factory=list)
    first_ms: int | None = None
    last_ms: int | None = None
    runs: list[str] = field(default_factory=list)
    last_event: str | None = None
    ids: Counter[tuple[str, int]] = field(default_factory=Counter)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)


def read_session(folder: Path, base: str, problems: list[str]) -> SessionFiles:
    """Count a session's JSON lines: records, runs, first and last time, how it ends."""
    session = SessionFiles(base.removeprefix("session_").removesuffix(".jsonl"), folder / base)
    newest_file: Path | None = None
    for path, line in read_lines(family(folder, base), problems, session.sizes):
        try:
            item = json.loads(line)
            moment = ms_of(item["time"])
        except (ValueError, KeyError, TypeError):
            session.torn.append(line[:120])
            continue
        session.lines += 1
        session.first_ms = moment if session.first_ms is None else min(session.first_ms, moment)
        session.last_ms = moment if session.last_ms is None else max(session.last_ms, moment)
        if item.get("run_id") not in session.runs:
            session.runs.append(item.get("run_id"))
        if newest_file in (None, path):
            newest_file = path  # newest first: its last line is the session's last record
            session.last_event = item.get("event_type")
        record = RECORD_ID.match(str(item.get("msg", "")))
        if record is not None:
            session.ids[(record["name"], int(record["seq"]))] += 1
    return session


def read_tree(root: Path, problems: list[str]) -> tuple[list[RunFiles], list[SessionFiles]]:
    """Every run folder and session file family of the campaign's app."""
    runs_dir = root / APP / "runs"
    runs = [
        read_run(folder, problems)
        for folder in sorted(runs_dir.iterdir() if runs_dir.exists() else ())
        if folder.is_dir() and not folder.is_symlink()
    ]
    sessions_dir = root / APP / "sessions"
    entries = sessions_dir.iterdir() if sessions_dir.exists() else ()
    # A temp file (`.x.gz.tmp`, mid-compression) names no session: dropped before sorting.
    found = {base for p in entries if (base := _base(p.name)) is not None}
    sessions = [read_session(sessions_dir, b, problems) for b in sorted(found)]
    return runs, sessions


def temp_files(root: Path) -> list[str]:
    """Temp files left in the tree (`*.tmp`, hidden or not)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.tmp"))
