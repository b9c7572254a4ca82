"""The pure parts of `logd web`: volume buckets, percentiles, times, rotated parts read as
one, the time-narrowed page, SVG charts and highlighting."""

from __future__ import annotations

import gzip
from datetime import timedelta, timezone

import pytest

from logd.web.charts import histogram, spread_table
from logd.web.html import highlight
from logd.web.logview import BytesSource, Span, read_page
from logd.web.parts import ChainSource, Part, families, gzip_size
from logd.web.timefmt import clock_epoch, epoch_of, iso_utc, local_text, zone_label
from logd.web.timespan import offset_until, record_epoch
from logd.web.volume import bucket, level_class, spreads

T0 = 1_762_353_000.0  # 2025-11-05T14:30:00Z


def test_buckets_take_a_round_step_and_keep_every_point() -> None:
    points = [(T0 + i * 7.0, level_class(lv)) for i, lv in enumerate([20, 40, 30, 10] * 100)]
    found = bucket(points, max_buckets=60)
    assert found is not None
    span = points[-1][0] - points[0][0]
    assert found.step in (60, 120)
    assert len(found.counts) <= 60
    assert found.start <= T0 < found.start + found.step
    assert found.start % found.step == 0, "aligned to the step"
    assert found.total == len(points)
    assert span / found.step <= 60
    assert sum(c.get("error", 0) for c in found.counts) == 100
    assert bucket([]) is None


def test_level_classes() -> None:
    assert [level_class(n) for n in (0, 5, 10, 20, 25, 30, 40, 50)] == [
        "info",
        "debug",
        "debug",
        "info",
        "info",
        "warning",
        "error",
        "error",
    ]


def test_spreads_are_nearest_rank_percentiles_of_numeric_fields() -> None:
    events = [
        {"event_type": "llm:response", "kv": {"latency_ms": 100 * n, "model": "m", "ok": True}}
        for n in range(1, 21)
    ]
    events.append({"event_type": "app:start", "kv": {}})
    (row,) = spreads(events)
    assert (row.event_type, row.key, row.n) == ("llm:response", "latency_ms", 20)
    assert (row.p50, row.p95, row.high) == (1000, 1900, 2000)
    table = spread_table([row])
    assert "<td>1,000</td>" in table
    assert "<td>1,900</td>" in table


def test_times_are_local_with_iso_utc_beside_them() -> None:
    berlin = timezone(timedelta(hours=1), "CET")
    assert local_text("2025-11-05T14:30:52.123Z", tz=berlin) == "2025-11-05 15:30:52"
    assert local_text("2025-11-05T14:30:52.123Z", ms=True, tz=berlin) == "2025-11-05 15:30:52,123"
    assert local_text("not a time") == "not a time"
    assert zone_label(T0, tz=berlin) == "CET (UTC+01:00)"
    assert iso_utc(epoch_of("2025-11-05T15:30:52.123+01:00") or 0) == "2025-11-05T14:30:52.123Z"
    assert clock_epoch("2025-11-05 14:30:52,123", utc=True) == pytest.approx(T0 + 52.123)
    assert clock_epoch("garbage", utc=True) is None


def test_rotated_parts_are_ordered_oldest_first() -> None:
    names = ["main.log", "main.log.1.gz", "agent.log", "main.log.2.gz", "main.log.10.gz"]
    assert families(names) == {
        "agent.log": ["agent.log"],
        "main.log": ["main.log.10.gz", "main.log.2.gz", "main.log.1.gz", "main.log"],
    }


def _part(name: str, data: bytes) -> Part:
    if name.endswith(".gz"):
        packed = gzip.compress(data)
        return Part(name, gzip_size(packed), lambda: BytesSource(gzip.decompress(packed)))
    return Part(name, len(data), lambda: BytesSource(data))


def _run_line(second: int, msg: str, level: str = "INFO") -> bytes:
    return f"[] - 2025-11-05 14:30:{second:02d},000 - app - {level} - {msg}\n".encode()


def test_a_chain_reads_across_parts_and_pages_back_through_them() -> None:
    old = b"".join(_run_line(s, f"old {s}") for s in range(0, 20))
    new = b"".join(_run_line(s, f"new {s}") for s in range(20, 40))
    chain = ChainSource([_part("main.log.1.gz", old), _part("main.log", new)])
    assert chain.size == len(old) + len(new)
    assert chain.pread(10, len(old) - 5) == (old + new)[len(old) - 5 : len(old) + 5]
    assert chain.part_at(0) == "main.log.1.gz"
    assert chain.part_at(len(old)) == "main.log"
    found = read_page(chain, "run", text="OLD 3")
    assert [r["msg"] for r in found["records"]] == ["old 3"]
    page = read_page(chain, "run", page_bytes=256)
    assert page["records"][-1]["msg"] == "new 39"
    assert page["older"] is not None


def test_a_time_span_reads_only_its_records_and_starts_at_them() -> None:
    data = b"".join(_run_line(s, f"rec {s}", "ERROR" if s % 10 == 0 else "INFO") for s in range(60))
    source = BytesSource(data * 1)

    def epoch(fields: dict[str, object]) -> float | None:
        return record_epoch(dict(fields), "run", True)

    span = Span(T0 + 10, T0 + 19.5, epoch)
    page = read_page(source, "run", span=span, page_bytes=512)
    assert [r["msg"] for r in page["records"]] == [f"rec {s}" for s in range(10, 20)]
    assert page["older"] is None, "nothing older can be in the range"
    start = offset_until(source, "run", epoch, T0 + 19.5)
    assert 0 < start <= len(data)
    assert data[:start].count(b"\n") >= 20, "no record of the range is after the start"


def test_charts_are_links_with_escaped_titles_and_no_inline_style() -> None:
    found = bucket([(T0, "error"), (T0 + 90, "info"), (T0 + 95, "info")])
    svg = histogram(found, lambda s, u: f"/runs/a?since={s}&until={u}")
    assert svg.count("<a href=") == 3, "one link per non-empty step"
    assert "since=2025-11-05T14:30:00.000Z&amp;until=" in svg
    assert 'class="v-error"' in svg
    assert "style=" not in svg
    assert "No records" in histogram(None, lambda s, u: "")


def test_highlight_escapes_and_marks_every_match() -> None:
    marked = highlight("<b>Needle</b> and needle", "needle")
    assert marked == "&lt;b&gt;<mark>Needle</mark>&lt;/b&gt; and <mark>needle</mark>"
    assert highlight("a.b", ".") == "a<mark>.</mark>b"
