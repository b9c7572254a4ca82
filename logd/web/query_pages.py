"""Pages that ask rather than browse: the events query, the live tail, the daemon status."""

from __future__ import annotations

import json
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
    layout,
    link,
    size,
    table,
    when,
)


def events_page(rows: list[dict[str, Any]], *, query: Mapping[str, Any], limit: Any) -> str:
    form = filter_form(
        "/events",
        [
            field("type", "Type", query.get("type"), "llm:* or error:runtime"),
            field("since", "Since", query.get("since"), "1h, 30m, 2d or ISO", "10em"),
            field("until", "Until", query.get("until"), "now", "10em"),
            field("app", "App", query.get("app"), "all apps", "9em"),
            field("session", "Session", query.get("session"), "any", "9em"),
            field("run", "Run", query.get("run"), "any", "9em"),
            field("limit", "Limit", limit, "1000", "5em"),
        ],
    )
    table_rows = [
        [
            when(e.get("ts"), ms=True),
            badge(e.get("event_type"), "event-type"),
            esc(e.get("source")),
            f'<span class="msg">{esc(e.get("message"))}</span>',
            f"<code>{esc(json.dumps(e['kv'], ensure_ascii=False, default=str))}</code>"
            if e.get("kv")
            else "",
            esc(e.get("app")),
            a(link("sessions", e["app"], e["session_id"]), e["session_id"])
            if e.get("session_id")
            else "",
        ]
        for e in rows
    ]
    headers = ["Time (UTC)", "Type", "Source", "Message", "Fields", "App", "Session"]
    body = form + table(headers, table_rows, "No events match.", "events")
    return layout("Events", body, active="/events")


def status_page(status: dict[str, Any]) -> str:
    totals = status.get("totals") or {}
    active = status.get("active") or {}
    meta = facts(
        [
            ("Version", esc(status.get("version"))),
            ("PID", esc(status.get("pid"))),
            ("Uptime", duration(status.get("uptime_s"))),
            ("Root", f"<code>{esc(status.get('root'))}</code>"),
            ("Listeners", esc(", ".join(map(str, status.get("listeners") or [])))),
            ("Rate", f"{status.get('rate_1m', 0)} records/s over the last minute"),
            ("Active", esc(", ".join(f"{k}: {v}" for k, v in active.items()))),
            ("Totals", esc(", ".join(f"{k}: {v:,}" for k, v in totals.items()))),
            ("Open files", esc(status.get("open_files"))),
            ("Disk use", size(status.get("disk_bytes"))),
            ("Last error", esc(status.get("last_error") or "none")),
            ("Last cleanup", esc(json.dumps(status.get("last_cleanup"), default=str))),
        ]
    )
    clients = [
        [
            esc(c.get("pid")),
            esc(", ".join(c.get("apps") or [])),
            esc(", ".join(c.get("runs") or [])),
        ]
        for c in status.get("clients") or []
    ]
    body = meta + "<h2>Connected clients</h2>" + table(["PID", "Apps", "Runs"], clients, "None.")
    return layout("Daemon status", body, active="/status")


def live_page(query: Mapping[str, Any]) -> str:
    form = filter_form(
        "/live",
        [
            field("app", "App", query.get("app"), "all apps", "9em"),
            field("run", "Run", query.get("run"), "any", "14em"),
            field("session", "Session", query.get("session"), "any", "10em"),
            field("call", "Call", query.get("call"), "any", "10em"),
            field("events", "Events", query.get("events"), "llm:*", "8em"),
        ],
        button="Follow",
    )
    src = link("api", "tail", query=dict(query))
    body = (
        form + f'<section id="live" data-src="{esc(src)}"><p class="pager">'
        '<span id="live-state" class="state">connecting…</span> '
        '<button type="button" id="live-pause">Pause</button> '
        '<button type="button" id="live-clear">Clear</button> '
        '<label><input type="checkbox" id="live-follow" checked> follow</label></p>'
        '<div class="log" id="tail"></div></section>'
    )
    return layout("Live tail", body, active="/live")
