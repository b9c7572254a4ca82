"""EventIndex against a real SQLite file: schema, filters, ordering, safety."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logd.index.eventline import format_event_line
from logd.index.events import EventIndex, EventRow, _build_query

T0_NS = 1_734_618_721_000_000_000  # 2024-12-19T14:32:01.000Z


def make_row(
    i: int,
    event_type: str = "llm:request",
    *,
    app: str = "agent-app",
    run_id: str | None = "20241219_143000_0000abcd",
    session_id: str | None = None,
    call_id: str | None = None,
    kv: dict[str, object] | None = None,
) -> EventRow:
    """Event number ``i``, one second after event ``i - 1``."""
    ts_ns = T0_NS + i * 1_000_000_000
    fields: dict[str, object] = dict(kv or {})
    if session_id is not None:
        fields["session_id"] = session_id
    if call_id is not None:
        fields["call_id"] = call_id
    raw = format_event_line(ts_ns, event_type, "agent", f"event {i}", fields)
    return EventRow(
        ts=raw.split("|", 1)[0],
        event_type=event_type,
        source="agent",
        message=f"event {i}",
        app=app,
        run_id=run_id,
        session_id=session_id,
        call_id=call_id,
        kv_json=json.dumps(kv, separators=(",", ":")) if kv else None,
        raw_line=raw,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "index.sqlite3"


@pytest.fixture
def index(db_path: Path) -> Iterator[EventIndex]:
    ix = EventIndex(db_path)
    yield ix
    ix.close()


def messages(rows: list[dict[str, object]]) -> list[object]:
    return [r["message"] for r in rows]


def test_schema_wal_and_indexes(index: EventIndex, db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = [r[1] for r in conn.execute("PRAGMA table_info(events)")]
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    conn.close()
    assert columns == [
        "id",
        "ts",
        "event_type",
        "source",
        "message",
        "app",
        "run_id",
        "session_id",
        "call_id",
        "kv_json",
        "raw_line",
        "levelno",
    ]
    assert {
        "idx_events_ts",
        "idx_events_type_ts",
        "idx_events_session_ts",
        "idx_events_app_ts",
    } <= indexes


def test_reopen_keeps_rows(db_path: Path) -> None:
    ix = EventIndex(db_path)
    ix.insert_many([make_row(0), make_row(1)])
    ix.close()
    ix = EventIndex(db_path)
    try:
        assert ix.count() == 2
    finally:
        ix.close()


def test_insert_and_read_back_every_column(index: EventIndex) -> None:
    row = make_row(3, session_id="s1", call_id="c1", kv={"model": "llama3.2", "n": [1, 2]})
    index.insert_many([row])
    index.insert_many([])
    assert index.count() == 1
    (got,) = index.query()
    assert isinstance(got["id"], int)
    for column in EventRow.__slots__:
        assert got[column] == getattr(row, column)
    assert got["kv"] == {"model": "llama3.2", "n": [1, 2]}


def test_kv_is_empty_dict_without_kv_json(index: EventIndex) -> None:
    index.insert_many([make_row(0)])
    assert index.query()[0]["kv"] == {}


def test_insert_many_is_one_transaction(index: EventIndex) -> None:
    bad = EventRow(
        ts="2024-12-19T14:32:01.000Z",
        event_type="x:y",
        source="s",
        message=None,  # type: ignore[arg-type]  # violates NOT NULL on purpose
        app="a",
        run_id=None,
        session_id=None,
        call_id=None,
        kv_json=None,
        raw_line="r",
    )
    with pytest.raises(sqlite3.IntegrityError):
        index.insert_many([make_row(0), bad])
    assert index.count() == 0
    index.insert_many([make_row(1)])  # the connection is usable afterwards
    assert index.count() == 1


@pytest.fixture
def filled(index: EventIndex) -> EventIndex:
    index.insert_many(
        [
            make_row(0, "app:start", app="a1"),
            make_row(1, "llm:request", app="a1", session_id="s1"),
            make_row(2, "llm:response", app="a1", session_id="s1"),
            make_row(3, "llm_x:request", app="a1"),
            make_row(4, "call:start", app="a2", run_id="r2", session_id="s2", call_id="c1"),
            make_row(5, "call:end", app="a2", run_id="r2", session_id="s2", call_id="c1"),
            make_row(6, "error:runtime", app="a2", run_id="r2"),
        ]
    )
    return index


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, [0, 1, 2, 3, 4, 5, 6]),
        ({"app": "a2"}, [4, 5, 6]),
        ({"type_pattern": "llm:request"}, [1]),
        ({"type_pattern": "llm:*"}, [1, 2]),
        ({"type_pattern": "*:start"}, [0, 4]),
        ({"type_pattern": "*"}, [0, 1, 2, 3, 4, 5, 6]),
        ({"type_pattern": "l*:re*"}, [1, 2, 3]),
        ({"type_pattern": "llm:"}, []),
        ({"session_id": "s1"}, [1, 2]),
        ({"run_id": "r2"}, [4, 5, 6]),
        ({"call_id": "c1"}, [4, 5]),
        ({"since": "2024-12-19T14:32:03.000Z"}, [2, 3, 4, 5, 6]),
        ({"until": "2024-12-19T14:32:03.000Z"}, [0, 1, 2]),
        ({"since": "2024-12-19T14:32:02Z", "until": "2024-12-19T14:32:03.999Z"}, [1, 2]),
        ({"since": "2024-12-19T15:32:02+01:00"}, [1, 2, 3, 4, 5, 6]),
        ({"since": "2024-12-19T14:32:02"}, [1, 2, 3, 4, 5, 6]),
        ({"app": "a1", "type_pattern": "llm*", "session_id": "s1"}, [1, 2]),
        ({"app": "a1", "run_id": "r2"}, []),
    ],
)
def test_filters(filled: EventIndex, filters: dict[str, Any], expected: list[int]) -> None:
    assert messages(filled.query(**filters)) == [f"event {i}" for i in expected]


def test_limit_returns_newest_in_ascending_order(filled: EventIndex) -> None:
    assert messages(filled.query(limit=3)) == ["event 4", "event 5", "event 6"]
    assert messages(filled.query(app="a1", limit=2)) == ["event 2", "event 3"]
    assert filled.query(limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        filled.query(limit=-1)


def test_same_timestamp_keeps_insertion_order(index: EventIndex) -> None:
    rows = [make_row(0), make_row(0), make_row(0)]
    rows = [
        EventRow(**{**{c: getattr(r, c) for c in EventRow.__slots__}, "message": f"m{i}"})
        for i, r in enumerate(rows)
    ]
    index.insert_many(rows)
    assert messages(index.query()) == ["m0", "m1", "m2"]
    assert messages(index.query(limit=2)) == ["m1", "m2"]


def test_bad_time_is_value_error(filled: EventIndex) -> None:
    with pytest.raises(ValueError, match="since"):
        filled.query(since="yesterday")


def test_delete_before(filled: EventIndex) -> None:
    assert filled.delete_before("2024-12-19T14:32:03Z") == 2
    assert messages(filled.query()) == [f"event {i}" for i in range(2, 7)]


@pytest.mark.parametrize(
    ("filters", "index_name"),
    [
        ({"type_pattern": "llm:*"}, "idx_events_type_ts"),
        ({"type_pattern": "llm:request"}, "idx_events_type_ts"),
        ({"session_id": "s1"}, "idx_events_session_ts"),
        ({"app": "a1"}, "idx_events_app_ts"),
    ],
)
def test_query_plan_uses_an_index(
    filled: EventIndex, db_path: Path, filters: dict[str, Any], index_name: str
) -> None:
    args: dict[str, Any] = {
        "app": None,
        "type_pattern": None,
        "since": None,
        "until": None,
        "session_id": None,
        "run_id": None,
        "call_id": None,
        "limit": 1000,
    }
    sql, params = _build_query(**{**args, **filters})
    conn = sqlite3.connect(db_path)
    try:
        plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    finally:
        conn.close()
    assert f"USING INDEX {index_name}" in plan or f"USING COVERING INDEX {index_name}" in plan


@pytest.mark.parametrize(
    "hostile",
    [
        "'; DROP TABLE events; --",
        'a" OR 1=1 --',
        "%",
        "_",
        "llm:%",
        "ll_:request",
        "[l]lm:*",
        "?lm:request",
        "llm:re?uest",
    ],
)
def test_injection_and_wildcard_lookalikes_are_harmless(filled: EventIndex, hostile: str) -> None:
    assert filled.query(app=hostile) == []
    assert filled.query(session_id=hostile) == []
    assert filled.query(type_pattern=hostile) == []
    assert filled.count() == 7


def test_literal_glob_characters_match_themselves(index: EventIndex) -> None:
    index.insert_many([make_row(0, "odd:[x]?"), make_row(1, "odd:x")])
    assert messages(index.query(type_pattern="odd:[x]?")) == ["event 0"]
    assert messages(index.query(type_pattern="odd:[*")) == ["event 0"]
    assert messages(index.query(type_pattern="*?")) == ["event 0"]


def _row(ts: str, event_type: str, levelno: int, message: str = "m") -> EventRow:
    return EventRow(
        ts=ts,
        event_type=event_type,
        source="agent",
        message=message,
        app="app",
        run_id="r1",
        session_id=None,
        call_id=None,
        kv_json=None,
        raw_line=f"{ts}|{event_type}|agent|{message}",
        levelno=levelno,
    )


def test_error_records_are_listed_by_level_only(index: EventIndex) -> None:
    """#16 item 11: a plain ERROR record has a row, listed with `min_levelno` and never
    among the events; `count()` counts events (the events.log lines) only."""
    index.insert_many(
        [
            _row("2026-01-01T00:00:01.000Z", "llm:response", 20),
            _row("2026-01-01T00:00:02.000Z", "", 40, "plain error"),
            _row("2026-01-01T00:00:03.000Z", "error:runtime", 40, "ValueError: boom"),
            _row("2026-01-01T00:00:04.000Z", "", 50, "critical"),
        ]
    )
    assert [r["event_type"] for r in index.query()] == ["llm:response", "error:runtime"]
    assert [r["event_type"] for r in index.query(type_pattern="*")] == [
        "llm:response",
        "error:runtime",
    ]
    errors = index.query(min_levelno=40)
    assert [(r["event_type"], r["level"], r["message"]) for r in errors] == [
        (None, "ERROR", "plain error"),
        ("error:runtime", "ERROR", "ValueError: boom"),
        (None, "CRITICAL", "critical"),
    ]
    assert [r["message"] for r in index.query(min_levelno=50)] == ["critical"]
    assert index.count() == 2


def test_an_index_made_before_levels_gains_the_column(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.executescript(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, ts TEXT NOT NULL,"
            " event_type TEXT NOT NULL, source TEXT NOT NULL, message TEXT NOT NULL,"
            " app TEXT NOT NULL, run_id TEXT, session_id TEXT, call_id TEXT, kv_json TEXT,"
            " raw_line TEXT NOT NULL);"
            "INSERT INTO events (ts, event_type, source, message, app, raw_line) VALUES"
            " ('2026-01-01T00:00:01.000Z', 'error:runtime', 's', 'E: x', 'a', 'l1'),"
            " ('2026-01-01T00:00:02.000Z', 'app:start', 's', '', 'a', 'l2');"
        )
    conn.close()
    old = EventIndex(db_path)
    try:
        assert [(r["event_type"], r["level"]) for r in old.query()] == [
            ("error:runtime", "ERROR"),
            ("app:start", "INFO"),
        ]
        assert [r["event_type"] for r in old.query(min_levelno=40)] == ["error:runtime"]
    finally:
        old.close()
