"""One read-only connection to ``index.sqlite3``, for readers beside the daemon.

`logd web` and the control socket's queries read through it: ``mode=ro`` cannot write,
and without a ``-shm`` file (no daemon holds the index open, or a full disk kept it from
opening it) ``immutable=1`` reads the file as it is instead of creating one. So reading
never depends on the disk having room.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from logd.index.events import EventIndex
from logd.index.store import RegistryStore

__all__ = ["ReadOnlyIndex"]

BUSY_TIMEOUT_S = 5.0


class _ReadOnlyRegistry(RegistryStore):
    """The registry's own queries (so replies keep `logd-ctl --json` shapes) on a read-only
    connection; its constructor would run CREATE TABLE, so it is replaced."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn


class _ReadOnlyEvents(EventIndex):
    """The event index's query on a read-only connection (no CREATE TABLE)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn


class ReadOnlyIndex:
    """One read-only connection to ``index.sqlite3``, for one request in one thread.

    A root without an index (no daemon ran there yet) answers every listing with nothing.

    Resource handling: use as a context manager; the connection closes on exit.
    """

    def __init__(self, root: Path) -> None:
        db = root / "index.sqlite3"
        self.conn: sqlite3.Connection | None = None
        if not db.is_file():
            return
        uri = f"file:{quote(os.fspath(db.absolute()))}?mode=ro"
        # With the daemon up, its WAL and -shm exist and mode=ro shares them safely.
        # Without them, mode=ro would create both: immutable=1 reads the file as it is.
        # So it does when a full disk kept the daemon from sizing its -shm (nobody
        # writes the file then), unless a WAL holds rows immutable=1 would not see.
        conn = None
        if Path(f"{db}-shm").exists():
            conn = _connect(uri)
            try:
                conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            except sqlite3.OperationalError:
                conn.close()
                if _size(Path(f"{db}-wal")):
                    raise
                conn = None
        if conn is None:
            conn = _connect(uri + "&immutable=1")
        self.conn = conn
        self.registry = _ReadOnlyRegistry(conn)
        self.events = _ReadOnlyEvents(conn)

    def __enter__(self) -> ReadOnlyIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()

    def has_table(self, name: str) -> bool:
        if self.conn is None:
            return False
        row = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None


def _connect(uri: str) -> sqlite3.Connection:
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
