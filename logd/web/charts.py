"""Charts as plain SVG, drawn here on the server: no script, no vendored library, nothing
the CSP has to allow. Colours come from classes in ``style.css``; every bar is a link.

Pure: `volume.Buckets` in, escaped markup out.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from logd.web.timefmt import iso_utc, local_text
from logd.web.volume import LEVEL_CLASSES, Buckets, Spread

__all__ = ["TYPE_COLOURS", "histogram", "spread_table", "volume_chart"]

WIDTH = 1000
HEIGHT = 90
# Fewer steps than this are drawn as this many slots, so one busy second is not a wall.
MIN_SLOTS = 30
TYPE_COLOURS = 8  # event types get classes t0..t7 (style.css); more share the last
_LEVEL_NAMES = {"debug": "debug", "info": "info", "warning": "warnings", "error": "errors"}
# The legend reads top down, as the bars stack bottom up.


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _time(epoch: float) -> str:
    iso = iso_utc(epoch)
    return f'<time datetime="{iso}" title="{iso}">{esc(local_text(epoch))}</time>'


def _step_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def histogram(
    buckets: Buckets | None,
    narrow: Callable[[str, str], str],
    *,
    what: str = "records",
    series: Sequence[str] = LEVEL_CLASSES,
    classes: Callable[[str], str] = lambda name: f"v-{name}",
    note: str = "",
) -> str:
    """Stacked bars per time step, each a link to ``narrow(since_iso, until_iso)``.

    Args:
        series: stacking order, bottom up; counts of other names are not drawn.
        classes: the CSS class of a series' rectangles.
        note: said under the chart (e.g. that only the newest part was counted).
    """
    if buckets is None or buckets.total == 0:
        return f'<p class="empty chart-empty">No {esc(what)} to chart.</p>'
    n = len(buckets.counts)
    peak = buckets.peak
    bar = WIDTH / max(n, MIN_SLOTS)
    bars = []
    for i, counts in enumerate(buckets.counts):
        total = sum(counts.get(s, 0) for s in series)
        if not total:
            continue
        since = buckets.start + i * buckets.step
        until = since + buckets.step
        x = i * bar
        y = float(HEIGHT)
        rects = []
        for name in series:
            count = counts.get(name, 0)
            if not count:
                continue
            h = HEIGHT * count / peak
            y -= h
            rects.append(
                f'<rect class="{esc(classes(name))}" x="{x + 0.5:.1f}" y="{y:.2f}"'
                f' width="{max(bar - 1, 0.5):.1f}" height="{h:.2f}"></rect>'
            )
        parts = ", ".join(f"{counts[s]} {s}" for s in series if counts.get(s))
        title = f"{iso_utc(since)} to {iso_utc(until)}: {parts}"
        href = narrow(iso_utc(since), iso_utc(until - 0.001))
        bars.append(f'<a href="{esc(href)}"><title>{esc(title)}</title>{"".join(rects)}</a>')
    first, last = buckets.start, buckets.start + n * buckets.step
    totals = {s: sum(c.get(s, 0) for c in buckets.counts) for s in series}
    legend = " ".join(
        f'<span class="key"><span class="swatch {esc(classes(s))}"></span>'
        f"{esc(_LEVEL_NAMES.get(s, s))} {totals[s]:,}</span>"
        for s in series
        if totals[s]
    )
    caption = (
        f"{buckets.total:,} {esc(what)} per {_step_text(buckets.step)}, "
        f"{_time(first)} to {_time(last)} (peak {peak:,}). {legend}"
        + (f' <span class="hint">{esc(note)}</span>' if note else "")
    )
    svg = (
        f'<svg class="volume" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none"'
        f' role="img" aria-label="{esc(what)} over time">{"".join(bars)}</svg>'
    )
    return f'<figure class="chart">{svg}<figcaption>{caption}</figcaption></figure>'


def spread_table(rows: Sequence[Spread]) -> str:
    """p50/p95 of each numeric field per event type, with a bar from p50 to p95."""
    if not rows:
        return ""
    body = []
    for r in rows:
        scale = r.high or 1.0
        x50, x95 = 100 * r.p50 / scale, 100 * r.p95 / scale
        svg = (
            '<svg class="spread" viewBox="0 0 100 10" preserveAspectRatio="none">'
            f'<rect class="spread-range" x="{x50:.1f}" y="2" width="{max(x95 - x50, 0.8):.1f}"'
            f' height="6"></rect><rect class="spread-p50" x="{max(x50 - 0.4, 0):.1f}" y="0"'
            ' width="0.8" height="10"></rect></svg>'
        )
        body.append(
            f"<tr><td>{esc(r.event_type)}</td><td>{esc(r.key)}</td><td>{r.n:,}</td>"
            f"<td>{_number(r.p50)}</td><td>{_number(r.p95)}</td><td>{_number(r.high)}</td>"
            f"<td>{svg}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>" for h in ("Type", "Field", "Events", "p50", "p95", "Max", "p50 → p95")
    )
    return (
        '<table class="spreads"><thead><tr>'
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.2f}"


def volume_chart(
    volume: Mapping[str, Any], narrow: Callable[[str, str], str], what: str = "records"
) -> str:
    """The histogram of a `views` volume map (``start``, ``step_s``, ``counts``)."""
    buckets = Buckets(float(volume["start"]), int(volume["step_s"]), tuple(volume["counts"]))
    note = "" if volume.get("complete", True) else "Counted over the newest 4 MiB only."
    return histogram(buckets, narrow, what=what, note=note)
