"""Pages that ask rather than browse: the events query, the live tail, the daemon status."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from logd.web.charts import TYPE_COLOURS, histogram, spread_table
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
    select,
    size,
    table,
    when,
)
from logd.web.timefmt import epoch_of
from logd.web.volume import bucket, spreads


def events_page(
    rows: list[dict[str, Any]],
    *,
    query: Mapping[str, Any],
    limit: Any,
    charted: list[dict[str, Any]] | None = None,
) -> str:
    """The newest events (all, until a filter is given), charted per type over time, with
    p50/p95 of their numeric fields; `charted` (default `rows`) are the events counted."""
    form = filter_form(
        "/events",
        [
            field("type", "Type", query.get("type"), "llm:* or error:runtime"),
            field("since", "Since", query.get("since"), "1h, 30m, 2d or ISO", "medium"),
            field("until", "Until", query.get("until"), "now", "medium"),
            field("app", "App", query.get("app"), "all apps", "medium"),
            field("session", "Session", query.get("session"), "any", "medium"),
            field("run", "Run", query.get("run"), "any", "medium"),
            field("call", "Call", query.get("call"), "any", "medium"),
            select("level", "Records", _RECORD_LEVELS, str(query.get("level") or "").upper()),
            field("limit", "Limit", limit, "200", "narrow"),
        ],
    )
    table_rows = [
        [
            when(e.get("ts"), ms=True),
            badge(e["event_type"], "event-type")
            if e.get("event_type")
            else badge(_record_label(e), "errors"),
            esc(e.get("source")),
            f'<span class="msg">{esc(e.get("message"))}</span>',
            f"<code>{esc(json.dumps(e['kv'], ensure_ascii=False, default=str))}</code>"
            if e.get("kv")
            else "",
            ident(e.get("app")),
            ident(e["session_id"], link("sessions", e["app"], e["session_id"]))
            if e.get("session_id")
            else "",
            ident(e["call_id"], link("calls", query={"app": e["app"], "call": e["call_id"]}))
            if e.get("call_id")
            else "",
        ]
        for e in rows
    ]
    headers = ["Time", "Type", "Source", "Message", "Fields", "App", "Session", "Call"]
    filtered = any(query.get(k) for k in query)
    shown = f"The newest {len(rows):,} events" if len(rows) >= int(limit or 0) else ""
    if not filtered:
        shown = shown or f"All {len(rows):,} events"
        shown += "; type a filter to narrow them."
    note = f'<p class="hint">{esc(shown)}</p>' if shown else ""
    body = (
        form
        + _events_chart(rows if charted is None else charted, query, limit)
        + note
        + table(headers, table_rows, "No events match.", "events")
    )
    return layout("Events", body, active="/events")


# The index keeps every record at ERROR and above (#16 item 11): listed on request.
_RECORD_LEVELS = [
    ("", "events only"),
    ("ERROR", "and ERROR+ records"),
    ("CRITICAL", "and CRITICAL records"),
]


def _record_label(row: Mapping[str, Any]) -> str:
    """A record that is not an event has no type: it shows as its level."""
    return f"({row.get('level') or 'ERROR'})"


def _events_chart(rows: list[dict[str, Any]], query: Mapping[str, Any], limit: Any) -> str:
    if not rows:
        return ""
    counts = Counter(str(e.get("event_type") or _record_label(e)) for e in rows)
    ranked = [t for t, _ in counts.most_common(TYPE_COLOURS - 1)]
    series = [*ranked, "other"] if len(counts) > len(ranked) else ranked
    colour = {name: f"t{i}" for i, name in enumerate(series)}

    def series_of(event: Mapping[str, Any]) -> str:
        name = str(event.get("event_type") or _record_label(event))
        return name if name in colour and name != "other" else "other"

    points = [(epoch_of(e.get("ts")), series_of(e)) for e in rows]
    buckets = bucket((t, name) for t, name in points if t is not None)
    keep = {k: v for k, v in query.items() if k not in ("since", "until")} | {"limit": limit}

    def narrow(since: str, until: str) -> str:
        return link("events", query=keep | {"since": since, "until": until})

    chart = histogram(
        buckets,
        narrow,
        what="events",
        series=list(reversed(series)),
        classes=lambda name: f"v-{colour[name]}",
    )
    return chart + spread_table(spreads(rows))


def status_page(
    status: dict[str, Any] | None,
    *,
    timeline: list[dict[str, Any]] | None = None,
    problem: str | None = None,
) -> str:
    """The daemon's status (or why it could not be asked) and its own timeline."""
    body = f'<p class="error">{esc(problem)}</p>' if problem else ""
    if status is not None:
        body += _status_facts(status)
    rows = [
        [
            when(e.get("ts"), ms=True),
            badge(e.get("event_type"), _timeline_kind(str(e.get("event_type")))),
            f'<span class="msg">{esc(e.get("message"))}</span>',
            f"<code>{esc(json.dumps(e['kv'], ensure_ascii=False, default=str))}</code>"
            if e.get("kv")
            else "",
        ]
        for e in timeline or []
    ]
    more = a(link("events", query={"app": "logd"}), "all of them on the events page")
    body += (
        f'<h2 id="timeline">Timeline of the daemon</h2><p class="hint">What logd itself did and'
        f" saw, newest first ({more}).</p>"
        + table(["Time", "Event", "Message", "Fields"], rows, "Nothing yet.", "daemon-timeline")
    )
    return layout("Daemon status", body, active="/status")


def _timeline_kind(event_type: str) -> str:
    if event_type.startswith("error:"):
        return "errors"
    return "event-type"


def _status_facts(status: dict[str, Any]) -> str:
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
    return meta + "<h2>Connected clients</h2>" + table(["PID", "Apps", "Runs"], clients, "None.")


def live_page(query: Mapping[str, Any]) -> str:
    form = filter_form(
        "/live",
        [
            field("app", "App", query.get("app"), "all apps", "medium"),
            field("run", "Run", query.get("run"), "any", "wide"),
            field("session", "Session", query.get("session"), "any", "medium"),
            field("call", "Call", query.get("call"), "any", "medium"),
            field("events", "Events", query.get("events"), "llm:*", "short"),
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
