"""What the daemon holds about one connection (`Peer`), run, call or session, and how
each is written down: a run's ``metadata.json``, a session's or call's registry row.

Plain data: the rules for when each begins and ends are ``registry.py``'s. No I/O and
no clock, except `new_run_id`'s random suffix.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from logd.index.tables import CallRow, SessionEnd, SessionRow, iso_to_ns

__all__ = [
    "CONTAINER_KEYS",
    "CallState",
    "EndReason",
    "Peer",
    "RunState",
    "SessionState",
    "Transport",
    "iso_local",
    "new_run_id",
]

Transport = Literal["unix", "tcp", "spool"]
# A container's run keeps these in its metadata: the fluentd driver sends the first two
# with every record, the image only when a label gives it (`--log-opt labels=image`).
CONTAINER_KEYS = ("container_id", "container_name", "image")
EndReason = Literal["shutdown", "disconnected", "lost"]


@dataclass(frozen=True, slots=True)
class Peer:
    """One accepted connection; pid/uid/gid come from SO_PEERCRED and cannot be forged."""

    conn_id: int
    transport: Transport
    pid: int | None = None
    uid: int | None = None
    gid: int | None = None
    address: str = ""

    @property
    def owner(self) -> str:
        """Who a foreign client's run belongs to: its process on a Unix socket, its host
        on TCP (a reconnecting client comes back from a new port), else the connection."""
        if self.transport == "unix" and self.pid:
            return f"unix pid {self.pid}"
        if self.transport == "tcp" and ":" in self.address:
            return f"tcp {self.address.rpartition(':')[0]}"
        return f"{self.transport} conn {self.conn_id}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "conn": self.conn_id,
            "transport": self.transport,
            "pid": self.pid,
            "uid": self.uid,
            "gid": self.gid,
            "address": self.address,
        }


def iso_local(time_ns: int, utc: bool = False) -> str:
    """ISO 8601 with its UTC offset, so metadata is unambiguous in either layout.

    Truncated to the millisecond in integers, as the log lines are: through a float, a
    time within half a microsecond of the next millisecond showed as that one.
    """
    seconds, rest = divmod(time_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rest // 1000)
    if not utc:
        moment = moment.astimezone()
    return moment.isoformat(timespec="milliseconds")


def new_run_id(time_ns: int, utc: bool) -> str:
    """`YYYYMMDD_HHMMSS_<8 hex>`, as the client makes them, for runs the daemon opens."""
    seconds = time_ns // 1_000_000_000
    struct = time.gmtime(seconds) if utc else time.localtime(seconds)
    return f"{time.strftime('%Y%m%d_%H%M%S', struct)}_{secrets.token_hex(4)}"


@dataclass(slots=True)
class RunState:
    app: str
    run_id: str
    start_ns: int
    opened_by_daemon: bool
    end_ns: int | None = None
    end_reason: EndReason | None = None
    pids: set[int] = field(default_factory=set)
    opener_pid: int | None = None
    host: str | None = None
    argv: list[str] | None = None
    client_version: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    records: int = 0
    bytes: int = 0
    files: set[str] = field(default_factory=set)
    dropped_by_client: int = 0
    peers: dict[int, dict[str, Any]] = field(default_factory=dict)
    conns: set[int] = field(default_factory=set)
    tcp: bool = False
    shutdown_seen: bool = False
    # For a run the daemon opened for a client without run ids: `Peer.owner`.
    foreign_owner: str | None = None
    # The producer's own clock: the newest record's time, and the `app:shutdown`'s.
    # Ends come from these, so a run replayed from a spool keeps its real length.
    last_ns: int = 0
    shutdown_ns: int | None = None
    idle_since_ns: int | None = None
    dirty: bool = True
    written_ns: int = 0
    # A container's run (Docker's fluentd driver): container_id, container_name, image.
    container: dict[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.end_ns is None

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> RunState:
        """Rebuild a run from its `metadata.json`, to carry on counting after a restart.

        Raises:
            KeyError, ValueError, TypeError: the metadata is not logd's.
        """
        end = meta.get("end_time")
        run = cls(
            app=str(meta["app"]),
            run_id=str(meta["run_id"]),
            start_ns=iso_to_ns(meta["start_time"]),
            opened_by_daemon=meta.get("opened_by") == "daemon",
            end_ns=iso_to_ns(end) if end else None,
            end_reason=meta.get("end_reason"),
            pids={int(pid) for pid in meta.get("pids") or ()},
            host=meta.get("host"),
            argv=meta.get("argv"),
            client_version=meta.get("client_version"),
            counts={str(k): int(v) for k, v in (meta.get("counts") or {}).items()},
            records=int(meta.get("records") or 0),
            bytes=int(meta.get("bytes") or 0),
            files=set(meta.get("files") or ()),
            dropped_by_client=int(meta.get("dropped_by_client") or 0),
        )
        run.opener_pid = meta.get("opener_pid")
        run.container = {
            key: value for key in CONTAINER_KEYS if isinstance(value := meta.get(key), str)
        }
        run.tcp = not run.pids
        owner = meta.get("foreign_owner")
        run.foreign_owner = owner if isinstance(owner, str) else None
        shutdown = meta.get("shutdown_time")
        if shutdown:
            run.shutdown_ns, run.shutdown_seen = iso_to_ns(shutdown), True
        last = meta.get("last_record_time")
        run.last_ns = iso_to_ns(last) if last else run.start_ns
        return run

    def metadata(self, utc: bool) -> dict[str, Any]:
        """The run's `metadata.json`: what an operator needs without reading the logs."""
        return {
            "run_id": self.run_id,
            "app": self.app,
            "start_time": iso_local(self.start_ns, utc),
            "end_time": iso_local(self.end_ns, utc) if self.end_ns is not None else None,
            "end_reason": self.end_reason,
            "last_record_time": iso_local(self.last_ns, utc) if self.last_ns else None,
            **(
                {"shutdown_time": iso_local(self.shutdown_ns, utc)}
                if self.shutdown_seen and self.shutdown_ns is not None
                else {}
            ),
            "pids": sorted(self.pids),
            "opener_pid": self.opener_pid,
            "host": self.host,
            "argv": self.argv,
            "client_version": self.client_version,
            "opened_by": "daemon" if self.opened_by_daemon else "client",
            **({"foreign_owner": self.foreign_owner} if self.foreign_owner else {}),
            **self.container,
            "records": self.records,
            "counts": dict(sorted(self.counts.items())),
            "bytes": self.bytes,
            "files": sorted(self.files),
            "dropped_by_client": self.dropped_by_client,
            "peers": [self.peers[key] for key in sorted(self.peers)],
        }


@dataclass(slots=True)
class CallState:
    app: str
    call_id: str
    day: str
    start_ns: int
    bot_id: str = "unknown"
    run_id: str | None = None
    session_id: str | None = None
    path: str = ""
    end_ns: int | None = None
    records: int = 0
    errors: int = 0

    def row(self) -> CallRow:
        duration = (self.end_ns - self.start_ns) / 1e6 if self.end_ns is not None else None
        return CallRow(
            app=self.app,
            call_id=self.call_id,
            bot_id=self.bot_id,
            day=self.day,
            path=self.path,
            start_ns=self.start_ns,
            end_ns=self.end_ns,
            duration_ms=duration,
            records=self.records,
            errors=self.errors,
            run_id=self.run_id,
            session_id=self.session_id,
        )


@dataclass(slots=True)
class SessionState:
    app: str
    session_id: str
    first_ns: int
    last_ns: int
    seen_ns: int
    runs: list[str] = field(default_factory=list)
    path: str = ""
    records: int = 0
    end_ns: int | None = None
    end_reason: SessionEnd | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any], seen_ns: int) -> SessionState:
        """Carry on a session the registry already holds (an earlier daemon's, or one
        that ended and is used again), so its counts and runs accumulate.

        Raises:
            KeyError, ValueError, TypeError: the row is not a sessions row.
        """
        end = row.get("end_ts")
        return cls(
            app=str(row["app"]),
            session_id=str(row["session_id"]),
            first_ns=iso_to_ns(row["first_ts"]),
            last_ns=iso_to_ns(row["last_ts"]),
            seen_ns=seen_ns,
            runs=[str(r) for r in row.get("runs") or ()],
            path=str(row.get("path") or ""),
            records=int(row.get("records") or 0),
            end_ns=iso_to_ns(end) if end else None,
            end_reason=row.get("end_reason"),
        )

    def row(self) -> SessionRow:
        return SessionRow(
            app=self.app,
            session_id=self.session_id,
            runs=list(self.runs),
            first_ns=self.first_ns,
            last_ns=self.last_ns,
            end_ns=self.end_ns,
            end_reason=self.end_reason,
            records=self.records,
            path=self.path,
        )
