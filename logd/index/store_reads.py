"""Queries over the registry tables: what `logd-ctl`, `logd web` and a restart read.

The read half of `RegistryStore`, split from `store.py` along its seam: the same
connection, only SELECTs. The rows come back as dicts (`tables.decode_row`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from logd.index.tables import decode_row, limit_clause, where_clause

__all__ = ["RegistryReads"]


class RegistryReads:
    """Runs, sessions and calls as rows, newest first; `RegistryStore` opens `_conn`."""

    _conn: sqlite3.Connection

    def open_runs(self) -> list[dict[str, Any]]:
        """Runs with no end, oldest first: at start, those whose pids are gone are lost."""
        return self._select(
            "SELECT * FROM runs WHERE end_ts IS NULL ORDER BY start_ts, app, run_id", []
        )

    def list_runs(
        self,
        *,
        app: str | None = None,
        active: bool | None = None,
        limit: int | None = None,
        app_or_container: str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs, newest start first; each is its metadata dict plus path, ``*_ts``, active.

        `app_or_container` matches the app or a container's name (`logd-ctl runs --app`).
        """
        where, params = where_clause([("app", app)], active)
        if app_or_container is not None:
            clause = "(app = ? OR json_extract(extra_json, '$.container_name') = ?)"
            where = f"{where} AND {clause}" if where else f" WHERE {clause}"
            params += [app_or_container, app_or_container]
        order = " ORDER BY start_ts DESC, app, run_id DESC"
        return self._select(
            f"SELECT * FROM runs{where}{order}{limit_clause(limit, params)}", params
        )

    def get_run(self, app: str | None, run_id: str) -> dict[str, Any] | None:
        """One run; with ``app`` None, the newest run of that id in any app."""
        rows = self._select(
            "SELECT * FROM runs WHERE run_id = ? AND (? IS NULL OR app = ?)"
            " ORDER BY start_ts DESC LIMIT 1",
            [run_id, app, app],
        )
        return rows[0] if rows else None

    def list_sessions(
        self, *, app: str | None = None, active: bool | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Sessions, most recently active first."""
        where, params = where_clause([("app", app)], active)
        order = " ORDER BY last_ts DESC, app, session_id"
        sql = f"SELECT * FROM sessions{where}{order}{limit_clause(limit, params)}"
        return self._select(sql, params)

    def get_session(self, app: str, session_id: str) -> dict[str, Any] | None:
        """One session, e.g. to resume its counts after a daemon restart."""
        rows = self._select(
            "SELECT * FROM sessions WHERE app = ? AND session_id = ?", [app, session_id]
        )
        return rows[0] if rows else None

    def list_calls(
        self,
        *,
        app: str | None = None,
        day: str | None = None,
        bot_id: str | None = None,
        active: bool | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Calls, newest start first."""
        where, params = where_clause([("app", app), ("day", day), ("bot_id", bot_id)], active)
        order = " ORDER BY start_ts DESC, app, call_id"
        return self._select(
            f"SELECT * FROM calls{where}{order}{limit_clause(limit, params)}", params
        )

    def get_call(self, app: str, call_id: str, day: str | None = None) -> dict[str, Any] | None:
        """One call; without ``day``, the newest call of that id (ids may recur by day)."""
        rows = self._select(
            "SELECT * FROM calls WHERE app = ? AND call_id = ? AND (? IS NULL OR day = ?)"
            " ORDER BY start_ts DESC LIMIT 1",
            [app, call_id, day, day],
        )
        return rows[0] if rows else None

    def counts(self) -> dict[str, int]:
        """Rows per table, for ``status`` and tests."""
        return {
            table: int(self._conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("runs", "sessions", "calls")
        }

    def _select(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        return [decode_row(row) for row in self._conn.execute(sql, params)]
