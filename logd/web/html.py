"""HTML building blocks for `logd web`: the layout, escaping, links, tables, the log view.

Everything from the logs is escaped here (`esc`), ids in links are percent-encoded one
segment at a time (`link`), and pages carry no inline script, so the CSP can forbid it.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from logd.web.charts import volume_chart
from logd.web.logview import LEVELS
from logd.web.timefmt import epoch_of, iso_utc, local_text, zone_label

# Input widths as classes: the CSP (no 'unsafe-inline') refuses style="..." attributes.
WIDTHS = ("narrow", "short", "medium", "wide")

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
    """An index time (``2025-11-05T14:30:52.123Z``) as local ``2025-11-05 15:30:52`` in a
    <time>, the ISO UTC form in its tooltip (the page names the zone once, in `layout`)."""
    if not ts:
        return ""
    epoch = epoch_of(ts)
    iso = iso_utc(epoch) if epoch is not None else str(ts)
    shown = local_text(ts, ms=ms)
    return f'<time datetime="{esc(iso)}" title="{esc(iso)}">{esc(shown)}</time>'


def ident(value: Any, href: str | None = None, cls: str = "") -> str:
    """An id that may be 300 characters long: cut with an ellipsis by CSS (``.id``), whole
    in its tooltip, so it cannot push the other columns off the screen."""
    text = esc(value)
    klass = f"id {cls}".strip()
    if href is None:
        return f'<span class="{klass}" title="{text}">{text}</span>'
    return f'<a href="{esc(href)}" class="{klass}" title="{text}">{text}</a>'


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
    """A text input; ``width`` is one of `WIDTHS` (a class, never an inline style)."""
    if width and width not in WIDTHS:
        raise ValueError(f"width must be one of {WIDTHS}")
    klass = f' class="w-{width}"' if width else ""
    return (
        f'<label>{esc(label)} <input name="{esc(name)}" value="{esc(value)}"'
        f' placeholder="{esc(placeholder)}"{klass}></label>'
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
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/style.css">'
        '<script src="/static/app.js" defer></script></head><body>'
        f'<header><a class="brand" href="/">logd</a><nav>{nav}</nav>'
        f'<span class="zone" title="every time on this page; ISO UTC in tooltips">'
        f"times in {esc(zone_label(time.time()))}</span></header>"
        f"<main>{crumbs and f'<p class=crumbs>{crumbs}</p>'}<h1>{esc(title)}</h1>{body}</main>"
        "</body></html>"
    )


def _level_class(level: Any) -> str:
    text = str(level or "").upper()
    return f"lvl-{text.lower()}" if text in LEVELS else "lvl-other"


def highlight(text: str, needle: str | None) -> str:
    """``text`` escaped, each case-insensitive match of ``needle`` in a <mark>."""
    if not needle:
        return esc(text)
    pieces = re.split(f"({re.escape(needle)})", text, flags=re.IGNORECASE)
    return "".join(f"<mark>{esc(p)}</mark>" if i % 2 else esc(p) for i, p in enumerate(pieces))


def record_html(record: Mapping[str, Any], needle: str | None = None) -> str:
    level = record.get("level")
    kind = " event" if record.get("event_type") or record.get("kind") == "event" else ""
    text = highlight(str(record.get("text") or ""), needle)
    return f'<div class="rec {_level_class(level)}{kind}">{text}</div>'


def log_view(log: Mapping[str, Any], base: str, params: Mapping[str, Any]) -> str:
    """Volume chart, filter form, paging links and one page of records (`views._read_log`)."""
    families = [str(f["name"]) for f in log.get("families", [])]
    chosen = log.get("file")
    controls = _file_select(log, families)
    levels = [("", "all levels"), *((lv, f"{lv} and above") for lv in LEVELS)]
    controls.append(select("level", "Level", levels, params.get("level")))
    controls.append(field("q", "Search", params.get("q"), "text in the record"))
    span = {k: params.get(k) for k in ("since", "until")}
    for key, text in span.items():
        if text:
            controls.append(f'<input type="hidden" name="{key}" value="{esc(text)}">')
    keep_file = {"file": params.get("file")}
    clear = _with_query(base, {"file": chosen if len(families) > 1 else None})
    form = (
        f'<form class="filters" method="get" action="{esc(base)}">{"".join(controls)}'
        f'<button type="submit">Filter</button> {a(clear, "Clear")}</form>'
    )
    keep = {k: params.get(k) for k in ("level", "q")} | {"file": chosen} | span
    chart = ""
    volume = log.get("volume")
    if volume is not None:
        narrow_base = {k: params.get(k) for k in ("level", "q")} | keep_file
        chart = volume_chart(
            volume, lambda s, u: _with_query(base, narrow_base | {"since": s, "until": u})
        )
    if span["since"] or span["until"]:
        whole = _with_query(base, {k: params.get(k) for k in ("level", "q")} | keep_file)
        chart += _range_note(span, whole)
    if log.get("missing"):
        return chart + form + '<p class="empty">This file is not there (yet, or any more).</p>'
    nav = []
    if log.get("older") is not None:
        nav.append(a(_with_query(base, keep | {"before": log["older"]}), "← older", "older"))
    if params.get("before") is not None:
        nav.append(a(_with_query(base, keep), "newest →", "newest"))
    records = log.get("records", [])
    start = log.get("older") or 0
    end, total = log.get("before", 0), log.get("size", 0)
    parts = log.get("parts") or []
    across = f" across {len(parts)} parts" if len(parts) > 1 else ""
    summary = f"{len(records)} records, bytes {start:,} to {end:,} of {total:,}{across}"
    if log.get("filtered"):
        summary = (
            f"{len(records)} matching records in {size(log.get('scanned_bytes'))} read{across}"
        )
        if log.get("older") is not None:
            summary += "; older records may match too"
    needle = params.get("q")
    body = "".join(record_html(r, needle) for r in records)
    body = body or '<p class="empty">No records here.</p>'
    pager = f'<div class="pager"><span>{esc(summary)}</span> {" ".join(nav)}</div>'
    return f'{chart}{form}{pager}<div class="log" id="log">{body}</div>{pager}'


def _file_select(log: Mapping[str, Any], families: list[str]) -> list[str]:
    """The file menu: each log with its rotated parts (a family), and each rotated part
    alone; none when there is only one log."""
    chosen = log.get("file")
    if len(families) < 2 and (chosen is None or chosen in families):
        return []
    options = [(n, n) for n in families]
    options += [
        (str(f["name"]), f"only {f['name']} ({size(f['size'])})")
        for f in log["files"]
        if str(f["name"]) not in families
    ]
    return [select("file", "File", options, chosen)]


def _range_note(span: Mapping[str, Any], whole: str) -> str:
    """Which time range a narrowed log shows, and the way back to all of it."""
    shown = " to ".join(
        local_text(span[k], ms=True) if span[k] else ("the start" if k == "since" else "now")
        for k in ("since", "until")
    )
    return f'<p class="range">Only {esc(shown)}. {a(whole, "Whole log", "whole")}</p>'


def _with_query(base: str, query: Mapping[str, Any]) -> str:
    params = {k: v for k, v in query.items() if v not in (None, "")}
    return base + ("?" + urlencode(params) if params else "")
