"""RegistryStore and the index rebuild against real SQLite files in tmp_path."""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from logd.config import Layout
from logd.index import tables
from logd.index.eventline import format_event_line, iso_utc_ms
from logd.index.events import EventIndex
from logd.index.names import safe_name
from logd.index.readback import decode_name
from logd.index.rebuild import open_or_rebuild, rebuild
from logd.index.states import Peer, RunState
from logd.index.store import RegistryStore
from logd.index.tables import CallRow, SessionRow
from logd.write.records import normalize
from logd.write.routing import day_text, route, run_dir

S = 1_000_000_000
T0 = 1_735_732_800 * S  # 2025-01-01T12:00:00Z
RUN1 = "20250101_120000_deadbeef"


def make_run(
    app: str = "agent", run_id: str = RUN1, start_ns: int = T0, **changes: Any
) -> RunState:
    run = RunState(app=app, run_id=run_id, start_ns=start_ns, opened_by_daemon=False)
    run.pids = {4242}
    run.host = "box"
    run.argv = ["python", "-m", "agent", "--flag"]
    run.client_version = "0.1.0"
    run.counts = {"INFO": 3, "ERROR": 1}
    run.records = 4
    run.bytes = 512
    run.files = {"main.log", "agent.log"}
    run.peers = {7: Peer(7, "unix", 4242, 1000, 1000).as_dict()}
    for key, value in changes.items():
        setattr(run, key, value)
    return run


def run_meta(run: RunState, utc: bool = False) -> dict[str, Any]:
    return {**run.metadata(utc), "path": run_dir(run.app, run.run_id)}


def session(app: str, sid: str, first_s: int, last_s: int, **changes: Any) -> SessionRow:
    fields: dict[str, Any] = {
        "app": app,
        "session_id": sid,
        "runs": [RUN1],
        "first_ns": T0 + first_s * S,
        "last_ns": T0 + last_s * S,
        "end_ns": None,
        "end_reason": None,
        "records": 2,
        "path": f"{app}/sessions/session_{sid}.jsonl",
    }
    fields.update(changes)
    return SessionRow(**fields)


def call(app: str, cid: str, day: str, bot: str, start_s: int, **changes: Any) -> CallRow:
    fields: dict[str, Any] = {
        "app": app,
        "call_id": cid,
        "bot_id": bot,
        "day": day,
        "path": f"{app}/calls/{day}/bot_{bot}/call_{cid}.log",
        "start_ns": T0 + start_s * S,
        "end_ns": None,
        "duration_ms": None,
        "records": 1,
        "errors": 0,
        "run_id": RUN1,
        "session_id": None,
    }
    fields.update(changes)
    return CallRow(**fields)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "index.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[RegistryStore]:
    st = RegistryStore(db_path)
    yield st
    st.close()


# --- upserts -----------------------------------------------------------------------


def test_run_metadata_round_trips_and_updates(store: RegistryStore) -> None:
    run = make_run()
    store.upsert_runs([run_meta(run)])
    got = store.get_run("agent", RUN1)
    assert got is not None
    extra = {"path": "agent/runs/" + RUN1, "start_ts": "2025-01-01T12:00:00.000Z"}
    assert got == {**run.metadata(False), **extra, "end_ts": None, "active": True}

    run.end_ns, run.end_reason, run.records = T0 + 90 * S + 5_000_000, "shutdown", 9
    run.counts["WARNING"] = 5
    store.upsert_runs([run_meta(run)])
    got = store.get_run("agent", RUN1)
    assert got is not None
    assert {k: got[k] for k in run.metadata(False)} == run.metadata(False)
    assert (got["end_ts"], got["active"]) == ("2025-01-01T12:01:30.005Z", False)
    assert store.counts() == {"runs": 1, "sessions": 0, "calls": 0}


def test_run_times_are_stored_as_utc_whatever_the_metadata_offset(store: RegistryStore) -> None:
    meta = {**run_meta(make_run()), "start_time": "2025-01-01T14:00:00.250+02:00"}
    store.upsert_runs([meta])
    got = store.get_run(None, RUN1)
    assert got is not None
    assert (got["start_ts"], got["start_time"]) == (
        "2025-01-01T12:00:00.250Z",
        "2025-01-01T14:00:00.250+02:00",
    )


def test_metadata_keys_without_a_column_round_trip(db_path: Path) -> None:
    """Metadata may grow; keys the schema has no column for still come back."""
    meta = {**run_meta(make_run()), "opener_pid": 4242, "future": {"nested": [1, "x"]}}
    # A database made before extra_json existed gets the column added.
    conn = sqlite3.connect(db_path)
    conn.executescript(tables.SCHEMA.replace("    extra_json TEXT,\n", ""))
    assert "extra_json" not in {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    conn.close()
    store = RegistryStore(db_path)
    try:
        store.upsert_runs([meta])
        got = store.get_run("agent", RUN1)
    finally:
        store.close()
    assert got is not None
    assert (got["opener_pid"], got["future"]) == (4242, {"nested": [1, "x"]})
    assert "extra_json" not in got
    # A row read back can be written again as it is (the daemon does so at start).
    store = RegistryStore(db_path)
    try:
        store.upsert_runs([{**got, "end_reason": "lost", "end_time": got["start_time"]}])
        again = store.get_run("agent", RUN1)
    finally:
        store.close()
    assert again == {**got, "end_reason": "lost", "end_time": got["start_time"]} | {
        "end_ts": got["start_ts"],
        "active": False,
    }


def test_a_batch_intent_is_kept_until_its_commit(db_path: Path, store: RegistryStore) -> None:
    """The files a batch is about to write, in one packed row, until the batch commits."""
    EventIndex(db_path).close()  # the intent keeps the highest event id too
    files = [(f"agent/sessions/s{n}.log", 1000 + n, n * 7) for n in range(1000)]
    files.append(("agent/runs/r1/main.log", 99, 123_456_789_012))
    assert store.pending_batch() is None
    store.begin_batch(files)
    assert store.pending_batch() == (files, 0)
    rows = store._conn.execute("SELECT count(*) FROM pending_batch").fetchone()[0]
    assert rows == 1
    store.write(batch_done=True)
    assert store.pending_batch() is None


def test_an_intent_left_by_an_earlier_build_is_still_read(db_path: Path) -> None:
    """Earlier builds kept one row per file and had no `files` column: a crash under one
    of them, restarted under this one, still cuts the files back."""
    conn = sqlite3.connect(db_path)
    old = tables.SCHEMA.replace("NOT NULL,\n    files BLOB\n", "NOT NULL\n")
    assert old != tables.SCHEMA
    conn.executescript(old)
    conn.executemany(
        "INSERT INTO pending_batch (path, ino, size) VALUES (?, ?, ?)",
        [("agent/runs/r1/main.log", 7, 100), ("agent/sessions/s1.log", 8, 40), ("", 0, 12)],
    )
    conn.commit()
    conn.close()
    EventIndex(db_path).close()
    store = RegistryStore(db_path)
    try:
        assert store.pending_batch() == (
            [("agent/runs/r1/main.log", 7, 100), ("agent/sessions/s1.log", 8, 40)],
            12,
        )
        store.abandon_batch(12)
        assert store.pending_batch() is None
    finally:
        store.close()


def test_sessions_and_calls_upsert_replace_the_row(store: RegistryStore) -> None:
    store.upsert_sessions([session("a", "s1", 1, 2)])
    store.upsert_sessions([session("a", "s1", 1, 9, end_ns=T0 + 9 * S, end_reason="ended")])
    (row,) = store.list_sessions()
    assert row == {
        "app": "a",
        "session_id": "s1",
        "runs": [RUN1],
        "first_ts": "2025-01-01T12:00:01.000Z",
        "last_ts": "2025-01-01T12:00:09.000Z",
        "end_ts": "2025-01-01T12:00:09.000Z",
        "end_reason": "ended",
        "records": 2,
        "path": "a/sessions/session_s1.jsonl",
        "active": False,
    }
    assert store.get_session("a", "s1") == row
    assert store.get_session("a", "nope") is None

    store.upsert_calls([call("a", "c1", "2025-01-01", "b1", 3)])
    store.upsert_calls(
        [call("a", "c1", "2025-01-01", "b1", 3, end_ns=T0 + 5 * S, duration_ms=2000.5, errors=2)]
    )
    (got,) = store.list_calls()
    assert got["end_ts"] == "2025-01-01T12:00:05.000Z"
    assert (got["duration_ms"], got["errors"], got["active"]) == (2000.5, 2, False)
    assert store.get_call("a", "c1") == got
    # The same call id on another day is another call.
    store.upsert_calls([call("a", "c1", "2025-01-02", "b1", 86_400)])
    assert len(store.list_calls()) == 2
    newest = store.get_call("a", "c1")
    assert newest is not None
    assert newest["day"] == "2025-01-02"
    assert store.get_call("a", "c1", "2025-01-01") == got


def test_rows_that_change_only_their_counts_land_like_whole_rows(store: RegistryStore) -> None:
    # The second and later writes of a live session or call take the count-only update;
    # what is read back must be what a whole-row upsert gives, including a row cleanup
    # deleted in between (it comes back) and a row whose other fields changed.
    store.upsert_sessions([session("a", "s1", 1, 2), session("a", "s2", 1, 2)])
    store.upsert_calls([call("a", "c1", "2025-01-01", "b1", 3)])
    store.write(
        sessions=[session("a", "s1", 1, 5, records=7), session("a", "s2", 1, 6, records=3)],
        calls=[call("a", "c1", "2025-01-01", "b1", 3, records=4, errors=1)],
    )
    assert pick(store.list_sessions(), "session_id", "last_ts", "records") in (
        [("s1", "2025-01-01T12:00:05.000Z", 7), ("s2", "2025-01-01T12:00:06.000Z", 3)],
        [("s2", "2025-01-01T12:00:06.000Z", 3), ("s1", "2025-01-01T12:00:05.000Z", 7)],
    )
    got = store.get_call("a", "c1")
    assert got is not None
    assert (got["records"], got["errors"]) == (4, 1)
    assert store.delete_paths(["a/sessions/session_s1.jsonl"]) == 1
    store.write(sessions=[session("a", "s1", 1, 8, records=9), session("a", "s2", 1, 8)])
    assert pick([store.get_session("a", "s1")], "last_ts", "records", "runs") == [
        ("2025-01-01T12:00:08.000Z", 9, [RUN1])
    ]
    assert pick([store.get_session("a", "s2")], "last_ts", "records") == [
        ("2025-01-01T12:00:08.000Z", 2)
    ]
    store.write(sessions=[session("a", "s2", 1, 9, end_ns=T0 + 9 * S, end_reason="idle")])
    assert pick([store.get_session("a", "s2")], "end_reason", "active") == [("idle", False)]


def test_a_refused_write_leaves_no_row_remembered(store: RegistryStore) -> None:
    # A write rolled back must not make the next one update a row that was never stored.
    with pytest.raises(sqlite3.IntegrityError):
        store.write(
            sessions=[
                session("a", "s1", 0, 1),
                session("a", "s2", 0, 1, end_reason=cast(Any, "weird")),
            ],
            calls=[call("a", "c1", "2025-01-01", "b1", 1)],
        )
    store.write(
        sessions=[session("a", "s1", 0, 2, records=5)],
        calls=[call("a", "c1", "2025-01-01", "b1", 1, records=6)],
    )
    assert pick([store.get_session("a", "s1")], "records") == [5]
    got = store.get_call("a", "c1")
    assert got is not None
    assert got["records"] == 6


# --- reads -------------------------------------------------------------------------


def pick(rows: Sequence[dict[str, Any] | None], *keys: str) -> list[Any]:
    """Just the named columns of each row, to compare orderings."""
    out: list[Any] = []
    for row in rows:
        assert row is not None
        out.append(tuple(row[k] for k in keys) if len(keys) > 1 else row[keys[0]])
    return out


def test_run_filters_ordering_and_open_runs(store: RegistryStore) -> None:
    ended = dict(end_ns=T0 + 50 * S, end_reason="disconnected")
    store.write(
        runs=[
            run_meta(make_run("a", "r1", T0)),
            run_meta(make_run("a", "r2", T0 + 20 * S, **ended)),
            run_meta(make_run("b", "r3", T0 + 10 * S)),
            run_meta(make_run("b", "r1", T0 + 30 * S, **ended)),
        ]
    )
    assert pick(store.list_runs(), "app", "run_id") == [
        ("b", "r1"),
        ("a", "r2"),
        ("b", "r3"),
        ("a", "r1"),
    ]
    assert pick(store.list_runs(app="a"), "app", "run_id") == [("a", "r2"), ("a", "r1")]
    assert pick(store.list_runs(active=True), "app", "run_id") == [("b", "r3"), ("a", "r1")]
    assert pick(store.list_runs(active=False, app="b"), "app", "run_id") == [("b", "r1")]
    assert pick(store.list_runs(limit=1), "app", "run_id") == [("b", "r1")]
    assert pick(store.open_runs(), "app", "run_id") == [("a", "r1"), ("b", "r3")]
    assert store.list_runs(app="zzz") == []
    # Without an app, the newest run of that id; with one, exactly that app's.
    assert pick([store.get_run(None, "r1")], "app", "run_id") == [("b", "r1")]
    assert pick([store.get_run("a", "r1")], "app", "run_id") == [("a", "r1")]
    assert store.get_run("a", "r3") is None
    with pytest.raises(ValueError, match="limit"):
        store.list_runs(limit=-1)


def test_session_and_call_filters(store: RegistryStore) -> None:
    store.write(
        sessions=[
            session("a", "s1", 0, 30),
            session("a", "s2", 5, 10, end_ns=T0 + 10 * S, end_reason="idle"),
            session("b", "s3", 0, 20),
        ],
        calls=[
            call("a", "c1", "2025-01-01", "b1", 1),
            call("a", "c2", "2025-01-01", "b2", 3, end_ns=T0 + 4 * S, duration_ms=1000.0),
            call("a", "c3", "2025-01-02", "b1", 86_400),
            call("b", "c4", "2025-01-01", "b1", 2),
        ],
    )
    assert pick(store.list_sessions(), "session_id") == ["s1", "s3", "s2"]
    assert pick(store.list_sessions(app="a", active=True), "session_id") == ["s1"]
    assert pick(store.list_sessions(active=False), "session_id") == ["s2"]
    assert pick(store.list_sessions(limit=2), "session_id") == ["s1", "s3"]
    assert pick(store.list_calls(), "call_id") == ["c3", "c2", "c4", "c1"]
    assert pick(store.list_calls(app="a", day="2025-01-01"), "call_id") == ["c2", "c1"]
    assert pick(store.list_calls(bot_id="b1"), "call_id") == ["c3", "c4", "c1"]
    assert pick(store.list_calls(bot_id="b1", app="a", active=True, limit=1), "call_id") == ["c3"]
    assert pick(store.list_calls(active=False), "call_id") == ["c2"]


def test_delete_paths_removes_rows_at_and_below_each_path(store: RegistryStore) -> None:
    store.write(
        runs=[run_meta(make_run("a", "r1")), run_meta(make_run("a", "r10"))],
        sessions=[session("a", "s1", 0, 1), session("a", "s2", 0, 1)],
        calls=[
            call("a", "c1", "2025-01-01", "b1", 1),
            call("a", "c2", "2025-01-01", "b2", 2),
            call("a", "c3", "2025-01-02", "b1", 3),
        ],
    )
    deleted = store.delete_paths(
        ["a/runs/r1", "a/sessions/session_s2.jsonl", "a/calls/2025-01-01", "a/runs/nothing"]
    )
    assert deleted == 4
    assert [r["run_id"] for r in store.list_runs()] == ["r10"]  # r1 is not a prefix of r10
    assert [r["session_id"] for r in store.list_sessions()] == ["s1"]
    assert [r["call_id"] for r in store.list_calls()] == ["c3"]
    assert store.delete_paths([]) == 0


def test_write_is_one_transaction(store: RegistryStore) -> None:
    """A row the schema refuses rolls back every other row of the same write()."""
    store.write(runs=[run_meta(make_run("a", "r0"))])
    with pytest.raises(sqlite3.IntegrityError):
        store.write(
            runs=[run_meta(make_run("a", "r1"))],
            calls=[call("a", "c1", "2025-01-01", "b1", 1)],
            sessions=[session("a", "s1", 0, 1, end_reason=cast(Any, "weird"))],
        )
    assert store.counts() == {"runs": 1, "sessions": 0, "calls": 0}
    store.write(runs=[run_meta(make_run("a", "r1"))])  # the connection is usable again
    assert store.counts()["runs"] == 2


def test_wal_reader_sees_committed_rows_without_blocking_the_writer(
    store: RegistryStore, db_path: Path
) -> None:
    index = EventIndex(db_path)  # the same file holds both tables
    reader = sqlite3.connect(db_path, isolation_level=None)
    try:
        assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        store.write(runs=[run_meta(make_run("a", "r1"))])
        assert reader.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
        store.write(runs=[run_meta(make_run("a", "r2"))])  # not blocked by the open read
        assert reader.execute("SELECT count(*) FROM runs").fetchone()[0] == 1  # its snapshot
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
        other = RegistryStore(db_path)
        try:
            assert [r["run_id"] for r in other.list_runs()] == ["r2", "r1"]
        finally:
            other.close()
        assert index.count() == 0
    finally:
        reader.close()
        index.close()


# --- rebuild -----------------------------------------------------------------------

APP = "my app"  # percent-encoded on disk: "my%20app"
LONG_SESSION = "s" * 200  # cut and hashed on disk: its name cannot be decoded
LAYOUT = Layout(utc=True)


def emit(root: Path, t_ns: int, **raw: Any) -> None:
    """Write one record where the daemon would, with the real routing table."""
    record = normalize("agent", t_ns, {"app": APP, "logger": "agent", "msg": "", **raw})
    call_day = day_text(t_ns, True) if record.call_id is not None else None
    for write in route(record, RUN1, LAYOUT, call_day=call_day).writes:
        path = root / write.path
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(write.line)


def write_meta(root: Path, run: RunState) -> None:
    folder = root / run_dir(run.app, run.run_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps(run.metadata(False)), encoding="utf-8")


@pytest.fixture
def log_tree(tmp_path: Path) -> Path:
    """A root as a daemon leaves it: two runs, two sessions, two calls, events and archives."""
    root = tmp_path / "root"
    app_dir = root / safe_name(APP)
    write_meta(root, make_run(APP, RUN1, end_ns=T0 + 60 * S, end_reason="shutdown"))
    write_meta(root, make_run(APP, "run/2", T0 + 30 * S))
    (app_dir / "runs" / "broken").mkdir()
    (app_dir / "runs" / "current").symlink_to(safe_name("run/2"))
    (app_dir / "runs" / "current.txt").write_text("run/2\n")
    (root / "_rejected").mkdir()
    (root / "_rejected" / "2025-01-01.jsonl").write_text("{}\n")

    call_ids = {"call_id": "c 1", "bot_id": "bot/7", "session_id": "sess 1"}
    emit(root, T0 + 1 * S, msg="hello", session_id="sess 1")
    emit(root, T0 + 2 * S, event_type="call:start", **call_ids)
    emit(root, T0 + 3 * S, msg="boom", level="ERROR", call_id="c 1", bot_id="bot/7")
    emit(root, T0 + 4 * S, event_type="call:end", kv={"duration_ms": 2000.5}, **call_ids)
    emit(root, T0 + 5 * S, event_type="llm:request", kv={"model": "m", "n": 3}, session_id="sess 1")
    emit(root, T0 + 6 * S, event_type="session:end", session_id="sess 1")
    emit(root, T0 + 7 * S + 250_000_000, msg="no start event", call_id="c2")
    emit(root, T0 + 8 * S, msg="long", session_id=LONG_SESSION)

    # Rotation moved the session's first line to a compressed backup.
    live = app_dir / "sessions" / f"session_{safe_name('sess 1')}.jsonl"
    first, *rest = live.read_text(encoding="utf-8").splitlines(keepends=True)
    live.write_text("".join(rest), encoding="utf-8")
    with gzip.open(live.with_name(live.name + ".1.gz"), "wt", encoding="utf-8") as handle:
        handle.write(first)
    archived = format_event_line(T0 - 86_400 * S, "app:start", "main", "", {"pid": 4242})
    with gzip.open(app_dir / "events.log.2024-12-31.gz", "wt", encoding="utf-8") as handle:
        handle.write(archived + "\n")
    # A crash during compression left the original beside its complete .gz: read once.
    (app_dir / "events.log.2024-12-31").write_text(archived + "\n", encoding="utf-8")
    with (app_dir / "events.log").open("a", encoding="utf-8") as handle:
        handle.write("not an event line\n")
    return root


def check_rebuilt(store: RegistryStore, index: EventIndex) -> None:
    app_dir = safe_name(APP)
    runs = {r["run_id"]: r for r in store.list_runs()}
    assert set(runs) == {RUN1, "run/2"}
    assert {r["app"] for r in runs.values()} == {APP}
    ended = make_run(APP, RUN1, end_ns=T0 + 60 * S, end_reason="shutdown").metadata(False)
    assert {k: runs[RUN1][k] for k in ended} == ended
    assert runs["run/2"]["path"] == f"{app_dir}/runs/run%2F2"
    assert [r["run_id"] for r in store.open_runs()] == ["run/2"]

    sessions = {s["session_id"]: s for s in store.list_sessions(app=APP)}
    assert set(sessions) == {"sess 1", LONG_SESSION}
    one = sessions["sess 1"]
    assert (one["first_ts"], one["last_ts"]) == (iso_utc_ms(T0 + S), iso_utc_ms(T0 + 6 * S))
    assert (one["end_ts"], one["end_reason"]) == (iso_utc_ms(T0 + 6 * S), "ended")
    assert (one["records"], one["runs"]) == (5, [RUN1])
    assert one["path"] == f"{app_dir}/sessions/session_sess%201.jsonl"
    assert sessions[LONG_SESSION]["active"] is True

    calls = {c["call_id"]: c for c in store.list_calls(app=APP)}
    assert set(calls) == {"c 1", "c2"}
    assert calls["c 1"] == {
        "app": APP,
        "call_id": "c 1",
        "bot_id": "bot/7",
        "day": "2025-01-01",
        "path": f"{app_dir}/calls/2025-01-01/bot_bot%2F7/call_c%201.log",
        "start_ts": iso_utc_ms(T0 + 2 * S),
        "end_ts": iso_utc_ms(T0 + 4 * S),
        "duration_ms": 2000.5,
        "records": 3,
        "errors": 1,
        "run_id": RUN1,
        "session_id": "sess 1",
        "active": False,
    }
    c2 = calls["c2"]
    assert (c2["bot_id"], c2["start_ts"], c2["active"]) == (
        "unknown",
        iso_utc_ms(T0 + 7 * S + 250_000_000),
        True,
    )

    events = index.query(app=APP)
    assert [e["event_type"] for e in events] == [
        "app:start",
        "call:start",
        "call:end",
        "llm:request",
        "session:end",
    ]
    llm = events[3]
    assert (llm["session_id"], llm["call_id"], llm["run_id"]) == ("sess 1", None, None)
    assert llm["kv"] == {"model": "m", "n": 3}
    assert llm["raw_line"].startswith(iso_utc_ms(T0 + 5 * S) + "|llm:request|agent|")
    assert (events[2]["call_id"], events[2]["kv"]) == ("c 1", {"duration_ms": 2000.5})


def test_rebuild_from_tree(log_tree: Path, db_path: Path) -> None:
    store, index = RegistryStore(db_path), EventIndex(db_path)
    try:
        report = rebuild(log_tree, store, index, utc=True)
        check_rebuilt(store, index)
        # The plain ERROR record of the call is found again in its file (#16 item 11).
        errors = index.query(min_levelno=40)
        assert [(e["event_type"], e["message"], e["call_id"], e["level"]) for e in errors] == [
            (None, "boom", "c 1", "ERROR")
        ]
    finally:
        store.close()
        index.close()
    assert (report.reason, report.runs, report.sessions, report.calls) == ("requested", 2, 2, 2)
    assert (report.events, report.error_records, report.bad_lines) == (5, 1, 1)
    assert len(report.problems) == 1
    assert "broken/metadata.json" in report.problems[0]


def test_missing_index_with_a_tree_is_rebuilt(log_tree: Path) -> None:
    store, index, report = open_or_rebuild(log_tree, utc=True)
    try:
        assert report is not None
        assert (report.reason, report.moved_aside) == ("missing", ())
        check_rebuilt(store, index)
    finally:
        store.close()
        index.close()
    # Now it exists: opened as is, nothing indexed twice.
    store, index, report = open_or_rebuild(log_tree, utc=True)
    try:
        assert report is None
        assert (store.counts()["runs"], index.count()) == (2, 5)
    finally:
        store.close()
        index.close()


def test_corrupt_index_is_moved_aside_and_rebuilt(log_tree: Path) -> None:
    bad = log_tree / "index.sqlite3"
    bad.write_bytes(b"this is not sqlite" * 500)
    bad.with_name("index.sqlite3-wal").write_bytes(b"junk wal")
    store, index, report = open_or_rebuild(log_tree, utc=True)
    try:
        assert report is not None
        assert report.reason == "corrupt"
        main = Path(report.moved_aside[0])
        assert main.name.startswith("index.sqlite3.corrupt-")
        assert main.read_bytes().startswith(b"this is not sqlite")
        # Its WAL goes with it, untouched (a -shm may go too).
        wal = main.with_name(main.name + "-wal")
        assert str(wal) in report.moved_aside
        assert wal.read_bytes() == b"junk wal"
        check_rebuilt(store, index)
    finally:
        store.close()
        index.close()


def test_damaged_schema_page_counts_as_corrupt(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    RegistryStore(root / "index.sqlite3").close()
    with (root / "index.sqlite3").open("r+b") as handle:
        handle.seek(100)  # just past the header: the schema table's page
        handle.write(b"\xff" * 3000)
    store, index, report = open_or_rebuild(root)
    try:
        assert report is not None
        assert (report.reason, report.runs) == ("corrupt", 0)
    finally:
        store.close()
        index.close()


def test_empty_root_needs_no_rebuild_and_a_stale_wal_is_set_aside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.sqlite3-wal").write_bytes(b"orphan")
    store, index, report = open_or_rebuild(root)
    store.close()
    index.close()
    assert report is None
    assert (root / "index.sqlite3").is_file()
    assert [p.name.startswith("index.sqlite3.stale-") for p in root.glob("*.stale-*")] == [True]


def test_an_index_that_cannot_be_opened_is_not_thrown_away(tmp_path: Path) -> None:
    """Only damage moves the file: other errors (here: it is a folder) stop the start."""
    (tmp_path / "index.sqlite3").mkdir()
    with pytest.raises(sqlite3.OperationalError):
        open_or_rebuild(tmp_path)
    assert (tmp_path / "index.sqlite3").is_dir()
    assert not list(tmp_path.glob("*.corrupt-*"))


@pytest.mark.parametrize(
    "ident",
    ["plain_id", "my app", "a/b", ".hidden", "%", "ünïcode", "x" * 300, "~tilde"],
)
def test_decode_name_inverts_safe_name(ident: str) -> None:
    name = safe_name(ident)
    if "~" in name and len(ident) > 128:
        assert decode_name(name) == name  # cut and hashed: not decodable
        assert decode_name(name, {name: ident}) == ident
    else:
        assert decode_name(name) == ident


def test_an_empty_index_file_counts_as_missing(log_tree: Path) -> None:
    (log_tree / "index.sqlite3").touch()
    store, index, report = open_or_rebuild(log_tree, utc=True)
    try:
        assert report is not None
        assert (report.reason, report.runs, report.events) == ("missing", 2, 5)
    finally:
        store.close()
        index.close()


def test_odd_metadata_values_fall_back_to_defaults(tmp_path: Path, db_path: Path) -> None:
    """A hand-edited metadata.json still gives a run row rather than costing its app."""
    folder = tmp_path / "root" / "app" / "runs" / "r1"
    folder.mkdir(parents=True)
    meta = {
        "run_id": "other",
        "start_time": "2025-01-01T12:00:00Z",
        "end_time": "soon",
        "end_reason": "exploded",
        "records": "many",
        "argv": "python app.py",
        "pids": [1, 2],
    }
    (folder / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    store, index = RegistryStore(db_path), EventIndex(db_path)
    try:
        report = rebuild(tmp_path / "root", store, index)
        (run,) = store.list_runs()
    finally:
        store.close()
        index.close()
    assert (report.runs, report.problems) == (1, ())
    assert (run["app"], run["run_id"], run["path"]) == ("app", "r1", "app/runs/r1")
    assert (run["end_ts"], run["end_reason"], run["records"]) == (None, None, 0)
    assert (run["argv"], run["pids"], run["start_ts"]) == (None, [1, 2], "2025-01-01T12:00:00.000Z")
