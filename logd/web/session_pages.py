"""The HTML pages of sessions: the listing, a session's log, and its timeline."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from logd.web.html import (
    a,
    badge,
    esc,
    facts,
    field,
    filter_form,
    ident,
    layout,
    link,
    log_view,
    record_html,
    select,
    status_badge,
    table,
    when,
)
from logd.web.pages import ACTIVE_CHOICES, active_value, error_count

__all__ = ["session_page", "sessions_page", "timeline_page"]


def sessions_page(rows: list[dict[str, Any]], *, query: Mapping[str, Any]) -> str:
    form = filter_form(
        "/sessions",
        [
            field("app", "App", query.get("app"), "all apps"),
            select("active", "Status", ACTIVE_CHOICES, active_value(query)),
        ],
    )
    table_rows = [
        [
            ident(s["app"]),
            ident(s["session_id"], link("sessions", s["app"], s["session_id"]), "session-link"),
            status_badge(s),
            when(s.get("first_ts")),
            when(s.get("last_ts")),
            f"{s.get('records', 0):,}",
            error_count(
                s.get("errors", 0),
                link(
                    "events",
                    query={"app": s["app"], "session": s["session_id"], "type": "error:*"},
                ),
            ),
            " ".join(ident(r, link("runs", s["app"], r)) for r in (s.get("runs") or [])[:3]),
            a(link("sessions", s["app"], s["session_id"], "timeline"), "timeline"),
        ]
        for s in rows
    ]
    headers = ["App", "Session", "Status", "First", "Last", "Records", "Errors", "Runs", ""]
    return layout("Sessions", form + table(headers, table_rows, "No sessions."), active="/sessions")


def _session_actions(app: str, session_id: str) -> str:
    return " ".join(
        [
            a(link("sessions", app, session_id), "Log", "button"),
            a(link("sessions", app, session_id, "timeline"), "Timeline", "button"),
            a(link("live", query={"app": app, "session": session_id}), "Live tail", "button live"),
            a(link("events", query={"app": app, "session": session_id}), "Events", "button"),
        ]
    )


def session_page(data: dict[str, Any], params: Mapping[str, Any]) -> str:
    s = data["session"]
    app, sid = str(s["app"]), str(s["session_id"])
    meta = facts(
        [
            ("Status", status_badge(s)),
            ("First record", when(s.get("first_ts"))),
            ("Last record", when(s.get("last_ts"))),
            ("Records", f"{s.get('records', 0):,}"),
            (
                "Errors",
                error_count(
                    data.get("errors", 0),
                    link("events", query={"app": app, "session": sid, "type": "error:*"}),
                ),
            ),
            ("Runs", " ".join(ident(r, link("runs", app, r)) for r in s.get("runs") or [])),
        ]
    )
    body = (
        f'<p class="actions">{_session_actions(app, sid)}</p>{meta}<h2>Log</h2>'
        f"{log_view(data['log'], link('sessions', app, sid), params)}"
    )
    crumbs = ident(app, link("sessions", query={"app": app})) + " / session"
    return layout(f"Session {sid}", body, active="/sessions", crumbs=crumbs)


def timeline_page(data: dict[str, Any]) -> str:
    s = data["session"]
    app, sid = str(s["app"]), str(s["session_id"])
    rows = [
        [
            when(e.get("time"), ms=True),
            badge(e["kind"], e["kind"]),
            esc(e.get("level")),
            esc(e.get("logger")),
            esc(e.get("event_type")),
            record_html({**e, "text": _entry_text(e)}),
        ]
        for e in data["entries"]
    ]
    older = ""
    if data.get("older") is not None:
        href = link("sessions", app, sid, "timeline", query={"before": data["older"]})
        older = f'<p class="pager">{a(href, "← older", "older")}</p>'
    body = (
        f'<p class="actions">{_session_actions(app, sid)}</p>'
        '<p class="hint">Records of the session file and events of the index, by time.</p>'
        + table(
            ["Time", "Kind", "Level", "Source", "Event", "Message"],
            rows,
            "Nothing in this session.",
            "timeline",
        )
        + older
    )
    return layout(f"Timeline of {sid}", body, active="/sessions", crumbs=esc(app))


def _entry_text(entry: Mapping[str, Any]) -> str:
    parts = [str(entry.get("msg") or "")]
    if entry.get("kv"):
        parts.append(json.dumps(entry["kv"], ensure_ascii=False, default=str))
    text = " ".join(p for p in parts if p)
    if entry.get("exc"):
        text += "\n" + str(entry["exc"]).rstrip()
    return text
