"""Packed entries decoded by the fields they share with earlier ones (`wire.Prefixes`).

The shortcut must give exactly what msgpack gives, entry for entry (times, maps, key order)
and invalid for invalid, whatever the bytes: logd_client's own entries, other clients'
shapes mixed in, cut and corrupted messages, and more contexts than the cache holds.
"""

from __future__ import annotations

import contextlib
import random
import struct
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from logd_client import context
from logd_client.recordmap import EntryBuilder
from logd_client.wire import Entries, Prefixes, unpacked
from logd_client.wire.entries import encode_entry, map_header, packed_str

from tests.unit.client.test_record import make_record

RUN = "20261206_101500_0123abcd"
NOW_NS = 1_765_015_500_123_456_789
EVENT_TIME = struct.Struct(">bbII")


def packed(blob: bytes) -> Entries:
    return Entries("app", [], {"chunk": "c1"}, [], packed=blob)


def both(blob: bytes, prefixes: Prefixes | None = None) -> tuple[Entries, Entries]:
    """(msgpack's result, the shortcut's result) for one message holding `blob`."""
    plain = unpacked(packed(blob))
    fast = unpacked(packed(blob), Prefixes() if prefixes is None else prefixes)
    return plain, fast


def assert_same(plain: Entries, fast: Entries) -> None:
    assert fast.entries == plain.entries
    assert [list(record) for _, record in fast.entries] == [
        list(record) for _, record in plain.entries
    ]  # key order too: text lines show extra fields in it
    assert [(i.reason, i.raw) for i in fast.invalid] == [(i.reason, i.raw) for i in plain.invalid]


@contextlib.contextmanager
def in_context(session: str | None, call: tuple[str, str] | None) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        if session is not None:
            stack.enter_context(context.session(session))
        if call is not None:
            token = context.push_call(*call)
            stack.callback(context.pop_call, token)
        yield


def client_entries(count: int, *, contexts: int = 7, seed: int = 1) -> list[bytes]:
    """Entries as logd_client's handler builds them, over sessions, calls and loggers."""
    rng = random.Random(seed)
    builder = EntryBuilder()
    out = []
    messages = ["", "x", "é" * 40, "a" * 31, "b" * 32, "c" * 255, "d" * 256, "e" * 70_000]
    for n in range(count):
        k = n % contexts
        record = make_record("%s #%d", (rng.choice(messages), n))
        record.name = f"app.part{k % 3}"
        record.levelname = ("INFO", "WARNING", "ERROR")[k % 3]
        session = f"s{k}" if k % 2 else None
        call = (f"c{k}", "bot") if k % 3 == 0 else None
        with in_context(session, call):
            built = builder.build(record, "app", NOW_NS + n * 1_000_003, RUN)
        assert built is not None
        out.append(built[0])
    return out


def foreign_entry(n: int) -> bytes:
    """An entry as Fluent Bit packs one: EventTime, then a map with `log`, no `msg`."""
    time = msgpack.ExtType(0, struct.pack(">II", 1_765_015_500 + n, 7))
    entry = msgpack.packb([time, {"log": f"line {n}", "stream": "stdout"}])
    assert isinstance(entry, bytes)
    return entry


def test_client_entries_decode_as_msgpack_decodes_them() -> None:
    prefixes = Prefixes()
    blob = b"".join(client_entries(400))
    plain, fast = both(blob, prefixes)
    assert len(plain.entries) == 400
    assert not plain.invalid
    assert_same(plain, fast)
    assert 0 < len(prefixes) <= 7  # one per context, learnt once
    again = unpacked(packed(blob), prefixes)  # all hits now
    assert_same(plain, again)


def test_each_record_is_a_map_of_its_own() -> None:
    blob = b"".join(client_entries(3, contexts=1))
    entries = unpacked(packed(blob), Prefixes()).entries
    entries[0][1]["level"] = "CHANGED"
    entries[0][1]["extra"] = 1
    assert entries[1][1]["level"] == "INFO"
    assert "extra" not in entries[1][1]


def test_other_shapes_among_client_entries_come_out_as_msgpack_makes_them() -> None:
    ours = client_entries(60, contexts=3)
    time = msgpack.ExtType(0, struct.pack(">II", 1_765_015_500, 1))
    odd = [
        foreign_entry(1),
        msgpack.packb([1_765_015_500, {"msg": "int time"}]),  # time in whole seconds
        msgpack.packb([time, {"msg": "first", "level": "INFO"}]),  # msg not last
        msgpack.packb([time, {"level": "INFO", "msg": 5}]),  # msg not a str
        msgpack.packb([time, {b"level": "INFO", "msg": "bin key"}]),
        msgpack.packb([time, {"logger": "x", "msg": b"bin msg"}]),
        msgpack.packb([time, {"msg": "x", "f": 1.5, "msg2": "y"}]),
        msgpack.packb("not an entry"),
        msgpack.packb([time, "not a map"]),
        msgpack.packb(None),
    ]
    blob = b"".join(ours[:20] + odd[:5] + ours[20:40] + odd[5:] + ours[40:])
    plain, fast = both(blob)
    assert len(plain.invalid) == 3
    assert_same(plain, fast)


def test_a_msg_key_inside_a_value_or_twice_is_no_shortcut() -> None:
    time = msgpack.ExtType(0, struct.pack(">II", 1_765_015_500, 1))
    entries = []
    for n in range(5):
        entries.append(msgpack.packb([time, {"logger": "msg", "msg": f"a{n}"}]))
        entries.append(msgpack.packb([time, {"note": "\xa3msg\xa1x", "msg": f"b{n}"}]))
    # A map that says "msg" twice: msgpack keeps the last value, in the first key's place.
    twice = map_header(3) + packed_str("msg") + packed_str("one") + packed_str("level")
    twice += packed_str("INFO") + packed_str("msg") + packed_str("two")
    entries += [encode_entry(NOW_NS, twice)] * 3
    plain, fast = both(b"".join(entries))
    assert not plain.invalid
    assert_same(plain, fast)


@pytest.mark.parametrize("cut", [1, 5, 12, 40, 100])
def test_a_message_cut_short_reports_what_msgpack_reports(cut: int) -> None:
    blob = b"".join(client_entries(30, contexts=2))
    plain, fast = both(blob[:-cut])
    assert plain.invalid
    assert_same(plain, fast)


def test_corrupted_bytes_give_what_msgpack_gives() -> None:
    base = b"".join(client_entries(40, contexts=4)[:-1])  # no 70,000-byte message: keep it quick
    rng = random.Random(18)
    for _ in range(300):
        blob = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            blob[rng.randrange(len(blob))] = rng.randrange(256)
        prefixes = Prefixes()
        plain, fast = both(bytes(base), prefixes)  # learn from the good message first
        assert_same(plain, fast)
        plain, fast = both(bytes(blob), prefixes)
        assert_same(plain, fast)


def test_more_contexts_than_the_cache_holds_stay_right_and_rest() -> None:
    prefixes = Prefixes(max_prefixes=16)
    blob = b"".join(client_entries(400, contexts=200)[:-1])
    plain, fast = both(blob, prefixes)
    assert_same(plain, fast)
    assert prefixes.resting  # mostly misses: the next messages go straight to msgpack
    assert len(prefixes) <= 16
    assert_same(plain, unpacked(packed(blob), prefixes))
    while prefixes.resting:
        assert_same(plain, unpacked(packed(blob), prefixes))
    assert_same(plain, unpacked(packed(blob), prefixes))  # and tries again


def test_foreign_client_messages_are_left_to_msgpack_whole() -> None:
    blob = b"".join(foreign_entry(n) for n in range(50))
    prefixes = Prefixes()
    plain, fast = both(blob, prefixes)
    assert_same(plain, fast)
    assert len(prefixes) == 0


def test_every_str_length_form_of_the_message() -> None:
    builder = EntryBuilder()
    entries = []
    for size in (0, 31, 32, 255, 256, 65_535, 65_536):
        built = builder.build(make_record("x" * size, ()), "app", NOW_NS, RUN)
        assert built is not None
        entries.append(built[0])
    # Not valid UTF-8 (as out_forward may send str): round-trips by surrogateescape.
    entries.append(entries[0][:-1] + b"\xa2\xff\xfe")
    entries.append(entries[0][:-1] + b"\xa2\xff\xfe")
    plain, fast = both(b"".join(entries))
    assert [len(record["msg"]) for _, record in fast.entries][:7] == [
        0,
        31,
        32,
        255,
        256,
        65_535,
        65_536,
    ]
    assert_same(plain, fast)


def test_a_prefix_is_learnt_from_its_first_entry_only_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Any] = []
    real = msgpack.unpackb

    def counting(data: Any, **kw: Any) -> Any:
        calls.append(len(data))
        return real(data, **kw)

    monkeypatch.setattr(msgpack, "unpackb", counting)
    blob = b"".join(client_entries(100, contexts=1))
    fast = unpacked(packed(blob), Prefixes())
    assert len(fast.entries) == 100
    assert len(calls) == 2  # the first entry, and its fields alone to check the boundary
