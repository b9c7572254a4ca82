"""Lifecycle rules of the registry, with a made-up clock and process table."""

from __future__ import annotations

from typing import Any

import pytest

from logd.index.registry import Registry
from logd.index.states import Peer, SessionState
from logd.write.records import Record

S = 1_000_000_000
RUN = "20251105_143052_a1b2c3d4"
X, Y = 4001, 4002  # pids


def rec(t: float, *, pid: int | None = X, run_id: str | None = RUN, **fields: Any) -> Record:
    return Record(int(t * S), "app", "agent", "INFO", 20, "m", run_id=run_id, pid=pid, **fields)


def unix(conn: int, pid: int) -> Peer:
    return Peer(conn, "unix", pid=pid)


def registry(alive: set[int], **kw: Any) -> Registry:
    return Registry(utc=True, pid_alive=lambda pid: pid in alive, **kw)


@pytest.mark.parametrize(
    ("peer", "joins"),
    [
        pytest.param(unix(1, X), True, id="own-records"),
        pytest.param(unix(1, Y), False, id="relayed-by-another-process"),
        pytest.param(Peer(1, "spool"), False, id="daemon-delivered-spool"),
        pytest.param(Peer(1, "tcp", address="127.0.0.1:5"), True, id="tcp-has-no-pid"),
    ],
)
def test_a_connection_joins_a_run_only_when_it_speaks_for_itself(peer: Peer, joins: bool) -> None:
    reg = registry({X, Y})
    run, _ = reg.run_for(rec(10), peer, 100 * S)
    assert (peer.conn_id in run.conns) is joins
    assert (Y in run.pids) is False
    assert bool(run.peers) is joins


@pytest.mark.parametrize(
    ("events", "reason", "end"),
    [
        pytest.param(["app:start", None, "app:shutdown"], "shutdown", 12, id="clean"),
        pytest.param(["app:start", None, None], "disconnected", 12, id="crashed"),
    ],
)
def test_a_run_ends_at_its_records_own_times(
    events: list[str | None], reason: str, end: float
) -> None:
    """Records written long after they were made (a spool replay at t=100) end the run
    at the producer's times, not at the moment the daemon noticed."""
    reg = registry(set())
    peer = Peer(7, "spool")
    for offset, event in enumerate(events):
        record = rec(10 + offset, event_type=event)
        run, _ = reg.run_for(record, peer, 100 * S)
        reg.note_record(run, record)
    (ended,) = reg.tick(101 * S)
    assert ended.end_reason == reason
    assert ended.start_ns == 10 * S
    assert ended.end_ns == end * S


def test_a_session_carries_on_from_its_stored_row() -> None:
    stored = SessionState("app", "s1", 5 * S, 6 * S, 6 * S, runs=["r0"], records=4)
    stored.end_ns, stored.end_reason = 6 * S, "ended"
    reg = registry(set(), lookup_session=lambda app, sid, now: stored if sid == "s1" else None)
    session = reg.note_session(rec(50, session_id="s1"), RUN, 60 * S)
    assert (session.records, session.runs, session.first_ns) == (5, ["r0", RUN], 5 * S)
    assert session.end_ns is None
    assert session.end_reason is None
    fresh = reg.note_session(rec(50, session_id="s2"), RUN, 60 * S)
    assert (fresh.records, fresh.runs, fresh.first_ns) == (1, [RUN], 50 * S)


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        pytest.param(
            Peer(1, "tcp", address="10.0.0.5:40001"),
            Peer(2, "tcp", address="10.0.0.5:40002"),
            True,
            id="tcp-reconnect-from-a-new-port",
        ),
        pytest.param(
            Peer(1, "tcp", address="[::1]:40001"),
            Peer(2, "tcp", address="[::1]:40002"),
            True,
            id="tcp-ipv6",
        ),
        pytest.param(
            Peer(1, "tcp", address="10.0.0.5:40001"),
            Peer(2, "tcp", address="10.0.0.6:40001"),
            False,
            id="tcp-another-host",
        ),
        pytest.param(unix(1, X), unix(2, X), True, id="unix-same-process"),
        pytest.param(unix(1, X), unix(2, Y), False, id="unix-another-process"),
    ],
)
def test_a_foreign_client_keeps_its_run_across_connections(
    first: Peer, second: Peer, same: bool
) -> None:
    reg = registry({X, Y})
    one, _ = reg.run_for(rec(10, run_id=None, pid=None), first, 10 * S)
    assert reg.connection_closed(first.conn_id, by_daemon=False, now_ns=11 * S) == []
    two, _ = reg.run_for(rec(20, run_id=None, pid=None), second, 20 * S)
    assert (one is two) is same


def test_a_foreign_tcp_run_ends_after_the_grace_period() -> None:
    reg = registry(set())
    peer = Peer(1, "tcp", address="10.0.0.5:40001")
    run, _ = reg.run_for(rec(10, run_id=None, pid=None), peer, 10 * S)
    reg.note_record(run, rec(10, run_id=None, pid=None))
    reg.connection_closed(1, by_daemon=False, now_ns=11 * S)
    assert reg.tick(70 * S) == []
    assert reg.tick(72 * S) == [run]
    assert run.end_reason == "disconnected"
    later, _ = reg.run_for(
        rec(80, run_id=None, pid=None), Peer(2, "tcp", address="10.0.0.5:1"), 80 * S
    )
    assert later is not run


def test_a_session_ended_and_used_again_before_its_row_is_written_carries_on() -> None:
    """Within one batch: records, `session:end`, more records. The stored row is older
    than the batch, so the session must carry on from memory, not from the row."""

    def row(app: str, sid: str, now: int) -> SessionState:
        return SessionState("app", "s1", 1 * S, 1 * S, 1 * S, runs=["r0"], records=1)

    reg = registry(set(), lookup_session=row)
    for t in (10, 11):
        reg.note_session(rec(t, session_id="s1"), RUN, 60 * S)
    ended = reg.end_session("app", "s1", "ended")
    assert ended is not None
    assert ended.records == 3
    again = reg.note_session(rec(12, session_id="s1"), RUN, 60 * S)
    assert again is ended
    assert again.records == 4
    assert again.end_ns is None
    reg.committed()
    reg.end_session("app", "s1", "ended")
    reg.committed()
    after = reg.note_session(rec(13, session_id="s1"), RUN, 61 * S)
    assert after is not again, "after the commit the row is the truth again"
    assert after.records == 2


DOCKERD = 4100
C1, C2 = "c1" * 32, "c2" * 32


def container_rec(t: float, container_id: str, name: str = "/web", **extra: Any) -> Record:
    fields = {"container_id": container_id, "container_name": name, **extra}
    return rec(t, run_id=None, pid=None, extra=fields)


def test_each_container_has_its_own_run_with_its_metadata() -> None:
    reg = registry({DOCKERD})
    peer = unix(1, DOCKERD)  # one dockerd relays every container
    one, created = reg.run_for(container_rec(10, C1, image="busybox"), peer, 10 * S)
    two, _ = reg.run_for(container_rec(11, C2, "/db"), unix(2, DOCKERD), 11 * S)
    again, _ = reg.run_for(container_rec(12, C1), peer, 12 * S)
    assert created
    assert one is again
    assert one is not two
    meta = one.metadata(utc=True)
    assert (meta["container_id"], meta["container_name"], meta["image"]) == (C1, "web", "busybox")
    assert "image" not in two.metadata(utc=True)
    assert one.pids == set()  # dockerd's pid would keep the run open while dockerd runs


def test_a_container_run_ends_disconnected_after_its_stream_closes_and_a_grace() -> None:
    reg = registry({DOCKERD})
    run, _ = reg.run_for(container_rec(10, C1), unix(1, DOCKERD), 10 * S)
    reg.note_record(run, container_rec(10, C1))
    assert reg.connection_closed(1, by_daemon=False, now_ns=11 * S) == []
    assert reg.tick(15 * S) == []
    assert reg.tick(16 * S) == [run]
    assert (run.end_reason, run.end_ns) == ("disconnected", 10 * S)


def test_a_restarted_container_continues_its_run_a_new_one_gets_a_new_run() -> None:
    reg = registry({DOCKERD})
    run, _ = reg.run_for(container_rec(10, C1), unix(1, DOCKERD), 10 * S)
    reg.connection_closed(1, by_daemon=False, now_ns=11 * S)
    assert reg.tick(20 * S) == [run]
    reg.forget_ended()
    restarted, _ = reg.run_for(container_rec(30, C1), unix(2, DOCKERD), 30 * S)
    assert restarted is run
    assert run.active
    other, _ = reg.run_for(container_rec(31, C2, "/web"), unix(3, DOCKERD), 31 * S)
    assert other is not run


def test_a_container_run_forgotten_is_taken_back_from_the_registry() -> None:
    kept: dict[str, Any] = {}
    reg = registry({DOCKERD}, lookup=lambda app, run_id: kept.get(run_id))
    run, _ = reg.run_for(container_rec(10, C1), unix(1, DOCKERD), 10 * S)
    reg.connection_closed(1, by_daemon=False, now_ns=11 * S)
    reg.tick(20 * S)
    reg.runs.clear()  # forgotten, as after other apps' runs pushed it out
    kept[run.run_id] = run
    back, created = reg.run_for(container_rec(30, C1), unix(2, DOCKERD), 30 * S)
    assert (back, created) == (run, True)
