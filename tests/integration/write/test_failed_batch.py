"""A batch the disk refuses is sent again by its producers: it must be written once and
counted once, in the run's, the session's and the call's books alike."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from logd_client import wire

from logd.index.states import Peer
from logd.index.store import RegistryStore
from logd.write.engine import Engine
from logd.write.jobs import Ingest
from tests.helpers import make_config, read_lines

RUN = "20251105_143052_a1b2c3d4"
T0 = 1_764_000_000_000_000_000
MS = 1_000_000


def message(seq: int, n: int = 100) -> Ingest:
    base = 1_764_000_000_000_000_000 + seq * n * 1_000_000
    entries = []
    for i in range(n):
        record: dict[str, Any] = {"msg": "x" * 100, "app": "a", "run_id": RUN, "level": "INFO"}
        if i % 2:
            record["session_id"] = "s1"
        else:
            record["call_id"] = "c1"
        entries.append((base + i * 1_000_000, record))
    peer = Peer(1, "unix", pid=os.getpid())
    return Ingest(peer, [wire.Entries("a", entries, {"chunk": f"{'ab' * 8}:{seq}"}, [])])


@pytest.fixture
def file_size_limit() -> Iterator[None]:
    """Writes past 15 kB fail with EFBIG (SIGXFSZ ignored, as the daemon does) until the
    test lifts the limit again by leaving the block."""
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous)


def test_a_refused_batch_is_counted_once_when_it_comes_again(
    tmp_path: Path, file_size_limit: None
) -> None:
    engine = Engine(make_config(tmp_path / "root", tmp_path))
    engine.process([message(0)])
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (15000, limits[1]))
    with pytest.raises(OSError, match=r"too large|disk I/O"):
        engine.process([message(1)])
    resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    engine.process([message(1)])  # the producer's resend
    engine.process([message(2)])
    root = tmp_path / "root" / "a"
    run_lines = read_lines(root / "runs" / RUN / "main.log")
    session_lines = read_lines(root / "sessions" / "session_s1.jsonl")
    (call_file,) = root.glob("calls/*/bot_unknown/call_c1.log")
    call_lines = read_lines(call_file)
    assert (len(run_lines), len(session_lines), len(call_lines)) == (150, 150, 150)
    run = engine.registry.runs[("a", RUN)]
    assert run.records == 300, "what the run saw, calls included, once"
    assert engine.registry.sessions[("a", "s1")].records == 150
    assert engine.registry.calls[("a", "c1")].records == 150
    engine.close()
    meta = json.loads((root / "runs" / RUN / "metadata.json").read_text())
    assert meta["records"] == 300
    store = RegistryStore(tmp_path / "root" / "index.sqlite3")
    try:
        (session,) = store.list_sessions(app="a")
        call = store.get_call("a", "c1")
        (run_row,) = store.list_runs(app="a")
    finally:
        store.close()
    assert (run_row["records"], session["records"], call and call["records"]) == (300, 150, 150)


def test_a_batch_refused_after_its_events_were_indexed_is_indexed_once(tmp_path: Path) -> None:
    """The event rows commit on their own connection before the registry transaction;
    when the disk refuses that second step, the resent batch must not index them twice.
    The refusal is SQLite's own SQLITE_FULL, raised where a full disk raises it."""
    engine = Engine(make_config(tmp_path / "root", tmp_path))
    events = [
        (T0 + i * MS, {"msg": f"e{i}", "app": "a", "run_id": RUN, "event_type": "llm:x"})
        for i in range(10)
    ]
    peer = Peer(1, "unix", pid=os.getpid())

    def job() -> Ingest:
        return Ingest(peer, [wire.Entries("a", events, {"chunk": f"{'cd' * 8}:0"}, [])])

    write = engine.store.write_prepared

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    engine.store.write_prepared = refuse  # type: ignore[method-assign]
    with pytest.raises(OSError, match="disk is full"):
        engine.process([job()])
    engine.store.write_prepared = write  # type: ignore[method-assign]
    engine.process([job()])  # the producer's resend
    engine.close()
    with sqlite3.connect(tmp_path / "root" / "index.sqlite3") as db:
        messages = [r[0] for r in db.execute("SELECT message FROM events WHERE app = 'a'")]
    assert sorted(messages) == sorted(f"e{i}" for i in range(10))
    lines = read_lines(tmp_path / "root" / "a" / "events.log")
    assert len(lines) == 10


def test_rows_commit_after_the_sync_and_a_failed_sync_refuses_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync runs in its own thread while the writer works out the batch's rows; the
    rows commit only once it succeeded. A write-back error (injected where syncfs(2)
    would report it: a failing block device is out of reach here) refuses the batch:
    files cut back, no row of it committed, and its resend is counted once."""
    root = tmp_path / "root"
    engine = Engine(make_config(root, tmp_path))
    assert engine.config.fsync == "batch"
    engine.process([message(0)])

    def committed() -> tuple[int, int]:
        with sqlite3.connect(root / "index.sqlite3") as conn:
            (sessions,) = conn.execute("SELECT records FROM sessions WHERE session_id = 's1'")
            (runs,) = conn.execute("SELECT records FROM runs WHERE run_id = ?", (RUN,))
        return int(sessions[0]), int(runs[0])

    seen: list[tuple[int, int]] = []

    def failing_sync(files: list[tuple[int, int]]) -> None:
        seen.append(committed())
        raise OSError(errno.EIO, "syncfs: Input/output error")

    durability = engine.sinks.durability
    monkeypatch.setattr(durability, "sync", failing_sync)
    with pytest.raises(OSError, match="Input/output"):
        engine.process([message(1)])
    assert seen == [(50, 100)]
    assert committed() == (50, 100)
    session_file = root / "a" / "sessions" / "session_s1.jsonl"
    assert len(read_lines(session_file)) == 50
    monkeypatch.undo()
    engine.process([message(1)])  # the producer's resend
    engine.process([message(2)])
    assert committed() == (150, 300)
    assert len(read_lines(session_file)) == 150
    assert engine.registry.sessions[("a", "s1")].records == 150
    engine.close()
