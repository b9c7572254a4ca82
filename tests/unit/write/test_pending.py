"""A batch the disk refused: its counts are taken back, its new runs forgotten, and what
will not come again kept for the next batch."""

from __future__ import annotations

from logd.index.registry import Registry
from logd.index.states import RunState
from logd.write.pending import Pending


def run(run_id: str, start_ns: int = 0) -> RunState:
    return RunState(app="a", run_id=run_id, start_ns=start_ns, opened_by_daemon=False)


def count(state: RunState, records: int) -> None:
    state.records += records
    state.counts["INFO"] = state.counts.get("INFO", 0) + records
    state.bytes += 10 * records
    state.files.add("main.log")


def registry_with(*runs: RunState) -> Registry:
    registry = Registry(utc=True, pid_alive=lambda pid: False)
    for state in runs:
        registry.adopt(state)
    return registry


def test_counts_of_a_refused_batch_are_taken_back() -> None:
    old = run("old")
    registry = registry_with(old)
    pending = Pending()
    count(old, 3)
    pending.committed([old])
    count(old, 5)
    pending.refused(
        registry,
        touched=[old],
        opened=[],
        ended=[],
        rewritten=[],
        sessions={},
        calls={},
        closing=[],
    )
    assert (old.records, old.counts, old.bytes, old.files) == (3, {"INFO": 3}, 30, {"main.log"})


def test_runs_a_refused_batch_opened_are_forgotten() -> None:
    old, new = run("old", 1), run("new", 2)
    registry = registry_with(old, new)
    assert registry.newest["a"] is new
    Pending().refused(
        registry,
        touched=[new],
        opened=[new],
        ended=[],
        rewritten=[],
        sessions={},
        calls={},
        closing=[],
    )
    assert list(registry.runs) == [("a", "old")]
    assert registry.newest["a"] is old


def test_runs_a_refused_batch_ended_wait_for_the_next_batch() -> None:
    ended, rewritten = run("ended"), run("due")
    rewritten.dirty, rewritten.written_ns = False, 5
    pending = Pending()
    pending.refused(
        registry_with(ended, rewritten),
        touched=[],
        opened=[],
        ended=[ended],
        rewritten=[rewritten],
        sessions={},
        calls={},
        closing=["a/sessions/s.jsonl"],
    )
    assert list(pending.runs.values()) == [ended]
    assert pending.closing == ["a/sessions/s.jsonl"]
    assert (rewritten.dirty, rewritten.written_ns) == (True, 0)
    pending.written()
    assert (pending.runs, pending.closing) == ({}, [])
