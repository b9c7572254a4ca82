"""Turns objects msgpack unpacked into wire messages.

Checks the shape of each message (Forward modes, PackedForward and gzip payloads, HELO, PING,
PONG, acks, control maps) before building typed messages, so no ``Any`` leaks out. No I/O.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from itertools import islice
from typing import Any

import msgpack

from .messages import (
    NS_PER_S,
    Ack,
    Entries,
    Heartbeat,
    Helo,
    Invalid,
    Ping,
    Pong,
    RemoteProtocolError,
)
from .prefixes import Prefixes
from .unpacker import EventNs, at_boundary, new_unpacker

_RAW_LIMIT = 1000
# Entries of another shape among those `Prefixes` decodes, taken by msgpack one at a time;
# past this many in one message, msgpack takes the rest of it in one go.
_STRAYS_MAX = 8
# The keys of logd's record conventions. A record made of these alone has str keys only,
# which one subset test (in C) shows without looking at each key in Python.
_USUAL_KEYS = frozenset(
    {"msg", "message", "log", "level", "logger", "source", "app", "run_id", "session_id"}
    | {"call_id", "bot_id", "event_type", "kv", "pid", "thread", "thread_name", "exc"}
)
_HEARTBEAT = Heartbeat()


def _raw(value: object, limit: int = _RAW_LIMIT) -> str:
    if isinstance(value, str | bytes):
        value = value[: limit + 1]
    try:
        text = repr(value)
    except RecursionError:
        text = f"<{type(value).__name__} nested too deeply to show>"
    return text[:limit]


def str_key(key: object) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", "replace")
    return str(key)


def _normalize_keys(root: dict[Any, Any]) -> dict[str, Any]:
    """Make every map key under ``root`` a str, in place; bin keys are decoded as UTF-8.

    Iterative on purpose: msgpack accepts 1024 levels, more than Python's recursion limit.
    """
    stack: list[object] = [root]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            if not all(type(k) is str for k in node):
                items = list(node.items())
                node.clear()
                node.update((k if type(k) is str else str_key(k), v) for k, v in items)
            stack.extend(v for v in node.values() if type(v) is dict or type(v) is list)
        elif type(node) is list:
            stack.extend(v for v in node if type(v) is dict or type(v) is list)
    return root


def _as_text(value: object) -> str | None:
    if type(value) is str:
        return value
    if type(value) is bytes:
        return value.decode("utf-8", "replace")
    return None


def _as_bytes(value: object) -> bytes | None:
    if type(value) is bytes:
        return value
    if type(value) is str:
        return value.encode("utf-8", "surrogateescape")
    return None


def _short(value: object) -> str:
    return _raw(value, 200)


def _bad(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, code="bad-message")


def _slow_time(value: object) -> int | None:
    """Nanoseconds for the rarer time forms, or None when ``value`` is no time at all."""
    if type(value) is list and len(value) == 2:
        # v1.5 entry form: [[time, metadata], record].
        value = value[0]
        if type(value) is int:
            return value * NS_PER_S
        if type(value) is EventNs:
            return int(value)
    if type(value) is float:
        ns = value * NS_PER_S
        if math.isfinite(ns):
            return int(ns)
    return None


def _collect(
    items: Iterable[object],
    entries: list[tuple[int, dict[str, Any]]],
    invalid: list[Invalid],
) -> None:
    """Append each ``[time, record]`` item to ``entries`` or, when broken, to ``invalid``."""
    # The hot loop of the daemon: keep per-entry work to type checks and one pass over keys.
    append = entries.append
    for item in items:
        if type(item) is not list or len(item) != 2:
            invalid.append(Invalid("entry is not [time, record]", _raw(item)))
            continue
        time, record = item
        ns: int
        if type(time) is EventNs:
            ns = time  # an int already: converting it would cost a call per record
        elif type(time) is int:
            ns = time * NS_PER_S
        else:
            maybe_ns = _slow_time(time)
            if maybe_ns is None:
                invalid.append(Invalid("time is not int or EventTime", _raw(item)))
                continue
            ns = maybe_ns
        if type(record) is not dict:
            invalid.append(Invalid("record is not a map", _raw(item)))
            continue
        if not record.keys() <= _USUAL_KEYS:
            for key in record:
                if type(key) is not str:
                    record = _normalize_keys(record)
                    break
        append((ns, record))


def _gunzip(data: bytes, limit: int) -> tuple[bytes, Invalid | None]:
    """Decompress concatenated gzip members, refusing more than ``limit`` bytes of output.

    Returns what decompressed cleanly and, when the stream is corrupt or cut short, an Invalid
    describing the rest. ``gzip.decompress`` has no output cap, hence zlib with max_length.
    """
    out: list[bytes] = []
    total = 0
    view = memoryview(data)
    pos = 0
    end = len(data)
    while pos < end:
        if data[pos] == 0 and data.count(0, pos) == end - pos:
            break  # zero padding after the last member, which gzip(1) tolerates too
        member_start = pos
        inflater = zlib.decompressobj(wbits=31)
        # zlib copies the input left over after a member into unused_data; feeding small,
        # growing slices keeps many tiny members from costing quadratic copying.
        step = 512
        try:
            while not inflater.eof:
                chunk: bytes | memoryview = inflater.unconsumed_tail
                if not chunk:
                    if pos >= end:
                        break
                    chunk = view[pos : pos + step]
                    pos += len(chunk)
                    step = min(step * 2, 1 << 20)
                piece = inflater.decompress(chunk, limit - total + 1)
                total += len(piece)
                if total > limit:
                    raise RemoteProtocolError(
                        f"compressed entries inflate to more than {limit} bytes",
                        code="message-too-large",
                    )
                out.append(piece)
        except zlib.error as exc:
            return b"".join(out), Invalid(
                f"entries are not valid gzip: {exc}", _raw(data[member_start:])
            )
        if not inflater.eof:
            return b"".join(out), Invalid("gzip stream is truncated", _raw(data[member_start:]))
        pos -= len(inflater.unused_data)
    return b"".join(out), None


def _collect_packed(
    blob: bytes,
    max_records: int | None,
    entries: list[tuple[int, dict[str, Any]]],
    invalid: list[Invalid],
    start: int = 0,
) -> None:
    """Append the entries of ``blob`` from offset ``start`` on (see `_collect()`)."""
    if len(blob) <= start:
        return
    unpacker = new_unpacker(len(blob) + 1)
    unpacker.feed(blob)
    if start:
        unpacker.read_bytes(start)
    # One past the limit is enough to know the limit is broken. Without a count limit,
    # len(blob) is one the entries cannot reach: each takes at least 3 bytes.
    limit = len(blob) if max_records is None else max_records
    try:
        _collect(islice(unpacker, limit + 1), entries, invalid)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        # The outer stream is still in step, so this costs only the rest of this message.
        invalid.append(
            Invalid(f"packed entries are not valid msgpack: {exc!r}", _raw(blob[unpacker.tell() :]))
        )
    else:
        if len(entries) + len(invalid) <= limit and not at_boundary(unpacker):
            invalid.append(Invalid("packed entry is truncated", _raw(blob[-_RAW_LIMIT:])))
    if len(entries) + len(invalid) > limit:
        raise _too_many(limit)


def _too_many(max_records: int) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"message has more than {max_records} entries", code="too-many-records"
    )


def _option(value: object) -> dict[str, Any]:
    if value is None:
        return {}  # some peers send nil for "no option"
    if type(value) is not dict:
        raise _bad(f"option is not a map: {_short(value)}")
    return _normalize_keys(value)


def decode_forward_message(
    obj: object, max_bytes: int, max_records: int | None = None, *, lazy_packed: bool = False
) -> Entries | Ping | Heartbeat:
    """One Forward message as Entries (or a PING or heartbeat).

    ``max_bytes`` bounds what gzip may inflate to. Messages are otherwise bounded by bytes
    alone, as Fluentd and Fluent Bit bound them; ``max_records`` is an optional count limit
    on top (None: none). ``lazy_packed`` leaves PackedForward entries packed (see
    `unpacked()`) unless a count limit needs them counted now.
    """
    if obj is None:
        return _HEARTBEAT
    if type(obj) is not list:
        raise _bad(f"message is neither an array nor nil: {_short(obj)}")
    size = len(obj)
    if size == 6 and obj[0] == "PING":
        return _decode_ping(obj)
    if not 2 <= size <= 4:
        raise _bad(f"message array has {size} elements")
    tag = _as_text(obj[0])
    if tag is None:
        raise _bad(f"tag is not a str: {_short(obj[0])}")
    second = obj[1]
    entries: list[tuple[int, dict[str, Any]]] = []
    invalid: list[Invalid] = []
    if type(second) is list:  # Forward
        if size == 4:
            raise _bad("Forward message has 4 elements")
        if max_records is not None and len(second) > max_records:
            raise _too_many(max_records)
        option = _option(obj[2]) if size == 3 else {}
        _collect(second, entries, invalid)
    elif type(second) is bytes or type(second) is str:  # PackedForward
        if size == 4:
            raise _bad("PackedForward message has 4 elements")
        option = _option(obj[2]) if size == 3 else {}
        # A str (out_forward's choice) gives back its exact bytes, see new_unpacker.
        blob = second.encode("utf-8", "surrogateescape") if isinstance(second, str) else second
        if option.get("compressed") == "gzip":
            blob, broken = _gunzip(blob, max_bytes)
            if lazy_packed and max_records is None:
                return Entries(tag, entries, option, [broken] if broken else [], blob)
            _collect_packed(blob, max_records, entries, invalid)
            if broken is not None:
                invalid.append(broken)
        elif lazy_packed and max_records is None:
            return Entries(tag, entries, option, invalid, blob)
        else:
            _collect_packed(blob, max_records, entries, invalid)
    else:  # Message
        if size == 2:
            raise _bad("Message has no record")
        option = _option(obj[3]) if size == 4 else {}
        _collect((obj[1:3],), entries, invalid)
    return Entries(tag, entries, option, invalid)


def unpacked(message: Entries, prefixes: Prefixes | None = None) -> Entries:
    """``message`` with its packed entries decoded (itself when there are none).

    A daemon decodes a PackedForward message's entries here, one message at a time just
    before it stores them, rather than when the message arrives: decoded, a record takes
    several times its packed size, and the messages waiting for the writer would hold
    that much. Entries that do not decode are listed in ``invalid``, as when eager. With
    ``prefixes``, entries whose fields were seen before are decoded by them (`Prefixes`);
    the result is the same.
    """
    if message.packed is None:
        return message
    entries: list[tuple[int, dict[str, Any]]] = []
    invalid: list[Invalid] = []
    if prefixes is not None and prefixes.start_message():
        _collect_prefixed(message.packed, prefixes, entries, invalid)
    else:
        _collect_packed(message.packed, None, entries, invalid)
    return Entries(message.tag, entries, message.option, invalid + message.invalid)


def _collect_prefixed(
    blob: bytes,
    prefixes: Prefixes,
    entries: list[tuple[int, dict[str, Any]]],
    invalid: list[Invalid],
) -> None:
    """`_collect_packed()` (without a count limit), by `prefixes` where it can."""
    n = len(blob)
    pos = prefixes.collect(blob, 0, entries)
    unpacker: Any = None
    strays = 0
    while pos < n and strays < _STRAYS_MAX and not prefixes.resting:
        if unpacker is None:
            unpacker = new_unpacker(n + 1)
            unpacker.feed(blob)
        unpacker.read_bytes(pos - unpacker.tell())
        try:
            item = unpacker.unpack()
        except (ValueError, TypeError, msgpack.UnpackException, RecursionError):
            break  # the general path below says what is wrong with it
        _collect((item,), entries, invalid)
        strays += 1
        pos = prefixes.collect(blob, unpacker.tell(), entries)
    if pos < n:
        _collect_packed(blob, None, entries, invalid, pos)


def _decode_ping(obj: list[Any]) -> Ping:
    _, hostname, salt, hexdigest, username, password = obj
    hostname = _as_text(hostname)
    salt = _as_bytes(salt)
    if (
        hostname is None
        or salt is None
        or type(hexdigest) is not str
        or type(username) is not str
        or type(password) is not str
    ):
        raise _bad(f"malformed PING: {_short(obj)}")
    return Ping(hostname, salt, hexdigest, username, password)


def decode_response(obj: object) -> Ack | Helo | Pong:
    if type(obj) is dict:
        chunk = _normalize_keys(obj).get("ack")
        if type(chunk) is str or type(chunk) is bytes:
            return Ack(chunk)
        raise _bad(f"map without a str or bin ack: {_short(obj)}")
    if type(obj) is list and obj:
        kind = obj[0]
        if kind == "HELO" and len(obj) == 2 and type(obj[1]) is dict:
            options = _normalize_keys(obj[1])
            nonce = _as_bytes(options.get("nonce"))
            auth = _as_bytes(options.get("auth", b""))
            keepalive = options.get("keepalive", True)
            if nonce is not None and auth is not None and type(keepalive) is bool:
                return Helo(nonce, auth, keepalive)
        elif kind == "PONG" and len(obj) == 5:
            _, auth_result, reason, hostname, hexdigest = obj
            reason = _as_text(reason)
            hostname = _as_text(hostname)
            if (
                type(auth_result) is bool
                and reason is not None
                and hostname is not None
                and type(hexdigest) is str
            ):
                return Pong(auth_result, reason, hostname, hexdigest)
    raise _bad(f"not an ack, HELO or PONG: {_short(obj)}")


def decode_map(obj: object) -> dict[str, Any]:
    if type(obj) is not dict:
        raise _bad(f"message is not a map: {_short(obj)}")
    return _normalize_keys(obj)
