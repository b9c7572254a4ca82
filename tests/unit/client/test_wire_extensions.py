"""Extension values in records: Go's time.Time as ISO 8601 UTC, any other type kept whole."""

from __future__ import annotations

import base64
import json
import struct
from datetime import UTC, datetime

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from logd_client import wire
from logd_client.wire.extensions import extension_value, go_time_text

T0 = 1_762_353_052


def go_time(seconds: int, nanoseconds: int) -> msgpack.ExtType:
    """time.Time as tinylib/msgp (fluent-logger-golang) packs it: ext8, type 5, 12 bytes."""
    return msgpack.ExtType(5, struct.pack(">qi", seconds, nanoseconds))


def record_of(value: object) -> dict[str, object]:
    message = msgpack.packb(["go", T0, {"msg": "m", "v": value}], use_bin_type=True)
    decoder = wire.ForwardDecoder()
    decoder.receive_data(message)
    event = decoder.next_event()
    assert isinstance(event, wire.Entries)
    ((_, record),) = event.entries
    return record


def test_go_time_payload_is_the_one_msgp_writes() -> None:
    # msgp writes ext8 (0xc7), length 12, type 5: not a fixext, so the framing matters too.
    packed = msgpack.packb(go_time(0, 0))
    assert packed[:3] == b"\xc7\x0c\x05"


@pytest.mark.parametrize(
    ("seconds", "nanoseconds", "text"),
    [
        (T0, 123_456_789, "2025-11-05T14:30:52.123456789Z"),
        (T0, 0, "2025-11-05T14:30:52.000000000Z"),
        (0, 1, "1970-01-01T00:00:00.000000001Z"),
        (-1, 999_999_999, "1969-12-31T23:59:59.999999999Z"),
        (-62_135_596_800, 0, "0001-01-01T00:00:00.000000000Z"),  # Go's zero time.Time
        (253_402_300_799, 999_999_999, "9999-12-31T23:59:59.999999999Z"),
    ],
)
def test_go_time_becomes_iso_8601_utc(seconds: int, nanoseconds: int, text: str) -> None:
    assert record_of(go_time(seconds, nanoseconds))["v"] == text


def test_iso_text_gives_back_the_time() -> None:
    text = go_time_text(struct.pack(">qi", T0, 123_456_000))
    assert text is not None
    assert datetime.fromisoformat(text.replace("000Z", "+00:00")) == datetime(
        2025, 11, 5, 14, 30, 52, 123456, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "payload",
    [
        struct.pack(">qi", 253_402_300_800, 0),  # year 10000
        struct.pack(">qi", -62_135_596_801, 0),  # year 0
        struct.pack(">qi", 2**63 - 1, 0),
        struct.pack(">qi", T0, 1_000_000_000),  # nanoseconds out of range
        struct.pack(">qi", T0, -1),
        b"\x00" * 8,  # not the 12-byte layout
        b"",
    ],
)
def test_a_type_5_payload_that_is_no_time_is_kept_whole(payload: bytes) -> None:
    value = record_of(msgpack.ExtType(5, payload))["v"]
    assert value == {"ext": 5, "b64": base64.b64encode(payload).decode()}


def test_other_extension_types_are_kept_whole_and_typed() -> None:
    assert record_of(msgpack.ExtType(7, b"\x00\xffgo"))["v"] == {"ext": 7, "b64": "AP9nbw=="}
    # A reserved (negative) type, which msgpack.ExtType will not build: ext8, type -5.
    message = msgpack.packb(["go", T0, {"v": msgpack.ExtType(100, b"")}], use_bin_type=True)
    decoder = wire.ForwardDecoder()
    decoder.receive_data(message.replace(b"\xc7\x00\x64", b"\xc7\x00\xfb"))
    event = decoder.next_event()
    assert isinstance(event, wire.Entries)
    assert event.entries[0][1]["v"] == {"ext": -5, "b64": ""}


@given(st.integers(-128, 127), st.binary(max_size=300))
def test_any_extension_value_is_json_and_round_trips(code: int, data: bytes) -> None:
    value = extension_value(code, data)
    assert json.loads(json.dumps(value)) == value
    if isinstance(value, dict):
        assert value["ext"] == code
        assert isinstance(value["b64"], str)
        assert base64.b64decode(value["b64"]) == data
    else:
        assert code == 5
        assert value.endswith("Z")


def test_extensions_inside_lists_and_packed_entries() -> None:
    entries = msgpack.packb([T0, {"msg": "m", "v": [go_time(T0, 5), msgpack.ExtType(9, b"x")]}])
    message = msgpack.packb(["go", entries, {"chunk": "c"}], use_bin_type=True)
    decoder = wire.ForwardDecoder()
    decoder.receive_data(message)
    event = decoder.next_event()
    assert isinstance(event, wire.Entries)
    ((_, record),) = event.entries
    assert record["v"] == ["2025-11-05T14:30:52.000000005Z", {"ext": 9, "b64": "eA=="}]


def test_event_time_still_decodes_as_the_entry_time() -> None:
    event_time = msgpack.ExtType(0, struct.pack(">II", T0, 7))
    message = msgpack.packb(["go", event_time, {"msg": "m"}], use_bin_type=True)
    decoder = wire.ForwardDecoder()
    decoder.receive_data(message)
    event = decoder.next_event()
    assert isinstance(event, wire.Entries)
    assert event.entries[0][0] == T0 * 1_000_000_000 + 7
