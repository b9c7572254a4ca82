"""HTML building blocks for `logd web`: the layout, escaping, links, tables, the log view.

Everything from the logs is escaped here (`esc`), ids in links are percent-encoded one
segment at a time (`link`), and pages carry no inline script, so the CSP can forbid it.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from logd.web.logview import LEVELS

_NAV = (
    ("/", "Apps"),
    ("/runs", "Runs"),
    ("/sessions", "Sessions"),
    ("/calls", "Calls"),
    ("/events", "Events"),
    ("/live", "Live"),
    ("/status", "Status"),
)


def esc(value: Any) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


def link(*segments: str, query: Mapping[str, Any] | None = None) -> str:
    """``/runs/<app>/<run>``: each id its own percent-encoded segment (``/`` -> ``%2F``)."""
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    params = {k: v for k, v in (query or {}).items() if v not in (None, "", False)}
    return path + ("?" + urlencode(params) if params else "")


def a(href: str, text: Any, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<a href="{esc(href)}"{klass}>{esc(text)}</a>'


def badge(text: Any, kind: str) -> str:
    return f'<span class="badge {esc(kind)}">{esc(text)}</span>'


def status_badge(row: Mapping[str, Any]) -> str:
    if row.get("active"):
        return badge("active", "active")
    reason = row.get("end_reason")
    return badge("ended", "ended") + (" " + badge(reason, f"reason-{reason}") if reason else "")


def when(ts: Any, *, ms: bool = False) -> str:
    """An index time (``2025-11-05T14:30:52.123Z``) as ``2025-11-05 14:30:52`` in a <time>."""
    if not ts:
        return ""
    text = str(ts)
    short = text.replace("T", " ")[: 23 if ms else 19]
    return f'<time datetime="{esc(text)}" title="{esc(text)} (UTC)">{esc(short)}</time>'


def duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def size(n: Any) -> str:
    if not isinstance(n, int):
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str, cls: str = "") -> str:
    """A table of already-escaped cells, or a note when there is nothing to show."""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="empty">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def facts(pairs: Iterable[tuple[str, str]]) -> str:
    """A definition list of label / already-escaped value."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in pairs)
    return f'<dl class="facts">{items}</dl>'


def field(name: str, label: str, value: Any, placeholder: str = "", width: str = "") -> str:
    style = f' style="width:{esc(width)}"' if width else ""
    return (
        f'<label>{esc(label)} <input name="{esc(name)}" value="{esc(value)}"'
        f' placeholder="{esc(placeholder)}"{style}></label>'
    )


def select(name: str, label: str, options: Sequence[tuple[str, str]], chosen: Any) -> str:
    opts = "".join(
        f'<option value="{esc(v)}"{" selected" if v == (chosen or "") else ""}>{esc(t)}</option>'
        for v, t in options
    )
    return f'<label>{esc(label)} <select name="{esc(name)}">{opts}</select></label>'


def filter_form(action: str, parts: list[str], button: str = "Show") -> str:
    """A GET form of filter fields with its submit button and a link that clears it."""
    return (
        f'<form class="filters" method="get" action="{esc(action)}">{"".join(parts)}'
        f'<button type="submit">{esc(button)}</button> {a(action, "Clear")}</form>'
    )


def layout(title: str, body: str, *, active: str = "", crumbs: str = "") -> str:
    nav = "".join(
        f'<a href="{href}"{" class=current" if href == active else ""}>{name}</a>'
        for href, name in _NAV
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · logd</title>"
        '<link rel="stylesheet" href="/static/style.css">'
        '<script src="/static/app.js" defer></script></head><body>'
        f'<header><a class="brand" href="/">logd</a><nav>{nav}</nav></header>'
        f"<main>{crumbs and f'<p class=crumbs>{crumbs}</p>'}<h1>{esc(title)}</h1>{body}</main>"
        "</body></html>"
    )


def _level_class(level: Any) -> str:
    text = str(level or "").upper()
    return f"lvl-{text.lower()}" if text in LEVELS else "lvl-other"


def record_html(record: Mapping[str, Any]) -> str:
    level = record.get("level")
    kind = " event" if record.get("event_type") or record.get("kind") == "event" else ""
    return f'<div class="rec {_level_class(level)}{kind}">{esc(record.get("text"))}</div>'


def log_view(log: Mapping[str, Any], base: str, params: Mapping[str, Any]) -> str:
    """Filter form, paging links and one page of records (see `logview.read_page`)."""
    files = [str(f["name"]) for f in log.get("files", [])]
    chosen = log.get("file")
    controls = []
    if len(files) > 1:
        sizes = {str(f["name"]): f["size"] for f in log["files"]}
        options = [(n, f"{n} ({size(sizes[n])})") for n in files]
        controls.append(select("file", "File", options, chosen))
    levels = [("", "all levels"), *((lv, f"{lv} and above") for lv in LEVELS)]
    controls.append(select("level", "Level", levels, params.get("level")))
    controls.append(field("q", "Search", params.get("q"), "text in the record"))
    clear = _with_query(base, {"file": chosen if len(files) > 1 else None})
    form = (
        f'<form class="filters" method="get" action="{esc(base)}">{"".join(controls)}'
        f'<button type="submit">Filter</button> {a(clear, "Clear")}</form>'
    )
    if log.get("missing"):
        return form + '<p class="empty">This file is not there (yet, or any more).</p>'
    keep = {k: params.get(k) for k in ("level", "q")} | {"file": chosen}
    nav = []
    if log.get("older") is not None:
        nav.append(a(_with_query(base, keep | {"before": log["older"]}), "← older", "older"))
    if params.get("before") is not None:
        nav.append(a(_with_query(base, keep), "newest →", "newest"))
    records = log.get("records", [])
    start = log.get("older") or 0
    end, total = log.get("before", 0), log.get("size", 0)
    summary = f"{len(records)} records, bytes {start:,} to {end:,} of {total:,}"
    if log.get("filtered"):
        summary = f"{len(records)} matching records in {size(log.get('scanned_bytes'))} read"
    body = "".join(record_html(r) for r in records) or '<p class="empty">No records here.</p>'
    pager = f'<div class="pager"><span>{esc(summary)}</span> {" ".join(nav)}</div>'
    return f'{form}{pager}<div class="log" id="log">{body}</div>{pager}'


def _with_query(base: str, query: Mapping[str, Any]) -> str:
    params = {k: v for k, v in query.items() if v not in (None, "")}
    return base + ("?" + urlencode(params) if params else "")
