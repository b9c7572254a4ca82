"""The next batch gathered while the one in flight syncs (`Engine.overlap`): each lands
with its own books, a resend of a chunk in flight is not written twice, and when the
batch in flight is refused the next one is refused with it and both come again once.

Real engine, files and SQLite; the refusal is SQLite's own SQLITE_FULL, raised where a
full disk raises it (the registry transaction of the batch in flight).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from logd_client import wire

from logd.index.states import Peer
from logd.write.batch import batch_bytes
from logd.write.engine import Engine
from logd.write.jobs import Ingest
from tests.helpers import make_config, read_lines

RUN = "20251105_143052_a1b2c3d4"
T0 = 1_764_000_000_000_000_000
PER = 50


def job(seq: int, conn: int = 1) -> Ingest:
    """Message `seq`: PER records in sessions s0 and s1 of one run, its own chunk."""
    entries = []
    for i in range(PER):
        n = seq * PER + i
        record: dict[str, Any] = {
            "msg": f"record {n:05d}",
            "app": "a",
            "run_id": RUN,
            "level": "INFO",
            "logger": "agent",
            "session_id": f"s{n % 2}",
        }
        entries.append((T0 + n * 1_000_000, record))
    peer = Peer(conn, "unix", pid=os.getpid())
    return Ingest(peer, [wire.Entries("a", entries, {"chunk": f"{'ab' * 8}:{seq}"}, [])])


def numbers(path: Path) -> list[int]:
    return sorted(int(line.split("record ")[1][:5]) for line in read_lines(path))


def books(root: Path) -> tuple[int, dict[str, int]]:
    """The run's and each session's record count, as committed."""
    with sqlite3.connect(root / "index.sqlite3") as db:
        (run,) = db.execute("SELECT records FROM runs WHERE run_id = ?", [RUN]).fetchone()
        sessions = dict(db.execute("SELECT session_id, records FROM sessions").fetchall())
    return int(run), {str(k): int(v) for k, v in sessions.items()}


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(make_config(tmp_path / "root", tmp_path))


def test_each_batch_lands_with_its_own_books(engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "root"
    first, second = job(0), job(1, conn=2)
    flight = engine.begin([first])
    assert not first.ok
    flight = engine.overlap([second], flight)
    # The first is committed with the counts it had when its files were written, not
    # with those the second added to the same run and sessions while it synced.
    assert first.ok
    assert not second.ok
    assert books(root) == (PER, {"s0": PER // 2, "s1": PER // 2})
    engine.land(flight)
    assert second.ok
    assert books(root) == (2 * PER, {"s0": PER, "s1": PER})
    engine.close()
    everything = list(range(2 * PER))
    assert numbers(root / "a" / "runs" / RUN / "main.log") == everything
    sessions = root / "a" / "sessions"
    assert numbers(sessions / "session_s0.jsonl") + numbers(sessions / "session_s1.jsonl") == [
        *range(0, 2 * PER, 2),
        *range(1, 2 * PER, 2),
    ]


def test_a_batch_in_flight_keeps_its_files_but_not_its_lines(
    engine: Engine, tmp_path: Path
) -> None:
    # While it syncs and the next batch is gathered, a written batch needs to know which
    # files it touched, not what it wrote to them: its lines' text is let go.
    root = tmp_path / "root"
    flight = engine.begin([job(0)])
    lines = flight.batch.lines
    on_disk = {
        str(path.relative_to(root)): path.stat().st_size
        for path in root.glob("a/**/*")
        if path.suffix in (".log", ".jsonl") and not path.parent.is_symlink()
    }
    assert set(lines.by_path) == set(on_disk) - {"a/events.log"}
    assert all(text == [] for text in lines.by_path.values())
    # What a refusal would report as not written: every byte of its lines.
    assert batch_bytes(flight.batch) == lines.released == sum(on_disk.values())
    engine.land(flight)
    engine.close()
    assert numbers(root / "a" / "runs" / RUN / "main.log") == list(range(PER))


def test_a_resend_of_the_chunk_in_flight_is_not_written_twice(
    engine: Engine, tmp_path: Path
) -> None:
    # A client that reconnected sends its unacknowledged message again while the first
    # copy syncs: the second copy is a duplicate, as it is once the first is committed.
    flight = engine.begin([job(0)])
    again = job(0, conn=2)
    flight = engine.overlap([again], flight)
    engine.land(flight)
    assert again.ok
    assert again.written == 0
    assert engine.totals.duplicates == 1
    engine.close()
    root = tmp_path / "root"
    assert numbers(root / "a" / "runs" / RUN / "main.log") == list(range(PER))
    assert books(root) == (PER, {"s0": PER // 2, "s1": PER // 2})


def test_a_refused_flight_takes_the_next_batch_with_it(engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "root"
    engine.process([job(0)])
    first, second = job(1), job(2, conn=2)
    flight = engine.begin([first])
    write = engine.store.write_prepared

    def full(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    engine.store.write_prepared = full  # type: ignore[method-assign]
    with pytest.raises(OSError, match="disk is full"):
        engine.overlap([second], flight)
    engine.store.write_prepared = write  # type: ignore[method-assign]
    assert not first.ok
    assert not second.ok
    # Cut back to the batch before; the next one wrote nothing; the books are as before.
    assert numbers(root / "a" / "runs" / RUN / "main.log") == list(range(PER))
    assert books(root) == (PER, {"s0": PER // 2, "s1": PER // 2})
    # Their producers send both again: each record once, in the files and the books.
    engine.process([job(1)])
    engine.process([job(2, conn=2)])
    assert books(root) == (3 * PER, {"s0": 3 * PER // 2, "s1": 3 * PER // 2})
    engine.close()
    assert numbers(root / "a" / "runs" / RUN / "main.log") == list(range(3 * PER))
    assert engine.totals.duplicates == 0
