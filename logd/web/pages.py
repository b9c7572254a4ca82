"""The HTML pages of `logd web`, each rendered from the data its ``/api`` twin returns."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from logd.web.data import duration_s
from logd.web.html import (
    a,
    badge,
    duration,
    esc,
    facts,
    field,
    filter_form,
    layout,
    link,
    log_view,
    record_html,
    select,
    size,
    status_badge,
    table,
    when,
)
from logd.web.logview import level_number

ERROR_LEVEL = 40
RELATED_OPEN = 8
_ACTIVE = [("", "any"), ("true", "active"), ("false", "ended")]


def error_page(status: int, message: str) -> str:
    body = f'<p class="error">{esc(message)}</p><p>{a("/", "Back to the apps")}</p>'
    return layout(f"{status}", body)


def apps_page(apps: list[dict[str, Any]]) -> str:
    rows = [
        [
            a(link("runs", query={"app": x["app"]}), x["app"]),
            str(x["runs"]),
            str(x["active_runs"]),
            a(link("runs", x["app"], x["newest_run"]), x["newest_run"]) if x["newest_run"] else "",
            when(x["newest_start"]),
            a(link("sessions", query={"app": x["app"]}), x["sessions"]),
            a(link("calls", query={"app": x["app"]}), x["calls"]),
        ]
        for x in apps
    ]
    headers = ["App", "Runs", "Active", "Newest run", "Started", "Sessions", "Calls"]
    empty = "No apps yet: nothing has logged to this root."
    return layout("Apps", table(headers, rows, empty), active="/")


def _active_value(query: Mapping[str, Any]) -> str:
    active = query.get("active")
    return "" if active is None else ("true" if active else "false")


def runs_page(rows: list[dict[str, Any]], *, query: Mapping[str, Any], now: float) -> str:
    form = filter_form(
        "/runs",
        [
            field("app", "App", query.get("app"), "all apps"),
            select("active", "Status", _ACTIVE, _active_value(query)),
        ],
    )
    table_rows = [
        [
            esc(r["app"]),
            a(link("runs", r["app"], r["run_id"]), r["run_id"], "run-link"),
            status_badge(r),
            when(r.get("start_ts")),
            duration(duration_s(r, now)),
            f"{r.get('records', 0):,}",
            badge(errors, "errors") if (errors := _errors(r)) else "0",
            esc(r.get("end_reason") or ""),
            esc(", ".join(str(p) for p in r.get("pids") or [])),
        ]
        for r in rows
    ]
    headers = ["App", "Run", "Status", "Started (UTC)", "Duration", "Records", "Errors"]
    headers += ["End reason", "PIDs"]
    if any(r.get("container_name") for r in rows):
        # A container's run (Docker's fluentd driver): its name, as `docker ps` shows it.
        headers.insert(2, "Container")
        for row, r in zip(table_rows, rows, strict=True):
            row.insert(2, esc(r.get("container_name") or ""))
    title = f"Runs of {query['app']}" if query.get("app") else "Runs"
    return layout(title, form + table(headers, table_rows, "No runs."), active="/runs")


def _container(run: Mapping[str, Any]) -> str:
    """A container's name, then its id (short, as `docker ps` shows it) and image."""
    parts = [f"<strong>{esc(run.get('container_name') or '?')}</strong>"]
    if run.get("container_id"):
        parts.append(
            f'<code title="{esc(run["container_id"])}">{esc(run["container_id"][:12])}</code>'
        )
    if run.get("image"):
        parts.append(f"image {esc(run['image'])}")
    return " ".join(parts)


def _errors(run: Mapping[str, Any]) -> int:
    counts = run.get("counts") or {}
    return sum(int(n) for level, n in counts.items() if level_number(level) >= ERROR_LEVEL)


def run_page(data: dict[str, Any], params: Mapping[str, Any], now: float) -> str:
    run = data["run"]
    app, run_id = str(run["app"]), str(run["run_id"])
    counts = ", ".join(f"{k}: {v}" for k, v in (run.get("counts") or {}).items())
    actions = " ".join(
        [
            a(link("live", query={"app": app, "run": run_id}), "Live tail", "button live"),
            a(link("events", query={"app": app, "run": run_id}), "Events", "button"),
            a(link("api", "runs", app, run_id), "JSON", "button"),
        ]
    )
    meta = facts(
        [
            ("Status", status_badge(run)),
            ("Started", esc(run.get("start_time"))),
            ("Ended", esc(run.get("end_time") or "—")),
            ("Duration", duration(duration_s(run, now))),
            ("Records", f"{run.get('records', 0):,} ({esc(counts)})"),
            ("Bytes", size(run.get("bytes"))),
            ("PIDs", esc(", ".join(str(p) for p in run.get("pids") or []))),
            ("Host", esc(run.get("host"))),
            ("Command", f"<code>{esc(' '.join(map(str, run.get('argv') or [])))}</code>"),
            ("Client", esc(run.get("client_version"))),
            ("Opened by", esc(run.get("opened_by"))),
            *(
                [("Container", _container(run))]
                if run.get("container_id") or run.get("container_name")
                else []
            ),
            ("Folder", f"<code>{esc(run.get('path'))}</code>"),
        ]
    )
    base = link("runs", app, run_id)
    files = " · ".join(
        a(link("runs", app, run_id, query={"file": f["name"]}), f"{f['name']} ({size(f['size'])})")
        for f in data["log"].get("files", [])
    )
    sessions = [
        [
            a(link("sessions", app, s["session_id"]), s["session_id"]),
            when(s.get("first_ts")),
            str(s.get("records", 0)),
            status_badge(s),
        ]
        for s in data["sessions"]
    ]
    calls = [
        [
            a(link("calls", app, c["day"], c["call_id"]), c["call_id"]),
            esc(c.get("bot_id")),
            when(c.get("start_ts")),
            str(c.get("records", 0)),
            str(c.get("errors", 0)),
        ]
        for c in data["calls"]
    ]
    body = (
        f'<p class="actions">{actions}</p>{meta}'
        f'<h2>Files</h2><p class="files">{files or "none"}</p>'
        + _related("Sessions", ["Session", "First", "Records", "Status"], sessions)
        + _related("Calls", ["Call", "Bot", "Start", "Records", "Errors"], calls)
        + f"<h2>Log</h2>{log_view(data['log'], base, params)}"
    )
    crumbs = a(link("runs", query={"app": app}), app) + " / run"
    return layout(f"Run {run_id}", body, active="/runs", crumbs=crumbs)


def _related(what: str, headers: list[str], rows: list[list[str]]) -> str:
    # Open while short, so the way to a failing session is one click; folded when long.
    opened = " open" if 0 < len(rows) <= RELATED_OPEN else ""
    return (
        f'<details class="related"{opened}><summary>{what} in this run ({len(rows)})</summary>'
        f"{table(headers, rows, f'No {what.lower()}.', 'related')}</details>"
    )


def sessions_page(rows: list[dict[str, Any]], *, query: Mapping[str, Any]) -> str:
    form = filter_form(
        "/sessions",
        [
            field("app", "App", query.get("app"), "all apps"),
            select("active", "Status", _ACTIVE, _active_value(query)),
        ],
    )
    table_rows = [
        [
            esc(s["app"]),
            a(link("sessions", s["app"], s["session_id"]), s["session_id"], "session-link"),
            status_badge(s),
            when(s.get("first_ts")),
            when(s.get("last_ts")),
            f"{s.get('records', 0):,}",
            " ".join(a(link("runs", s["app"], r), r) for r in (s.get("runs") or [])[:3]),
            a(link("sessions", s["app"], s["session_id"], "timeline"), "timeline"),
        ]
        for s in rows
    ]
    headers = ["App", "Session", "Status", "First", "Last", "Records", "Runs", ""]
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
            ("Runs", " ".join(a(link("runs", app, r), r) for r in s.get("runs") or [])),
        ]
    )
    body = (
        f'<p class="actions">{_session_actions(app, sid)}</p>{meta}<h2>Log</h2>'
        f"{log_view(data['log'], link('sessions', app, sid), params)}"
    )
    crumbs = a(link("sessions", query={"app": app}), app) + " / session"
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
            ["Time (UTC)", "Kind", "Level", "Source", "Event", "Message"],
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


def calls_page(rows: list[dict[str, Any]], *, query: Mapping[str, Any]) -> str:
    form = filter_form(
        "/calls",
        [
            field("app", "App", query.get("app"), "all apps"),
            field("date", "Date", query.get("date"), "YYYY-MM-DD", "8em"),
            field("bot", "Bot", query.get("bot"), "any bot", "8em"),
            select("active", "Status", _ACTIVE, _active_value(query)),
        ],
    )
    table_rows = [
        [
            esc(c["app"]),
            a(link("calls", c["app"], c["day"], c["call_id"]), c["call_id"]),
            esc(c.get("bot_id")),
            status_badge(c),
            when(c.get("start_ts")),
            duration((c["duration_ms"] / 1000) if c.get("duration_ms") is not None else None),
            str(c.get("records", 0)),
            badge(c["errors"], "errors") if c.get("errors") else "0",
            a(link("sessions", c["app"], c["session_id"]), c["session_id"])
            if c.get("session_id")
            else "",
        ]
        for c in rows
    ]
    headers = ["App", "Call", "Bot", "Status", "Start", "Duration", "Records", "Errors"]
    headers.append("Session")
    return layout("Calls", form + table(headers, table_rows, "No calls."), active="/calls")


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
                a(link("sessions", app, c["session_id"]), c["session_id"])
                if c.get("session_id")
                else "",
            ),
            ("Run", a(link("runs", app, c["run_id"]), c["run_id"]) if c.get("run_id") else ""),
        ]
    )
    live = a(link("live", query={"app": app, "call": cid}), "Live tail", "button live")
    body = (
        f'<p class="actions">{live}</p>{meta}<h2>Log</h2>'
        f"{log_view(data['log'], link('calls', app, day, cid), params)}"
    )
    return layout(f"Call {cid}", body, active="/calls", crumbs=esc(app))
