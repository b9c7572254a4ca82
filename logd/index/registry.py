"""Runs, sessions and calls the daemon knows about, and when each ends.

Keeps state in memory (the `states` dataclasses) and decides lifecycle transitions; it
does no file I/O itself (the engine writes `metadata.json` from `RunState.metadata()`).
Time comes in as arguments, and whether a process still exists is asked through a
callable, so the rules can be tested with a made-up clock and process table.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator

from logd.index.states import (
    CONTAINER_KEYS,
    CallState,
    EndReason,
    Peer,
    RunState,
    SessionState,
    new_run_id,
)
from logd.index.tables import SessionEnd
from logd.write.records import Record

TCP_GRACE_NS = 60 * 1_000_000_000
# A container's run ends (disconnected) once it has had no connection this long: the
# fluentd driver connects once per container, so its stream closed, or dockerd (or logd)
# restarted and did not bring the container back.
CONTAINER_GRACE_NS = 5 * 1_000_000_000
METADATA_EVERY_NS = 10 * 1_000_000_000


class Registry:
    """The daemon's view of live runs and calls, keyed by app."""

    def __init__(
        self,
        *,
        utc: bool,
        pid_alive: Callable[[int], bool],
        lookup: Callable[[str, str], RunState | None] = lambda app, run_id: None,
        lookup_session: Callable[[str, str, int], SessionState | None] = (
            lambda app, session_id, now_ns: None
        ),
    ) -> None:
        self.utc = utc
        self.pid_alive = pid_alive
        self.lookup = lookup
        self.lookup_session = lookup_session
        self.runs: dict[tuple[str, str], RunState] = {}
        self.newest: dict[str, RunState] = {}
        self._foreign: dict[tuple[str, str], str] = {}
        self.calls: dict[tuple[str, str], CallState] = {}
        self.sessions: dict[tuple[str, str], SessionState] = {}
        # Sessions ended since the last commit: one used again before its row is written
        # must carry on from this state, not from the older row.
        self._ended_sessions: dict[tuple[str, str], SessionState] = {}

    def run_for(self, record: Record, peer: Peer, now_ns: int) -> tuple[RunState, bool]:
        """The run a record belongs to, opening one if needed; True when it is new.

        Records without a `run_id` (plain Fluent clients) share a run per (app, peer
        process) on Unix sockets and per (app, peer host) on TCP, so a TCP client that
        reconnects within the grace period (`TCP_GRACE_NS`) carries on its run.

        A connection joins the run (its pid, its place in `logd-ctl status`) only when it
        speaks for itself: a record whose `pid` is another process's was relayed, e.g. a
        live client delivering the spool of one that exited, and the relay must not keep
        that run open or be shown as its producer.
        """
        run_id = record.run_id
        owner = None
        container = container_of(record) if run_id is None else None
        if run_id is None:
            owner = f"container {container['container_id']}" if container else peer.owner
            found = self._foreign.get((record.app, owner))
            known = self.runs.get((record.app, found)) if found is not None else None
            if found is not None and (container or (known is not None and known.active)):
                # A restarted container (same id) carries on its run, ended or not.
                run_id = found
            else:
                run_id = new_run_id(now_ns, self.utc)
                self._foreign[(record.app, owner)] = run_id
        key = (record.app, run_id)
        run = self.runs.get(key)
        created = False
        if run is None and (record.run_id is not None or container):
            # Not in memory: a run an earlier daemon kept, or one ended and forgotten.
            run = self.lookup(record.app, run_id)
            if run is not None:
                self.adopt(run)
                created = True
        if run is None:
            run = RunState(
                app=record.app,
                run_id=run_id,
                start_ns=record.time_ns,
                opened_by_daemon=record.run_id is None,
                tcp=peer.transport == "tcp",
            )
            run.foreign_owner = owner
            self.runs[key] = run
            created = True
            newest = self.newest.get(record.app)
            if newest is None or newest.start_ns <= run.start_ns:
                self.newest[record.app] = run
        if not run.active:
            # A record for a run that had ended: its process came back, a late child, or
            # a spool delivered after the fact. It ends again when its processes are gone.
            run.end_ns = run.end_reason = None
            run.shutdown_seen = False
        if container and container != run.container:
            run.container = {**run.container, **container}
            run.dirty = True
        relayed = peer.transport == "spool" or (
            peer.pid is not None and record.pid is not None and record.pid != peer.pid
        )
        if not relayed and peer.conn_id not in run.conns:
            run.conns.add(peer.conn_id)
            run.idle_since_ns = None
            # dockerd's pid would keep a container's run open as long as dockerd runs.
            if peer.pid is not None and not run.container:
                run.pids.add(peer.pid)
            run.peers[peer.conn_id] = {k: v for k, v in peer.as_dict().items() if k != "conn"}
            run.dirty = True
        return run, created

    def note_repeats(self, run: RunState, record: Record, count: int, last_ns: int) -> None:
        """`note_record()` for `count` plain records like `record` (no event, same pid);
        `last_ns` is the newest of their times."""
        run.records += count
        if last_ns > run.last_ns:
            run.last_ns = last_ns
        run.counts[record.level] = run.counts.get(record.level, 0) + count
        run.dirty = True

    def note_record(self, run: RunState, record: Record) -> None:
        run.records += 1
        time_ns = record.time_ns
        if time_ns > run.last_ns:
            run.last_ns = time_ns
        if time_ns < run.start_ns:
            run.start_ns = time_ns
        run.counts[record.level] = run.counts.get(record.level, 0) + 1
        if record.pid is not None and record.pid not in run.pids:
            run.pids.add(record.pid)
        run.dirty = True
        event_type = record.event_type
        if event_type is None:
            return
        if event_type == "app:start":
            kv = record.kv
            pid = kv.get("pid", record.pid)
            run.opener_pid = pid if isinstance(pid, int) else record.pid
            host, argv, version = kv.get("host"), kv.get("argv"), kv.get("client_version")
            run.host = host if isinstance(host, str) else run.host
            run.argv = [str(a) for a in argv] if isinstance(argv, list) else run.argv
            run.client_version = version if isinstance(version, str) else run.client_version
        elif event_type == "app:shutdown":
            if run.opener_pid is None or record.pid in (None, run.opener_pid):
                run.shutdown_seen = True
                run.shutdown_ns = time_ns
        elif event_type == "logd:dropped":
            count = record.kv.get("count")
            if isinstance(count, int) and count > 0:
                run.dropped_by_client += count

    def note_call(self, record: Record, run_id: str, default_day: str) -> CallState:
        """Count a call-scoped record; a call keeps the date folder of its first record."""
        assert record.call_id is not None
        key = (record.app, record.call_id)
        call = self.calls.get(key)
        if call is None:
            call = self.calls[key] = CallState(
                record.app, record.call_id, default_day, record.time_ns
            )
        call.bot_id = record.bot_id or call.bot_id
        call.run_id = run_id
        call.session_id = record.session_id or call.session_id
        call.records += 1
        if record.levelno >= 40:
            call.errors += 1
        return call

    def end_call(self, app: str, call_id: str, end_ns: int) -> CallState | None:
        call = self.calls.pop((app, call_id), None)
        if call is not None:
            call.end_ns = end_ns
        return call

    def note_session(self, record: Record, run_id: str, now_ns: int) -> SessionState:
        """A session begins at its first record; `seen_ns` (arrival) drives the idle timeout."""
        assert record.session_id is not None
        key = (record.app, record.session_id)
        session = self.sessions.get(key)
        if session is None:
            # Known from before a restart, or ended and now used again: the same session,
            # whose records, runs and first time carry on.
            session = self._ended_sessions.pop(key, None) or self.lookup_session(
                record.app, record.session_id, now_ns
            )
            if session is None:
                session = SessionState(
                    record.app, record.session_id, record.time_ns, record.time_ns, now_ns
                )
            session.end_ns = session.end_reason = None
            self.sessions[key] = session
        session.first_ns = min(session.first_ns, record.time_ns)
        session.last_ns = max(session.last_ns, record.time_ns)
        session.seen_ns = now_ns
        session.records += 1
        if run_id not in session.runs:
            session.runs.append(run_id)
        return session

    def end_session(self, app: str, session_id: str, reason: SessionEnd) -> SessionState | None:
        session = self.sessions.pop((app, session_id), None)
        if session is not None:
            session.end_ns = session.last_ns
            session.end_reason = reason
            self._ended_sessions[(app, session_id)] = session
        return session

    def committed(self, keep: Collection[tuple[str, str]] = ()) -> None:
        """A batch's rows are written: ended sessions can be read back from them now,
        but for those in `keep` (ended by a batch gathered since, not yet written)."""
        if keep:
            self._ended_sessions = {k: s for k, s in self._ended_sessions.items() if k in keep}
        else:
            self._ended_sessions.clear()

    def idle_sessions(self, now_ns: int, idle_ns: int) -> list[SessionState]:
        """End sessions with no record for `idle_ns` (by arrival time)."""
        idle = [s for s in self.sessions.values() if now_ns - s.seen_ns >= idle_ns]
        return [
            ended
            for s in idle
            if (ended := self.end_session(s.app, s.session_id, "idle")) is not None
        ]

    def connection_closed(self, conn_id: int, *, by_daemon: bool, now_ns: int) -> list[RunState]:
        """Forget a connection; returns the runs that ended because of it."""
        ended = []
        for run in self._runs_of(conn_id):
            run.conns.discard(conn_id)
            if run.conns:
                continue
            run.idle_since_ns = now_ns
            if not by_daemon and self._maybe_end(run, now_ns):
                ended.append(run)
        return ended

    def tick(self, now_ns: int) -> list[RunState]:
        """Runs whose processes are gone since they last spoke: ended now."""
        ended = []
        for run in list(self.runs.values()):
            if run.active and not run.conns and self._maybe_end(run, now_ns):
                ended.append(run)
        return ended

    def due_metadata(self, now_ns: int) -> Iterator[RunState]:
        """Active runs whose counts changed and whose metadata is older than 10 s."""
        for run in self.runs.values():
            if run.active and run.dirty and now_ns - run.written_ns >= METADATA_EVERY_NS:
                yield run

    def adopt(self, run: RunState) -> None:
        """Take over a run known from its metadata (kept by an earlier daemon)."""
        self.runs[(run.app, run.run_id)] = run
        if run.foreign_owner is not None and run.active:
            self._foreign[(run.app, run.foreign_owner)] = run.run_id
        run.idle_since_ns = run.idle_since_ns or run.start_ns
        newest = self.newest.get(run.app)
        if newest is None or newest.start_ns <= run.start_ns:
            self.newest[run.app] = run

    def forget_ended(self) -> None:
        """Drop ended runs from memory once their final metadata is written."""
        for key, run in list(self.runs.items()):
            if not run.active and self.newest.get(run.app) is not run:
                del self.runs[key]

    def discard(self, run: RunState) -> None:
        """Forget a run opened by a batch the disk refused: its records will come again."""
        key = (run.app, run.run_id)
        if self.runs.get(key) is run:
            del self.runs[key]
        self._foreign = {k: v for k, v in self._foreign.items() if (k[0], v) != key}
        if self.newest.get(run.app) is run:
            rest = [r for r in self.runs.values() if r.app == run.app]
            if rest:
                self.newest[run.app] = max(rest, key=lambda r: r.start_ns)
            else:
                del self.newest[run.app]

    def _runs_of(self, conn_id: int) -> list[RunState]:
        return [run for run in self.runs.values() if conn_id in run.conns]

    def _maybe_end(self, run: RunState, now_ns: int) -> bool:
        if run.shutdown_seen:
            reason: EndReason = "shutdown"
        elif run.container:
            if run.idle_since_ns is None:
                run.idle_since_ns = now_ns
            if now_ns - run.idle_since_ns < CONTAINER_GRACE_NS:
                return False
            reason = "disconnected"
        elif run.tcp and not run.pids:
            if run.idle_since_ns is None or now_ns - run.idle_since_ns < TCP_GRACE_NS:
                return False
            reason = "disconnected"
        elif run.pids and not any(self.pid_alive(pid) for pid in run.pids):
            reason = "disconnected"
        else:
            return False
        # The producer's clock, not the moment the daemon noticed: a run replayed from a
        # spool long after it ran keeps its real length.
        if reason == "shutdown" and run.shutdown_ns is not None:
            run.end_ns = max(run.shutdown_ns, run.last_ns)
        else:
            run.end_ns = run.last_ns or now_ns
        run.end_reason = reason
        run.dirty = True
        return True


def container_of(record: Record) -> dict[str, str] | None:
    """What a record from Docker's fluentd driver says of its container, or None.

    The driver sends `container_name` with Docker's leading "/"; kept without it, as
    `docker ps` shows the name.
    """
    extra = record.extra
    container_id = extra.get("container_id")
    if not isinstance(container_id, str) or not container_id:
        return None
    found = {key: value for key in CONTAINER_KEYS if isinstance(value := extra.get(key), str)}
    if "container_name" in found:
        found["container_name"] = found["container_name"].lstrip("/")
    return found


def pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie waiting to be reaped."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return True
    state = stat.rsplit(b")", 1)[-1].split()[:1]
    return state != [b"Z"]
