"""Output status as `logd-ctl status` prints it, and the reconnect backoff."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from logd.ctl import blocks
from logd.forward.sender import backoff_s

ERROR_TIME = datetime(2025, 11, 5, 14, 30, 52, tzinfo=UTC).timestamp()


def output(**over: Any) -> dict[str, Any]:
    out = {
        "name": "agg",
        "type": "fluent",
        "target": "logs.example.com:24224",
        "connected": True,
        "buffered_records": 1234,
        "buffered_bytes": 345_678,
        "sent": 1_000_000,
        "acked": 999_000,
        "retried": 12,
        "dropped": {},
        "last_error": None,
        "last_error_time": None,
    }
    out.update(over)
    return out


def outputs_lines(outputs: list[dict[str, Any]]) -> list[str]:
    lines = blocks.status_block({"version": "0.1.0", "pid": 1, "outputs": outputs})
    start = next(i for i, line in enumerate(lines) if "Outputs:" in line)
    end = next(i for i, line in enumerate(lines) if "Last error:" in line)
    return lines[start:end]


def test_no_outputs_no_section() -> None:
    assert not any("Outputs" in line for line in blocks.status_block({"outputs": []}))


def test_one_healthy_output() -> None:
    assert outputs_lines([output()]) == [
        "     Outputs: agg fluent logs.example.com:24224 connected",
        "              buffered 1,234 (337.6 KiB)",
        "              sent 1,000,000 · acked 999,000 · retried 12",
    ]


def test_failing_output_shows_drops_and_error_within_80_columns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(blocks, "short_time", lambda value: "2025-11-05 14:30:52")
    failing = output(
        name="rsyslog",
        type="syslog",
        target="10.0.0.7:514",
        connected=False,
        buffered_records=0,
        buffered_bytes=0,
        dropped={"buffer-full": 5000, "write-failed": 2},
        last_error="cannot connect to 10.0.0.7:514: Connection refused (ECONNREFUSED) " * 3,
        last_error_time=ERROR_TIME,
    )
    lines = outputs_lines([output(), failing])
    assert all(len(line) <= 80 for line in lines)
    assert lines[3:] == [
        "              rsyslog syslog 10.0.0.7:514 not connected",
        "              buffered 0 (0 B) · dropped 5,002 (buffer-full, write-failed)",
        "              sent 1,000,000 · acked 999,000 · retried 12",
        "              2025-11-05 14:30:52 cannot connect to 10.0.0.7:514: Connection",
        "              refused (ECONNREFUSED) cannot connect to 10.0.0.7:514: …",
    ]


@pytest.mark.parametrize(
    ("attempt", "jitter", "delay"),
    [
        (0, 1.0, 0.5),
        (0, 0.0, 0.25),
        (1, 1.0, 1.0),
        (3, 1.0, 4.0),
        (10, 1.0, 60.0),
        (10, 0.0, 30.0),
        (1000, 0.5, 45.0),
    ],
)
def test_backoff_doubles_to_the_cap_with_jitter(attempt: int, jitter: float, delay: float) -> None:
    assert backoff_s(attempt, 60.0, jitter) == pytest.approx(delay)
