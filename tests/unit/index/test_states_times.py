"""Metadata times (`iso_local`) name the same millisecond as the log lines do."""

from __future__ import annotations

from datetime import datetime

from hypothesis import example, given, settings
from hypothesis import strategies as st

from logd.index.eventline import iso_utc_ms
from logd.index.states import iso_local
from logd.index.tables import iso_to_ns


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10**9))  # 1970..2100
@example(1_764_939_645_304_999_999)  # a run's shutdown that metadata called .305
@example(1_764_939_645_999_999_999)
@settings(max_examples=500)
def test_iso_local_truncates_to_the_millisecond_of_the_lines(ts_ns: int) -> None:
    utc = iso_local(ts_ns, utc=True)
    assert utc.replace("+00:00", "Z") == iso_utc_ms(ts_ns)
    local = iso_local(ts_ns)
    assert datetime.fromisoformat(local) == datetime.fromisoformat(utc)
    assert iso_to_ns(local) == ts_ns // 1_000_000 * 1_000_000
