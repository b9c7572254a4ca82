"""Records packed straight into entries (`wire.entries`, `recordmap.EntryBuilder`).

The handler's usual records skip the record map: an entry built from parts packed ahead must
decode to exactly what the general path (`build_sized`, then `encode_packed_batch`) sends,
and every record the fast path cannot take must be left to the general one.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import struct
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from logd_client import context, handler
from logd_client.batch import encode_items, record_map
from logd_client.recordmap import EntryBuilder, build_sized
from logd_client.wire import Entries, ForwardDecoder
from logd_client.wire.encode import encode_packed_batch
from logd_client.wire.entries import (
    decode_entry,
    encode_entry,
    map_header,
    packed_fields,
    packed_str,
    str_header,
)

from tests.unit.client.test_outbox import Woken, outbox
from tests.unit.client.test_record import make_record

RUN = "20261206_101500_0123abcd"
NOW_NS = 1_765_015_500_123_456_789


def general(record: logging.LogRecord, app: str = "app", run_id: str | None = RUN) -> bytes:
    """The entry the general path sends for `record`: its map, packed by the batch encoder."""
    out, _, plain = build_sized(record, app, run_id)
    return stream_of(encode_packed_batch(app, [(NOW_NS, out, plain)]))


def stream_of(message: bytes) -> bytes:
    _tag, stream, _option = msgpack.unpackb(message)
    assert isinstance(stream, bytes)
    return stream


def fast(record: logging.LogRecord, app: str = "app", run_id: str | None = RUN) -> bytes:
    built = EntryBuilder().build(record, app, NOW_NS, run_id)
    assert built is not None
    entry, size = built
    assert size >= len(entry)
    return entry


def decoded(stream: bytes) -> list[tuple[int, dict[str, Any]]]:
    """Entries as the daemon's decoder reads them: (time in ns, record)."""
    decoder = ForwardDecoder()
    decoder.receive_data(msgpack.packb(["app", stream, {"size": 1}]))
    message = decoder.next_event()
    assert isinstance(message, Entries)
    assert not message.invalid
    return message.entries


@pytest.mark.parametrize("size", [0, 1, 31, 32, 255, 256, 65535, 65536])
def test_packed_str_matches_msgpack_at_every_header_boundary(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)
    assert packed_str(text) == msgpack.packb(text)
    assert str_header(size) + b"y" * size == msgpack.packb("y" * size)


@pytest.mark.parametrize("count", [0, 15, 16, 65535, 65536])
def test_map_header_matches_msgpack(count: int) -> None:
    packer = msgpack.Packer()
    assert map_header(count) == packer.pack_map_header(count)


def test_an_entry_decodes_to_its_time_and_fields() -> None:
    fields = {"level": "INFO", "pid": 7, "thread": 2**63 + 5, "msg": "héllo"}
    entry = encode_entry(NOW_NS, map_header(len(fields)), packed_fields(fields))
    assert decode_entry(entry) == (NOW_NS, fields)
    assert decoded(entry) == [(NOW_NS, fields)]


def test_strict_parts_refuse_what_needs_the_general_fallbacks() -> None:
    with pytest.raises(UnicodeEncodeError):
        packed_str("lone \udc80 surrogate")
    with pytest.raises((OverflowError, TypeError, ValueError)):
        packed_fields({"big": 2**70})
    with pytest.raises(TypeError):
        packed_fields({1: "x"})  # type: ignore[dict-item]
    with pytest.raises(struct.error):
        encode_entry(-1, map_header(0))


def test_a_plain_record_is_the_same_entry_as_the_general_path_sends() -> None:
    record = make_record("hello %s", ("world",))
    assert decoded(fast(record)) == decoded(general(record))
    assert decoded(fast(record, run_id=None)) == decoded(general(record, run_id=None))


@pytest.mark.parametrize(
    "text", ["", "x" * 31, "x" * 32, "ü" * 200, "y" * 70_000, "line\nnext\ttab", "emoji 🎉"]
)
def test_messages_of_every_length_and_script_decode_the_same(text: str) -> None:
    record = make_record("%s", (text,))
    assert decoded(fast(record)) == decoded(general(record))


@contextlib.contextmanager
def in_call(call_id: str, bot_id: str) -> Iterator[None]:
    token = context.push_call(call_id, bot_id)
    try:
        yield
    finally:
        context.pop_call(token)


def test_session_and_call_from_the_context_are_in_the_entry() -> None:
    record = make_record()
    with context.session("s-1"):
        assert decoded(fast(record))[0][1]["session_id"] == "s-1"
        assert decoded(fast(record)) == decoded(general(record))
        with in_call("c-9", "bot-2"):
            _, fields = decoded(fast(record))[0]
            ids = (fields["session_id"], fields["call_id"], fields["bot_id"])
            assert ids == ("s-1", "c-9", "bot-2")
            assert decoded(fast(record)) == decoded(general(record))
    with in_call("c-10", "unknown"):
        assert decoded(fast(record)) == decoded(general(record))


def test_records_without_pid_or_thread_leave_those_fields_out() -> None:
    record = make_record()
    record.process = None
    record.thread = None
    _, fields = decoded(fast(record))[0]
    assert not {"pid", "thread", "thread_name"} & fields.keys()
    assert decoded(fast(record)) == decoded(general(record))


def test_the_packed_head_follows_a_renamed_thread_a_new_run_and_another_app() -> None:
    builder = EntryBuilder()
    record = make_record()

    def fields(app: str = "app", run_id: str | None = RUN) -> dict[str, Any]:
        built = builder.build(record, app, NOW_NS, run_id)
        assert built is not None
        return decode_entry(built[0])[1]

    assert fields()["thread_name"] == record.threadName
    record.threadName = "worker-renamed"
    assert fields()["thread_name"] == "worker-renamed"
    assert fields(run_id="20261206_101600_89abcdef")["run_id"] == "20261206_101600_89abcdef"
    assert fields(app="other")["app"] == "other"
    record.levelname = "WARNING"
    assert fields()["level"] == "WARNING"


@pytest.mark.parametrize(
    "record",
    [
        make_record(extra={"user": "ann"}),
        make_record(stack_info=True),
        make_record("bad %d", ("x",)),
        make_record("lone %s", ("\udc80",)),
    ],
    ids=["extra fields", "stack info", "bad format string", "lone surrogate"],
)
def test_records_the_fast_path_cannot_take_are_left_to_the_general_one(
    record: logging.LogRecord,
) -> None:
    assert EntryBuilder().build(record, "app", NOW_NS, RUN) is None
    assert build_sized(record, "app", RUN)[0]["msg"]  # which takes them


def test_a_traceback_or_an_unpackable_id_is_left_to_the_general_path() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = make_record(exc_info=True)
    assert EntryBuilder().build(record, "app", NOW_NS, RUN) is None
    with context.session("s-\udc80"):
        assert EntryBuilder().build(make_record(), "app", NOW_NS, RUN) is None
    assert EntryBuilder().build(make_record(), "app", -5, RUN) is None  # time out of range


def test_the_caches_start_over_past_their_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    from logd_client import recordmap

    monkeypatch.setattr(recordmap, "_HEADS_MAX", 3)
    monkeypatch.setattr(recordmap, "_PREFIXES_MAX", 3)
    builder = EntryBuilder()
    record = make_record()
    for n in range(10):
        record.name = f"logger.{n}"
        with context.session(f"s{n}"):
            built = builder.build(record, "app", NOW_NS, RUN)
            assert built is not None
            fields = decode_entry(built[0])[1]
            assert (fields["logger"], fields["session_id"]) == (f"logger.{n}", f"s{n}")
    assert max(len(builder._heads), len(builder._prefixes)) <= 3


def test_a_batch_of_entries_and_maps_keeps_its_order(tmp_path: Path) -> None:
    builder = EntryBuilder()
    items: list[Any] = []
    for seq in range(1, 7):
        record = make_record("n=%d", (seq,))
        if seq % 3:
            built = builder.build(record, "app", NOW_NS + seq, RUN)
            assert built is not None
            items.append((seq, "app", NOW_NS + seq, built[0], 20, built[1], False))
        else:  # a map, as events and records with extra fields are queued
            out, size, plain = build_sized(record, "app", RUN)
            items.append((seq, "app", NOW_NS + seq, out, 20, size, plain))
    got = decoded(stream_of(encode_items("app", items, "chunk-1")))
    assert [(t, f["msg"]) for t, f in got] == [(NOW_NS + n, f"n={n}") for n in range(1, 7)]
    assert all(record_map(item[3])["msg"] == f"n={item[0]}" for item in items)


def test_a_dropped_entry_still_gives_the_drop_report_its_origin(tmp_path: Path) -> None:
    box = outbox(tmp_path, Woken(), max_records=2)
    built = EntryBuilder().build(make_record(), "app", NOW_NS, RUN)
    assert built is not None
    for _ in range(4):
        box.put("app", NOW_NS, built[0], logging.INFO, built[1])
    reports = [item[3] for item in box.pending if isinstance(item[3], dict)]
    assert len(reports) == 1
    report = reports[0]
    assert (report["event_type"], report["kv"]["count"]) == ("logd:dropped", 2)
    assert (report["app"], report["run_id"], report["pid"]) == ("app", RUN, os.getpid())


def test_the_handler_queues_usual_records_packed_and_the_rest_as_maps(
    logd_handler: handler.LogdHandler,
) -> None:
    log = logging.getLogger("test_entries.handler")
    log.propagate = False
    log.addHandler(logd_handler)
    try:
        with context.session("s-7"):
            log.warning("packed %d", 1)
            log.warning("with extra", extra={"user": "ann"})
    finally:
        log.removeHandler(logd_handler)
    queued = [item[3] for item in logd_handler.transport._outbox.pending]
    mine = [q for q in queued if record_map(q).get("logger") == log.name]
    assert [type(q) for q in mine] == [bytes, dict]
    fields = [record_map(q) for q in mine]
    assert [(f["msg"], f["session_id"], f["level"]) for f in fields] == [
        ("packed 1", "s-7", "WARNING"),
        ("with extra", "s-7", "WARNING"),
    ]
    assert fields[1]["user"] == "ann"


@pytest.mark.parametrize("count", [1, 2, 500, 1000])
def test_a_batch_of_entries_only_is_one_message_at_any_size(count: int) -> None:
    builder = EntryBuilder()
    items: list[Any] = []
    for seq in range(count):
        built = builder.build(make_record("n=%d", (seq,)), "app", NOW_NS + seq, RUN)
        assert built is not None
        items.append((seq, "app", NOW_NS + seq, built[0], 20, built[1], False))
    message = encode_items("app", items, "chunk-9")
    decoder = ForwardDecoder()
    decoder.receive_data(message)
    got = decoder.next_event()
    assert isinstance(got, Entries)
    assert got.option == {"size": count, "chunk": "chunk-9"}
    assert [(t, r["msg"]) for t, r in got.entries] == [(NOW_NS + n, f"n={n}") for n in range(count)]
    assert decoder.next_event() is None


def test_a_queued_entry_counts_about_the_memory_it_holds(tmp_path: Path) -> None:
    """The estimate is what the memory bounds and `max_batch_bytes` count: too low, and a
    message (which the daemon reads ahead) grows past the size the bounds were made for."""
    box = outbox(tmp_path, Woken(), max_records=10_000, max_bytes=1 << 30)
    builder = EntryBuilder()
    built = [
        builder.build(make_record("request %s done", (f"r{n}",)), "app", NOW_NS + n, RUN)
        for n in range(5_000)
    ]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n, entry in enumerate(built):
            assert entry is not None
            box.put("app", NOW_NS + n, entry[0], logging.INFO, entry[1])
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    built_entries = [entry for entry in built if entry is not None]
    entry_bytes = sum(len(entry) for entry, _ in built_entries)
    estimated = sum(size for _, size in built_entries)
    # The entries themselves were built before: what put() adds is the rest.
    assert 0.6 * estimated <= held + entry_bytes <= 1.2 * estimated
