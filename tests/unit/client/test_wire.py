"""The Forward codec without sockets: every mode, framing under any split, limits, fallbacks."""

from __future__ import annotations

import enum
import gzip
import hashlib
import struct
import zlib
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logd_client import wire

T0 = 1_762_353_052_123_456_789
S0, NS0 = divmod(T0, 1_000_000_000)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def packb(obj: object) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def ext_time(seconds: int, nanoseconds: int) -> msgpack.ExtType:
    return msgpack.ExtType(0, struct.pack(">II", seconds, nanoseconds))


def str_header(size: int) -> bytes:
    """A str32 header: how out_forward wraps packed entries."""
    return b"\xdb" + struct.pack(">I", size)


def drain(decoder: Any) -> list[Any]:
    events: list[Any] = []
    while True:
        event = decoder.next_event()
        if event is None or isinstance(event, wire.Closed):
            return events
        events.append(event)


def decode_all(data: bytes, **limits: Any) -> list[Any]:
    decoder = wire.ForwardDecoder(**limits)
    decoder.receive_data(data)
    decoder.receive_eof()
    events = drain(decoder)
    assert decoder.next_event() == wire.Closed()
    return events


def decode_one(data: bytes, **limits: Any) -> Any:
    (event,) = decode_all(data, **limits)
    return event


# --- modes ----------------------------------------------------------------------------------------


def test_forward_round_trip() -> None:
    entries: list[tuple[int, dict[str, Any]]] = [(T0, {"msg": "a"}), (T0 + 1, {"n": 1})]
    event = decode_one(wire.encode_forward("app.x", entries, chunk="c1"))
    assert event == wire.Entries("app.x", entries, {"size": 2, "chunk": "c1"}, [])
    assert event.chunk == "c1"


def test_packed_forward_round_trip() -> None:
    entries = [(T0, {"msg": "a"}), (T0, {"msg": "b"})]
    data = wire.encode_packed_forward("app", entries)
    assert msgpack.unpackb(data)[1].__class__ is bytes  # entries travel as bin
    event = decode_one(data)
    assert event == wire.Entries("app", entries, {"size": 2}, [])
    assert event.chunk is None


def test_compressed_packed_forward_round_trip() -> None:
    entries = [(T0 + i, {"i": i}) for i in range(50)]
    event = decode_one(wire.encode_forward("app", entries, chunk="z", compressed=True))
    assert event.entries == entries
    assert event.option == {"size": 50, "compressed": "gzip", "chunk": "z"}


def test_message_round_trip_with_and_without_chunk() -> None:
    event = decode_one(wire.encode_message("app", T0, {"msg": "one"}, chunk="k"))
    assert event == wire.Entries("app", [(T0, {"msg": "one"})], {"chunk": "k"}, [])
    assert decode_one(wire.encode_message("app", T0, {})).option == {}


@pytest.mark.parametrize(
    "time_bytes",
    [
        b"\xd7\x00" + struct.pack(">II", S0, NS0),  # fixext8
        b"\xc7\x08\x00" + struct.pack(">II", S0, NS0),  # ext8 with length 8
    ],
    ids=["fixext8", "ext8"],
)
def test_event_time_both_encodings(time_bytes: bytes) -> None:
    message = b"\x93" + packb("t") + time_bytes + packb({"a": 1})
    forward = b"\x92" + packb("t") + b"\x91\x92" + time_bytes + packb({"a": 1})
    assert decode_one(message).entries == [(T0, {"a": 1})]
    assert decode_one(forward).entries == [(T0, {"a": 1})]


def test_int_and_float_seconds() -> None:
    event = decode_one(packb(["t", [[1_700_000_000, {}], [1.5, {}]]]))
    assert event.entries == [(1_700_000_000 * 10**9, {}), (1_500_000_000, {})]


def test_v15_entry_form_with_metadata() -> None:
    entries = [[[ext_time(S0, NS0), {"meta": 1}], {"a": 1}], [[5, {}], {"b": 2}]]
    expected = [(T0, {"a": 1}), (5 * 10**9, {"b": 2})]
    assert decode_one(packb(["t", entries])).entries == expected
    blob = b"".join(packb(entry) for entry in entries)
    assert decode_one(packb(["t", blob])).entries == expected


def test_bin_keys_and_bin_tag_are_decoded_at_every_level() -> None:
    record = {b"msg": "x", b"kv": {b"inner": [{b"deep": 1}]}, "plain": b"\xff"}
    event = decode_one(packb([b"app.bin", 1, record, {b"chunk": "c"}]))
    assert event.tag == "app.bin"
    assert event.entries == [
        (10**9, {"msg": "x", "kv": {"inner": [{"deep": 1}]}, "plain": b"\xff"})
    ]
    assert event.chunk == "c"


def test_packed_entries_sent_as_str_like_out_forward() -> None:
    # EventTime bytes are rarely valid UTF-8: the str must give back the exact bytes.
    blob = packb([ext_time(S0, 0xFFFFFF), {"a": 1}]) + packb([ext_time(0xFFFFFFFF, 0), {"b": 2}])
    message = b"\x93" + packb("t") + str_header(len(blob)) + blob + packb({"size": 2})
    event = decode_one(message)
    assert event.entries == [
        (S0 * 10**9 + 0xFFFFFF, {"a": 1}),
        (0xFFFFFFFF * 10**9, {"b": 2}),
    ]
    assert event.invalid == []


def test_gzip_with_two_members_and_padding() -> None:
    first = b"".join(packb([i, {"i": i}]) for i in range(3))
    second = b"".join(packb([i, {"i": i}]) for i in range(3, 5))
    body = gzip.compress(first) + gzip.compress(second) + b"\0" * 4
    event = decode_one(packb(["t", body, {"compressed": "gzip", "size": 5}]))
    assert event.entries == [(i * 10**9, {"i": i}) for i in range(5)]
    assert event.invalid == []


def test_heartbeat() -> None:
    assert decode_all(packb(None) + packb(None)) == [wire.Heartbeat(), wire.Heartbeat()]


def test_fluent_logger_packets_decode() -> None:
    sender_module = pytest.importorskip("fluent.sender")
    sender = sender_module.FluentSender("app", nanosecond_precision=True)
    packet = sender._make_packet("web", 1_700_000_000.25, {"msg": "hi"})
    event = decode_one(packet)
    assert event.tag == "app.web"
    assert event.entries == [(1_700_000_000_250_000_000, {"msg": "hi"})]


# --- acks and handshake --------------------------------------------------------------------------


def test_ack_echoes_str_chunk_exactly_even_when_not_utf8() -> None:
    chunk_bytes = b"\xff\xfeab"
    option = b"\x81" + packb("chunk") + b"\xa4" + chunk_bytes  # a str that is not UTF-8
    event = decode_one(b"\x94" + packb("t") + packb(1) + packb({}) + option)
    assert isinstance(event.chunk, str)
    assert wire.encode_ack(event.chunk) == b"\x81\xa3ack\xa4" + chunk_bytes
    decoder = wire.ResponseDecoder()
    decoder.receive_data(wire.encode_ack(event.chunk))
    assert decoder.next_event() == wire.Ack(event.chunk)


def test_ack_echoes_bin_chunk_as_bin() -> None:
    event = decode_one(packb(["t", 1, {}, {"chunk": b"\x00\x01"}]))
    assert event.chunk == b"\x00\x01"
    assert wire.encode_ack(b"\x00\x01") == b"\x81\xa3ack\xc4\x02\x00\x01"
    decoder = wire.ResponseDecoder()
    decoder.receive_data(wire.encode_ack(b"\x00\x01") + wire.encode_ack("s"))
    assert drain(decoder) == [wire.Ack(b"\x00\x01"), wire.Ack("s")]


def test_handshake_helo_ping_pong() -> None:
    key, nonce, salt = "sekrit", b"\x00nonce\xff", b"salt-16-bytes..."
    client = wire.ResponseDecoder()
    server = wire.ForwardDecoder()

    client.receive_data(wire.encode_helo(nonce, auth=b"a", keepalive=False))
    helo = client.next_event()
    assert helo == wire.Helo(nonce=nonce, auth=b"a", keepalive=False)
    assert isinstance(helo, wire.Helo)

    server.receive_data(
        wire.encode_ping("cli", key, helo.nonce, salt=salt, username="u", password="p")
    )
    ping = server.next_event()
    assert isinstance(ping, wire.Ping)
    assert ping == wire.Ping("cli", salt, ping.shared_key_hexdigest, "u", "p")
    expected = hashlib.sha512(salt + b"cli" + nonce + key.encode()).hexdigest()
    assert ping.shared_key_hexdigest == expected
    assert wire.shared_key_digest(salt, "cli", nonce, key) == expected

    client.receive_data(wire.encode_pong(True, "", "srv", key, nonce, ping.shared_key_salt))
    pong = client.next_event()
    assert pong == wire.Pong(True, "", "srv", wire.shared_key_digest(salt, "srv", nonce, key))

    client.receive_data(wire.encode_pong(False, "bad key", "srv", key, nonce, salt))
    assert client.next_event() == wire.Pong(False, "bad key", "srv", "")  # no digest oracle


def test_ping_salt_sent_as_str_like_fluent_bit() -> None:
    salt = b"\x80\x81random-salt\xfe\xff"
    message = (
        b"\x96"
        + packb("PING")
        + packb("h")
        + bytes([0xA0 | len(salt)])
        + salt
        + packb("d")
        + packb("")
    )
    ping = decode_one(message + packb(""))
    assert ping == wire.Ping("h", salt, "d", "", "")


def test_helo_defaults_and_random_salt() -> None:
    decoder = wire.ResponseDecoder()
    decoder.receive_data(packb(["HELO", {"nonce": "n"}]) + wire.encode_helo(b"n"))
    assert drain(decoder) == [wire.Helo(b"n", b"", True), wire.Helo(b"n", b"", True)]
    first = decode_one(wire.encode_ping("h", "k", b"n"))
    second = decode_one(wire.encode_ping("h", "k", b"n"))
    assert first.shared_key_salt != second.shared_key_salt
    digest = hashlib.sha512(b"auth" + b"user" + b"pw").hexdigest()
    assert wire.password_digest(b"auth", "user", "pw") == digest


@pytest.mark.parametrize(
    "message",
    [["PONG", "yes", "", "h", "d"], ["HELO", {"auth": b""}], {"nack": "x"}, [1, 2], None],
)
def test_response_decoder_refuses_other_messages(message: object) -> None:
    decoder = wire.ResponseDecoder()
    decoder.receive_data(packb(message))
    with pytest.raises(wire.RemoteProtocolError) as info:
        decoder.next_event()
    assert info.value.code == "bad-message"


def test_map_decoder_round_trip() -> None:
    decoder = wire.MapDecoder()
    decoder.receive_data(wire.encode_map({"op": "status", "args": {"x": [1, 2]}}))
    decoder.receive_data(packb({b"bin": {b"k": 1}}) + packb([1]))
    decoder.receive_eof()
    assert decoder.next_event() == {"op": "status", "args": {"x": [1, 2]}}
    assert decoder.next_event() == {"bin": {"k": 1}}
    with pytest.raises(wire.RemoteProtocolError) as info:
        decoder.next_event()
    assert info.value.code == "bad-message"


# --- invalid entries and bad messages ------------------------------------------------------------


def test_invalid_entries_do_not_cost_valid_ones() -> None:
    entries = [
        [1, {"ok": 1}],
        "junk",
        [1],
        ["noon", {}],
        [1, "not a map"],
        [float("nan"), {}],
        [2, {"ok": 2}],
    ]
    event = decode_one(packb(["t", entries, {"chunk": "c"}]))
    assert event.entries == [(10**9, {"ok": 1}), (2 * 10**9, {"ok": 2})]
    assert [item.reason for item in event.invalid] == [
        "entry is not [time, record]",
        "entry is not [time, record]",
        "time is not int or EventTime",
        "record is not a map",
        "time is not int or EventTime",
    ]
    assert event.invalid[0].raw == "'junk'"
    assert event.chunk == "c"


def test_invalid_message_mode_entry_is_listed() -> None:
    event = decode_one(packb(["t", 1, [1, 2]]))
    assert event.entries == []
    assert event.invalid == [wire.Invalid("record is not a map", "[1, [1, 2]]")]


def test_broken_packed_entries_keep_the_ones_before() -> None:
    good = packb([1, {"a": 1}])
    event = decode_one(packb(["t", good + b"\xc1" + good]))
    assert event.entries == [(10**9, {"a": 1})]
    assert event.invalid[0].reason.startswith("packed entries are not valid msgpack")
    event = decode_one(packb(["t", good + good[:-1]]))
    assert event.entries == [(10**9, {"a": 1})]
    assert [item.reason for item in event.invalid] == ["packed entry is truncated"]


def test_corrupt_gzip_is_an_invalid_entry_not_a_broken_stream() -> None:
    body = gzip.compress(packb([1, {"a": 1}]))
    events = decode_all(
        packb(["t", body + b"garbage", {"compressed": "gzip"}])
        + packb(["t", body[:-6], {"compressed": "gzip"}])
        + packb(["t", b"not gzip", {"compressed": "gzip"}])
    )
    assert [e.entries for e in events] == [[(10**9, {"a": 1})], [(10**9, {"a": 1})], []]
    assert [e.invalid[0].reason for e in events] == [
        "entries are not valid gzip: Error -3 while decompressing data: incorrect header check",
        "gzip stream is truncated",
        "entries are not valid gzip: Error -3 while decompressing data: incorrect header check",
    ]


def test_raw_is_truncated() -> None:
    event = decode_one(packb(["t", [["x" * 5000, {}]]]))
    assert len(event.invalid[0].raw) == 1000


@pytest.mark.parametrize(
    "message",
    [
        1,
        "text",
        {"a": 1},
        [],
        ["t"],
        ["t", 1],
        [1, 1, {}],
        ["t", 1, {}, {}, {}],
        ["t", [], {}, {}],
        ["t", b"", {}, {}],
        ["t", [], "option"],
    ],
)
def test_bad_message_shape(message: object) -> None:
    with pytest.raises(wire.RemoteProtocolError) as info:
        decode_all(packb(message))
    assert info.value.code == "bad-message"


# --- framing, limits and the terminal state ------------------------------------------------------


def test_clean_eof_gives_closed_repeatedly() -> None:
    decoder = wire.ForwardDecoder()
    decoder.receive_data(wire.encode_message("t", T0, {}))
    decoder.receive_eof()
    assert isinstance(decoder.next_event(), wire.Entries)
    assert decoder.next_event() == wire.Closed()
    assert decoder.next_event() == wire.Closed()
    with pytest.raises(wire.LocalProtocolError):
        decoder.receive_data(b"\xc0")


@pytest.mark.parametrize("cut", [1, 5, -1])
def test_eof_inside_a_message_is_truncated(cut: int) -> None:
    data = wire.encode_forward("t", [(T0, {"msg": "x"})])
    decoder = wire.ForwardDecoder()
    decoder.receive_data(data[:cut])
    assert decoder.next_event() is None
    decoder.receive_eof()
    with pytest.raises(wire.RemoteProtocolError) as info:
        decoder.next_event()
    assert info.value.code == "truncated"


def test_terminal_after_error() -> None:
    decoder = wire.ForwardDecoder()
    decoder.receive_data(
        wire.encode_message("t", T0, {}) + b"\xc1" + wire.encode_message("t", 1, {})
    )
    assert isinstance(decoder.next_event(), wire.Entries)
    with pytest.raises(wire.RemoteProtocolError) as info:
        decoder.next_event()
    error = info.value
    assert error.code == "malformed"
    assert isinstance(error.__cause__, msgpack.FormatError)
    for call in (decoder.next_event, lambda: decoder.receive_data(b"\xc0"), decoder.receive_eof):
        with pytest.raises(wire.RemoteProtocolError) as again:
            call()
        assert again.value is error


@pytest.mark.parametrize(
    "header",
    [
        b"\xdd\xff\xff\xff\xff",  # array32
        b"\xdf\xff\xff\xff\xff",  # map32
        b"\xc9\xff\xff\xff\xff\x00",  # ext32
    ],
    ids=["array", "map", "ext"],
)
def test_huge_container_header_is_refused_at_once(header: bytes) -> None:
    decoder = wire.ForwardDecoder(max_message_bytes=1024)
    decoder.receive_data(header)
    with pytest.raises(wire.RemoteProtocolError) as info:
        decoder.next_event()
    assert info.value.code == "message-too-large"
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize("header", [b"\xc6\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff"])
def test_huge_bin_or_str_is_refused_within_the_limit(header: bytes) -> None:
    # msgpack waits for the body instead of checking the claim, so the buffer limit decides:
    # the decoder never holds more than max_message_bytes of it.
    decoder = wire.ForwardDecoder(max_message_bytes=1024)
    fed = 0

    def feed_what_read_size_allows() -> None:
        nonlocal fed
        decoder.receive_data(b"\x92" + packb("t") + header)
        while fed < 10_000:
            assert decoder.next_event() is None
            size = decoder.read_size
            assert 1 <= size <= 1024
            decoder.receive_data(b"x" * size)
            fed += size

    with pytest.raises(wire.RemoteProtocolError) as info:
        feed_what_read_size_allows()
    assert info.value.code == "message-too-large"
    assert fed <= 1024


def feed_in_steps(decoder: Any, data: bytes, step: int) -> list[Any]:
    events = []
    for start in range(0, len(data), step):
        decoder.receive_data(data[start : start + step])
        events.extend(drain(decoder))
    return events


def test_message_over_the_limit_is_refused_whatever_the_split() -> None:
    data = wire.encode_forward("t", [(T0, {"msg": "x" * 100})] * 20)
    limit = len(data) - 1
    for step in (1, 7, 64, len(data)):
        decoder = wire.ForwardDecoder(max_message_bytes=limit)
        with pytest.raises(wire.RemoteProtocolError) as info:
            feed_in_steps(decoder, data, step)
        assert info.value.code == "message-too-large", step
    assert len(decode_all(data, max_message_bytes=len(data))) == 1


def test_read_size_tracks_buffer_room_and_oversized_reads_still_work() -> None:
    one = packb(["t", 1, {"b": b"x" * 100}])
    decoder = wire.ForwardDecoder(max_message_bytes=len(one))
    assert decoder.read_size == len(one)
    decoder.receive_data(one[:60])
    assert decoder.next_event() is None
    # msgpack consumed the 9 bytes up to the bin body; the 51 body bytes wait in the buffer.
    assert decoder.read_size == len(one) - 51
    decoder.receive_data(one[60:] + one * 5)  # far more than read_size: held back, not lost
    assert decoder.read_size == 1
    assert len(drain(decoder)) == 6
    assert decoder.read_size == len(one)


def test_messages_are_bounded_by_bytes_not_by_record_count() -> None:
    """A client's backlog of 120,000 small records in one message, as Fluentd takes it."""
    entries = [(T0, {"i": i}) for i in range(120_000)]
    for data in (
        wire.encode_forward("t", entries),
        wire.encode_packed_forward("t", entries),
        wire.encode_forward("t", entries, compressed=True),
    ):
        assert len(data) < wire.DEFAULT_MAX_MESSAGE_BYTES
        assert len(decode_one(data).entries) == 120_000


def test_too_many_records_when_a_count_limit_is_set() -> None:
    entries = [(T0, {"i": i}) for i in range(11)]
    for data in (
        wire.encode_forward("t", entries),
        wire.encode_packed_forward("t", entries),
        wire.encode_forward("t", entries, compressed=True),
    ):
        with pytest.raises(wire.RemoteProtocolError) as info:
            decode_all(data, max_records=10)
        assert info.value.code == "too-many-records"
        assert len(decode_one(data, max_records=11).entries) == 11


def test_a_count_limit_counts_packed_entries_on_arrival_even_when_lazy() -> None:
    entries = [(T0, {"i": i}) for i in range(11)]
    for data in (
        wire.encode_packed_forward("t", entries),
        wire.encode_forward("t", entries, compressed=True),
    ):
        with pytest.raises(wire.RemoteProtocolError) as info:
            decode_all(data, max_records=10, lazy_packed=True)
        assert info.value.code == "too-many-records"
        event = decode_one(data, max_records=11, lazy_packed=True)
        assert event.packed is None
        assert len(event.entries) == 11


def test_gzip_bomb_is_refused() -> None:
    bomb = zlib.compress(b"\0" * (8 * 1024 * 1024), 9, wbits=31)
    assert len(bomb) < 16 * 1024
    with pytest.raises(wire.RemoteProtocolError) as info:
        decode_all(packb(["t", bomb, {"compressed": "gzip"}]), max_message_bytes=1024 * 1024)
    assert info.value.code == "message-too-large"


def test_deep_nesting_is_refused_cleanly() -> None:
    with pytest.raises(wire.RemoteProtocolError) as info:
        decode_all(b"\x91" * 5000 + b"\xc0")
    assert info.value.code == "too-deep"
    assert isinstance(info.value.__cause__, msgpack.StackError)


def test_deep_but_legal_nesting_does_not_raise_recursion_error() -> None:
    depth = 1000  # within msgpack's limit, beyond Python's default recursion limit
    nested_map = b"\x81\xc4\x01k" * depth + b"\xc0"  # bin keys: must be normalised everywhere
    record = b"\x81\xc4\x03msg" + nested_map
    event = decode_one(b"\x92" + packb("t") + b"\x92\x92\x01" + record + b"\x91" * depth + b"\xc0")
    ((_, decoded),) = event.entries
    node = decoded["msg"]
    for _ in range(depth):
        node = node["k"]
    assert node is None
    assert event.invalid[0].reason == "entry is not [time, record]"


# --- properties ----------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
records = st.dictionaries(st.text(max_size=10), values, max_size=5)
times = st.integers(0, 2**32 * 10**9 - 1)
batches = st.lists(st.tuples(times, records), min_size=0, max_size=5)
modes = st.sampled_from(["forward", "packed", "gzip", "message"])
messages = st.tuples(
    modes, st.text(min_size=1, max_size=10), batches, st.none() | st.text(max_size=8)
)


def encode(
    mode: str, tag: str, batch: list[tuple[int, dict[str, Any]]], chunk: str | None
) -> bytes:
    if mode == "message":
        return wire.encode_message(tag, *(batch[0] if batch else (0, {})), chunk=chunk)
    if mode == "packed":
        return wire.encode_packed_forward(tag, batch, chunk=chunk)
    return wire.encode_forward(tag, batch, chunk=chunk, compressed=mode == "gzip")


@FAST
@given(st.lists(messages, min_size=1, max_size=4), st.data())
def test_every_split_yields_the_same_events(
    stream: list[tuple[str, str, list[tuple[int, dict[str, Any]]], str | None]], data: st.DataObject
) -> None:
    blob = b"".join(encode(*message) for message in stream)
    whole = decode_all(blob)
    assert len(whole) == len(stream)
    for event, (mode, tag, batch, chunk) in zip(whole, stream, strict=True):
        assert event.tag == tag
        assert event.chunk == chunk
        assert event.entries == (batch[:1] or [(0, {})] if mode == "message" else batch)
        assert event.invalid == []

    cuts = sorted(data.draw(st.lists(st.integers(0, len(blob)), max_size=12)))
    decoder = wire.ForwardDecoder()
    pieces = [blob[a:b] for a, b in zip([0, *cuts], [*cuts, len(blob)], strict=True)]
    events = []
    for piece in pieces:
        decoder.receive_data(piece)
        events.extend(drain(decoder))
    decoder.receive_eof()
    events.extend(drain(decoder))
    assert events == whole


def test_lazy_packed_entries_decode_later_to_what_eager_decoding_gives() -> None:
    """The daemon's decoder leaves packed entries packed; `unpacked` then finds the same
    entries and the same invalid ones (broken msgpack, truncation, bad gzip)."""
    good = packb([1, {"a": 1}])
    body = gzip.compress(good + packb(["noon", {}]))
    blob = (
        wire.encode_packed_forward("t", [(T0, {"i": 1}), (T0 + 1, {"i": 2})], chunk="c1")
        + packb(["t", good + b"\xc1" + good, {"chunk": "c2"}])
        + packb(["t", good + good[:-1]])
        + packb(["t", body + b"garbage", {"compressed": "gzip"}])
        + packb(["t", body[:-6], {"compressed": "gzip"}])
        + packb(["t", b"", {"chunk": "empty"}])
        + packb(["t", [[1, {"forward": 1}]]])
    )
    eager = decode_all(blob)
    lazy = decode_all(blob, lazy_packed=True)
    assert [e.packed is not None for e in lazy] == [True] * 6 + [False]
    assert all(e.entries == [] for e in lazy[:6])
    assert [e.chunk for e in lazy] == [e.chunk for e in eager]
    assert [wire.unpacked(e) for e in lazy] == eager
    assert [len(e.invalid) for e in eager] == [0, 1, 1, 2, 2, 0, 0]


def feed_and_drain(decoder: Any, data: bytes, step: int) -> None:
    try:
        for start in range(0, len(data), step):
            decoder.receive_data(data[start : start + step])
            drain(decoder)
        decoder.receive_eof()
        drain(decoder)
    except wire.RemoteProtocolError:
        pass


@FAST
@given(st.binary(max_size=300), st.integers(1, 64))
def test_arbitrary_bytes_give_events_or_remote_protocol_error(data: bytes, step: int) -> None:
    for make in (wire.ForwardDecoder, wire.ResponseDecoder, wire.MapDecoder):
        feed_and_drain(make(max_message_bytes=256), data, step)


@FAST
@given(st.lists(messages, min_size=1, max_size=3), st.data())
def test_mutated_streams_give_events_or_remote_protocol_error(
    stream: list[tuple[str, str, list[tuple[int, dict[str, Any]]], str | None]], data: st.DataObject
) -> None:
    blob = bytearray(b"".join(encode(*message) for message in stream))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(blob) - 1))
        blob[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    feed_and_drain(
        wire.ForwardDecoder(max_records=3), bytes(blob[:cut]), data.draw(st.integers(1, 50))
    )


# --- encoding ------------------------------------------------------------------------------------


class Color(enum.IntEnum):
    RED = 1


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_unencodable_values_fall_back() -> None:
    marker = object()
    record: dict[Any, Any] = {
        "big": 2**70,
        "negative": -(2**70),
        "obj": marker,
        "set": {3},
        "frozen": frozenset({4}),
        "tuple": (1, (2, 3)),
        (1, 2): "tuple key",
        5: "int key",
        b"raw": "bytes key",
        "nested": {(3, 4): [2**65, {6}], "when": wire.EventTime(S0, NS0)},
        "enum": Color.RED,
        "bytearray": bytearray(b"ab"),
        "broken": Unprintable(),
    }
    event = decode_one(wire.encode_forward("t", [(T0, record)]))
    assert event.entries == [
        (
            T0,
            {
                "big": str(2**70),
                "negative": str(-(2**70)),
                "obj": str(marker),
                "set": [3],
                "frozen": [4],
                "tuple": [1, [2, 3]],
                "(1, 2)": "tuple key",
                "5": "int key",
                "raw": "bytes key",
                # An EventTime inside a record decodes to its nanoseconds.
                "nested": {"(3, 4)": [str(2**65), [6]], "when": T0},
                "enum": 1,
                "bytearray": b"ab",
                "broken": "<unprintable Unprintable>",
            },
        )
    ]


def test_fast_path_record_with_big_int_and_lone_surrogate() -> None:
    event = decode_one(
        wire.encode_message("t", T0, {"big": 2**64, "odd": "\ud800x", "esc": "\udcff"})
    )
    assert event.entries == [(T0, {"big": str(2**64), "odd": "?x", "esc": "?"})]


def test_packed_batch_decodes_to_what_encode_forward_sends() -> None:
    """The client's batches: same entries as Forward mode, plain or not, odd values included."""
    marker = object()
    entries: list[tuple[int, dict[Any, Any]]] = [
        (T0, {"msg": "plain", "pid": 7, "f": 1.5, "none": None, "b": b"x", "big": 2**64}),
        (T0 + 1, {"msg": "lone \ud800 surrogate", "esc": "\udcff", "kv": {"n": [1, "a"]}}),
        (S0 * 1_000_000_000, {"obj": marker, "set": {3}, 5: "int key", "t": (1, 2)}),
        (0, {"enum": Color.RED, "when": wire.EventTime(S0, NS0)}),
    ]
    plain = [True, True, False, False]
    batch = [(t, r, p) for (t, r), p in zip(entries, plain, strict=True)]
    data = wire.encode.encode_packed_batch("t", batch, chunk="c9")
    expected = decode_one(wire.encode_forward("t", entries, chunk="c9"))
    event = decode_one(data)
    assert event.entries == expected.entries
    assert event.option == expected.option == {"size": 4, "chunk": "c9"}
    assert data == wire.encode_packed_forward("t", entries, chunk="c9")


def test_packed_batch_checks_times_as_encode_forward_does() -> None:
    class Ns(int):
        pass

    event = decode_one(wire.encode.encode_packed_batch("t", [(Ns(T0), {}, True)]))
    assert event.entries == [(T0, {})]
    for bad in (-1, 2**32 * 10**9, 1.5, True):
        with pytest.raises(wire.LocalProtocolError) as info:
            wire.encode.encode_packed_batch("t", [(T0, {}, True), (bad, {}, True)])  # type: ignore[list-item]
        assert info.value.code == "bad-time"


def test_too_deep_or_cyclic_values_are_local_errors() -> None:
    deep: list[Any] = []
    node = deep
    for _ in range(200):
        node.append([])
        node = node[0]
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    for record in ({"deep": deep}, cyclic):
        with pytest.raises(wire.LocalProtocolError) as info:
            wire.encode_forward("t", [(T0, record)])
        assert info.value.code == "too-deep"


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda: wire.encode_forward(b"t", []), "bad-tag"),  # type: ignore[arg-type]
        (lambda: wire.encode_packed_forward(1, []), "bad-tag"),  # type: ignore[arg-type]
        (lambda: wire.encode_message(None, T0, {}), "bad-tag"),  # type: ignore[arg-type]
        (lambda: wire.encode_forward("t", [(-1, {})]), "bad-time"),
        (lambda: wire.encode_forward("t", [(2**32 * 10**9, {})]), "bad-time"),
        (lambda: wire.encode_forward("t", [(1.5, {})]), "bad-time"),  # type: ignore[list-item]
        (lambda: wire.encode_forward("t", [(1, [1])]), "bad-record"),  # type: ignore[list-item]
        (lambda: wire.encode_forward("t", [], chunk=b"c"), "bad-chunk"),  # type: ignore[arg-type]
        (lambda: wire.encode_ack(1), "bad-chunk"),  # type: ignore[arg-type]
        (lambda: wire.encode_helo("nonce"), "bad-nonce"),  # type: ignore[arg-type]
        (lambda: wire.encode_ping(None, "k", b"n"), "bad-hostname"),  # type: ignore[arg-type]
        (lambda: wire.encode_pong(True, "", "h", "k", b"n", "salt"), "bad-salt"),  # type: ignore[arg-type]
    ],
)
def test_local_protocol_errors(call: Any, code: str) -> None:
    with pytest.raises(wire.LocalProtocolError) as info:
        call()
    assert info.value.code == code
    assert isinstance(info.value, wire.ProtocolError)
    assert not isinstance(info.value, wire.RemoteProtocolError)


def test_event_time_packing_and_conversions() -> None:
    data = wire.encode_message("t", T0, {})
    assert b"\xd7\x00" + struct.pack(">II", S0, NS0) in data  # fixext8, type 0
    assert wire.EventTime.from_ns(T0) == wire.EventTime(S0, NS0)
    assert wire.EventTime.from_ns(T0).to_ns() == T0


def test_entries_chunk_only_str_or_bytes() -> None:
    assert wire.Entries("t", [], {"chunk": 5}, []).chunk is None
    assert wire.Entries("t", [], {"chunk": b"b"}, []).chunk == b"b"
