"""The HTML pages of calls: the listing (``?call=`` shows every use of an id) and a call."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from logd.web.html import (
    a,
    badge,
    duration,
    esc,
    facts,
    field,
    filter_form,
    ident,
    layout,
    link,
    log_view,
    select,
    status_badge,
    table,
    when,
)
from logd.web.pages import ACTIVE_CHOICES, active_value

__all__ = ["call_page", "calls_page"]


def calls_page(rows: list[dict[str, Any]], *, query: Mapping[str, Any]) -> str:
    form = filter_form(
        "/calls",
        [
            field("app", "App", query.get("app"), "all apps"),
            field("date", "Date", query.get("date"), "YYYY-MM-DD", "short"),
            field("bot", "Bot", query.get("bot"), "any bot", "short"),
            field("call", "Call id", query.get("call"), "any call", "medium"),
            select("active", "Status", ACTIVE_CHOICES, active_value(query)),
        ],
    )
    table_rows = [
        [
            ident(c["app"]),
            ident(c["call_id"], link("calls", c["app"], c["day"], c["call_id"]), "call-link"),
            ident(c.get("bot_id")),
            status_badge(c),
            when(c.get("start_ts")),
            duration((c["duration_ms"] / 1000) if c.get("duration_ms") is not None else None),
            str(c.get("records", 0)),
            badge(c["errors"], "errors") if c.get("errors") else "0",
            ident(c["session_id"], link("sessions", c["app"], c["session_id"]))
            if c.get("session_id")
            else "",
        ]
        for c in rows
    ]
    headers = ["App", "Call", "Bot", "Status", "Start", "Duration", "Records", "Errors"]
    headers.append("Session")
    title = f"Calls with id {query['call']}" if query.get("call") else "Calls"
    return layout(title, form + table(headers, table_rows, "No calls."), active="/calls")


def call_page(data: dict[str, Any], params: Mapping[str, Any]) -> str:
    c = data["call"]
    app, day, cid = str(c["app"]), str(c["day"]), str(c["call_id"])
    meta = facts(
        [
            ("Status", status_badge(c)),
            ("Bot", esc(c.get("bot_id"))),
            ("Start", when(c.get("start_ts"))),
            ("End", when(c.get("end_ts"))),
            ("Records", f"{c.get('records', 0)} ({c.get('errors', 0)} errors)"),
            (
                "Session",
                ident(c["session_id"], link("sessions", app, c["session_id"]))
                if c.get("session_id")
                else "",
            ),
            ("Run", ident(c["run_id"], link("runs", app, c["run_id"])) if c.get("run_id") else ""),
        ]
    )
    live = a(link("live", query={"app": app, "call": cid}), "Live tail", "button live")
    body = (
        f'<p class="actions">{live}</p>{meta}{_instances(data.get("instances") or [], c)}'
        f"<h2>Log</h2>{log_view(data['log'], link('calls', app, day, cid), params)}"
    )
    return layout(f"Call {cid}", body, active="/calls", crumbs=ident(app))


def _instances(rows: list[dict[str, Any]], shown: Mapping[str, Any]) -> str:
    """Every call that used this id: a bot may reuse an id on another day."""
    if len(rows) < 2:
        return ""
    items = [
        [
            esc(r["day"]) + (" (this one)" if r["day"] == shown["day"] else ""),
            ident(r["call_id"], link("calls", r["app"], r["day"], r["call_id"])),
            ident(r.get("bot_id")),
            when(r.get("start_ts")),
            str(r.get("records", 0)),
            str(r.get("errors", 0)),
        ]
        for r in rows
    ]
    headers = ["Day", "Call", "Bot", "Start", "Records", "Errors"]
    return f"<h2>This id was used {len(rows)} times</h2>" + table(headers, items, "", "instances")
