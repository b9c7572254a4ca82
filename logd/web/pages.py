"""The HTML pages of apps and runs, each rendered from the data its ``/api`` twin returns
(sessions in `session_pages`, calls in `call_pages`, queries in `query_pages`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from logd.web.charts import volume_chart
from logd.web.data import duration_s
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
    size,
    status_badge,
    table,
    when,
)
from logd.web.logview import level_number

ERROR_LEVEL = 40
RELATED_OPEN = 8
ACTIVE_CHOICES = [("", "any"), ("true", "active"), ("false", "ended")]


def error_page(status: int, message: str) -> str:
    body = f'<p class="error">{esc(message)}</p><p>{a("/", "Back to the apps")}</p>'
    return layout(f"{status}", body)


def error_count(count: int, href: str) -> str:
    """An error count, red and linked to the errors when there are any."""
    return a(href, f"{count:,}", "badge errors") if count else "0"


def apps_page(apps: list[dict[str, Any]]) -> str:
    rows = [
        [
            ident(x["app"], link("runs", query={"app": x["app"]})),
            str(x["runs"]),
            str(x["active_runs"]),
            ident(x["newest_run"], link("runs", x["app"], x["newest_run"]))
            if x["newest_run"]
            else "",
            when(x["newest_start"]),
            a(link("sessions", query={"app": x["app"]}), x["sessions"]),
            a(link("calls", query={"app": x["app"]}), x["calls"]),
            error_count(
                x.get("errors", 0), link("events", query={"app": x["app"], "type": "error:*"})
            ),
        ]
        for x in apps
    ]
    headers = ["App", "Runs", "Active", "Newest run", "Started", "Sessions", "Calls", "Errors"]
    empty = "No apps yet: nothing has logged to this root."
    return layout("Apps", table(headers, rows, empty), active="/")


def active_value(query: Mapping[str, Any]) -> str:
    active = query.get("active")
    return "" if active is None else ("true" if active else "false")


def runs_page(
    rows: list[dict[str, Any]],
    *,
    query: Mapping[str, Any],
    now: float,
    volume: Mapping[str, Any] | None = None,
) -> str:
    """The runs, and above those of one app the volume of its newest runs' records."""
    chart = ""
    if volume is not None:
        chart = volume_chart(volume, _app_narrow(query["app"], rows))
    form = filter_form(
        "/runs",
        [
            field("app", "App", query.get("app"), "all apps"),
            select("active", "Status", ACTIVE_CHOICES, active_value(query)),
        ],
    )
    table_rows = [
        [
            ident(r["app"]),
            ident(r["run_id"], link("runs", r["app"], r["run_id"]), "run-link"),
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
    headers = ["App", "Run", "Status", "Started", "Duration", "Records", "Errors"]
    headers += ["End reason", "PIDs"]
    if any(r.get("container_name") for r in rows):
        # A container's run (Docker's fluentd driver): its name, as `docker ps` shows it.
        headers.insert(2, "Container")
        for row, r in zip(table_rows, rows, strict=True):
            row.insert(2, esc(r.get("container_name") or ""))
    title = f"Runs of {query['app']}" if query.get("app") else "Runs"
    body = chart + form + table(headers, table_rows, "No runs.")
    return layout(title, body, active="/runs")


def _app_narrow(app: str, rows: list[dict[str, Any]]) -> Callable[[str, str], str]:
    """A bar of the app's chart opens the run it falls in, narrowed to the bar's time."""

    def narrow(since: str, until: str) -> str:
        for row in rows:
            started, ended = str(row.get("start_ts") or ""), row.get("end_ts")
            if started <= until and (ended is None or str(ended) >= since):
                return link("runs", app, row["run_id"], query={"since": since, "until": until})
        return link("runs", query={"app": app})

    return narrow


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
            ("Started", when(run.get("start_ts"))),
            ("Ended", when(run.get("end_ts")) or "—"),
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
            ident(s["session_id"], link("sessions", app, s["session_id"])),
            when(s.get("first_ts")),
            str(s.get("records", 0)),
            status_badge(s),
        ]
        for s in data["sessions"]
    ]
    calls = [
        [
            ident(c["call_id"], link("calls", app, c["day"], c["call_id"])),
            ident(c.get("bot_id")),
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
    crumbs = ident(app, link("runs", query={"app": app})) + " / run"
    return layout(f"Run {run_id}", body, active="/runs", crumbs=crumbs)


def _related(what: str, headers: list[str], rows: list[list[str]]) -> str:
    # Open while short, so the way to a failing session is one click; folded when long.
    opened = " open" if 0 < len(rows) <= RELATED_OPEN else ""
    return (
        f'<details class="related"{opened}><summary>{what} in this run ({len(rows)})</summary>'
        f"{table(headers, rows, f'No {what.lower()}.', 'related')}</details>"
    )
