"""The client's per-record fast paths against the plain rules they shortcut (no sockets).

`take_run()` against a record-by-record loop, `Outbox.put()`'s spool trigger against the
3/4 rule, the handler's own size estimate and plain flag, and `LogdHandler.handle()`
filters without the handler lock.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from logd_client import handler, recordmap
from logd_client.batch import RECORD_OVERHEAD_BYTES, Item, approx_bytes, take_run
from logd_client.intake import DAMAGED_SPOOL, QUEUE_FULL, drop_message
from logd_client.outbox import DONT_SLEEP, Outbox
from logd_client.spooler import Spooler


def item(seq: int, tag: str = "a", size: int = 300, record: Any = None) -> Item:
    return (seq, tag, seq, record if record is not None else {"msg": f"m{seq}"}, 20, size, True)


def reference_take(pending: deque[Item], max_records: int, max_bytes: int) -> list[Item]:
    """The loop take_run() replaces."""
    tag = pending[0][1]
    items: list[Item] = []
    size = 0
    while pending and len(items) < max_records and size < max_bytes and pending[0][1] == tag:
        taken = pending.popleft()
        items.append(taken)
        size += taken[5]
    return items


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 50)), min_size=1),
    st.integers(1, 10),
    st.integers(1, 200),
)
def test_take_run_takes_what_the_record_loop_takes(
    shape: list[tuple[str, int]], max_records: int, max_bytes: int
) -> None:
    queue = [item(i, tag, size) for i, (tag, size) in enumerate(shape)]
    expected_pending = deque(queue)
    expected = reference_take(expected_pending, max_records, max_bytes)
    pending = deque(queue)
    items, size = take_run(pending, max_records, max_bytes)
    assert items == expected
    assert size == sum(it[5] for it in expected)
    assert pending == expected_pending


class Woken:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def outbox(tmp_path: Path, wake: Woken, **limits: int) -> Outbox:
    bounds = {"max_records": 100, "max_bytes": 1 << 20} | limits
    return Outbox(
        producer_id="p",
        spooler=Spooler(tmp_path, "p", 1 << 20),
        wake=wake,
        max_batch_records=10,
        max_batch_bytes=1 << 20,
        max_message_bytes=1 << 20,
        window=2,
        **bounds,
    )


@pytest.mark.parametrize(("max_records", "max_bytes"), [(100, 1 << 20), (7, 1 << 20), (1000, 5000)])
def test_put_asks_for_the_spool_at_three_quarters_of_either_bound(
    tmp_path: Path, max_records: int, max_bytes: int
) -> None:
    wake = Woken()
    box = outbox(tmp_path, wake, max_records=max_records, max_bytes=max_bytes)
    size = 300
    for n in range(1, max_records + 1):
        box.put("a", n, {"msg": "x"}, 20, size, True)
        wanted = 4 * n >= 3 * max_records or 4 * n * size >= 3 * max_bytes
        assert box._spool_wanted == wanted, n
        if wanted:
            break
    assert wake.count == 2  # the first record (no sender yet), then the spool


def test_put_wakes_a_sleeping_sender_once(tmp_path: Path) -> None:
    wake = Woken()
    box = outbox(tmp_path, wake)
    for n in range(3):
        box.put("a", n, {"msg": "x"}, 20)
    assert wake.count == 1
    box.sleeping = True
    box.put("a", 9, {"msg": "x"}, 20)
    assert wake.count == 2
    assert [it[0] for it in box.pending] == [1, 2, 3, 4]
    assert box.pending_bytes == 4 * approx_bytes({"msg": "x"})


def test_put_drops_when_closed(tmp_path: Path) -> None:
    box = outbox(tmp_path, Woken())
    box.closed = True
    box.put("a", 1, {"msg": "x"}, 20, 10, True)
    assert not box.pending
    assert box.dropped == 1


def sender_box(tmp_path: Path) -> Outbox:
    """An outbox whose batches hold 12 records or 4,000 bytes: 3 records or 1,000 bytes go
    out while a message is in flight."""
    return Outbox(
        producer_id="p",
        spooler=Spooler(tmp_path, "p", 1 << 20),
        wake=Woken(),
        max_records=100,
        max_bytes=1 << 20,
        max_batch_records=12,
        max_batch_bytes=4000,
        max_message_bytes=1 << 20,
        window=8,
    )


def put(box: Outbox, count: int, size: int = 100) -> None:
    for _ in range(count):
        box.put("a", 1, {"msg": "x"}, 20, size, True)


def test_a_trickle_waits_for_the_message_in_flight(tmp_path: Path) -> None:
    box, sent = sender_box(tmp_path), list[bytes]()
    put(box, 1)
    box.fill_window(sent.append, 10.0)
    assert [b.count for b in box.inflight] == [1]  # nothing in flight: out at once
    put(box, 2)
    box.fill_window(sent.append, 10.0)
    assert len(sent) == 1
    # Held back: the sender sleeps until the ack (or its deadline), and put() does not
    # wake it for every record meanwhile.
    timeout = box.sleep_for(True, True, 0.0, 0.0)
    assert timeout is not None
    assert timeout > 0
    assert not box.sleeping
    assert box.acked(["p:1"]) == 1
    box.fill_window(sent.append, 10.0)
    assert [b.count for b in box.inflight] == [2]  # the two as one message
    assert len(sent) == 2


@pytest.mark.parametrize(("count", "size"), [(3, 100), (1, 1000)], ids=["records", "bytes"])
def test_a_quarter_batch_goes_out_beside_the_message_in_flight(
    tmp_path: Path, count: int, size: int
) -> None:
    box, sent = sender_box(tmp_path), list[bytes]()
    put(box, 1)
    box.fill_window(sent.append, 10.0)
    put(box, count, size)
    assert box.sleep_for(True, True, 0.0, 0.0) == DONT_SLEEP
    box.fill_window(sent.append, 10.0)
    assert [b.count for b in box.inflight] == [1, count]


def test_flush_gets_held_back_records_acknowledged(tmp_path: Path) -> None:
    box, sent = sender_box(tmp_path), list[bytes]()
    put(box, 1)
    box.fill_window(sent.append, 10.0)
    put(box, 1)
    box.fill_window(sent.append, 10.0)
    assert not box.wait_acked(0.0)
    box.acked(["p:1"])
    box.fill_window(sent.append, 10.0)
    box.acked(["p:2"])
    assert box.wait_acked(0.0)
    assert len(sent) == 2


def make_record(extra: dict[str, Any] | None = None) -> logging.LogRecord:
    logger = logging.getLogger("test_client_outbox")
    return logger.makeRecord(logger.name, logging.INFO, "f.py", 1, "n=%d", (5,), None, None, extra)


def test_handler_estimate_and_plain_flag() -> None:
    out, size, plain = recordmap.build_sized(make_record(), "app", "20250101_000000_0123abcd")
    assert plain
    assert out == recordmap.build_record(make_record(), "app", "20250101_000000_0123abcd")
    # At least what the general estimate gives: the bounds hold as before.
    assert size >= approx_bytes(out)
    out, size, plain = recordmap.build_sized(
        make_record({"user": "x" * 1000, "n": [1, 2]}), "app", None
    )
    assert not plain
    assert size >= RECORD_OVERHEAD_BYTES + 1000 + len(out["msg"])


def test_handle_applies_filters_without_the_handler_lock(
    logd_handler: handler.LogdHandler,
) -> None:
    queued = logd_handler.transport.pending_records

    assert logd_handler.handle(make_record())
    logd_handler.addFilter(lambda record: record.getMessage() != "n=5")
    assert not logd_handler.handle(make_record())
    assert [rec["msg"] for _, _, rec in queued() if "event_type" not in rec] == ["n=5"]
    assert logd_handler.lock is not None
    logd_handler.acquire()  # held elsewhere: handle() does not wait for it
    try:
        logd_handler.filters.clear()
        assert logd_handler.handle(make_record())
    finally:
        logd_handler.release()
    assert len([rec for _, _, rec in queued() if "event_type" not in rec]) == 2


def test_a_filter_returning_a_record_behaves_as_in_stdlib(
    logd_handler: handler.LogdHandler,
) -> None:
    replacement = make_record()
    replacement.msg = "replaced"
    target: Any = logd_handler  # typed for Python 3.11, where filters return bool
    target.addFilter(lambda record: replacement)
    original = make_record()
    result = target.handle(original)
    msgs = [rec["msg"] for _, _, rec in logd_handler.transport.pending_records()]
    if sys.version_info >= (3, 12):  # the filter's record replaces the one logged
        assert result is replacement
        assert "replaced" in msgs
    else:  # a record is merely a true value: the original goes
        assert result is True
        assert original.getMessage() in msgs
        assert "replaced" not in msgs


def test_a_drop_report_says_why_records_were_dropped() -> None:
    one = drop_message(3, {QUEUE_FULL: 3})
    assert one == "logd_client dropped 3 records: its queue was full"
    both = drop_message(5, {QUEUE_FULL: 2, DAMAGED_SPOOL: 3})
    assert both == (
        "logd_client dropped 5 records: 2 because its queue was full; "
        "3 because a spool file was damaged"
    )
