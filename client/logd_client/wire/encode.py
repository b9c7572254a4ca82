"""The encoders of Forward messages, acks and control maps, and their packing.

Owns the fallback for values msgpack cannot carry (sanitising). Values in, bytes out: no I/O.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgpack

from .messages import EVENT_TIME_EXT, NS_PER_S, EventTime, LocalProtocolError
from .parse import str_key

__all__ = [
    "encode_ack",
    "encode_forward",
    "encode_map",
    "encode_message",
    "encode_packed_batch",
    "encode_packed_entries",
    "encode_packed_forward",
]

# Nesting allowed in what we encode. msgpack's packer stops at 511 levels and its C unpacker at
# 1024; keeping well below both (and below Python's recursion limit of 1000) means whatever we
# send can be decoded, repr()'d and json-dumped by the daemon.
_MAX_ENCODE_DEPTH = 100
# Record values of these exact types need no sanitising before packing (big ints are caught by
# the packer's default= hook).
_PLAIN = frozenset({str, int, float, bool, type(None), bytes})
_INT_MIN = -(2**63)
_INT_END = 2**64
_BIN8 = struct.Struct(">BB")
_BIN16 = struct.Struct(">BH")
_BIN32 = struct.Struct(">BI")


def require_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise LocalProtocolError(
            f"{what} must be a str, not {type(value).__name__}", code=f"bad-{what}"
        )
    return value


def require_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise LocalProtocolError(
            f"{what} must be bytes, not {type(value).__name__}", code=f"bad-{what}"
        )
    return bytes(value)


def _event_time_bytes(time_ns: int) -> bytes:
    """The 8 data bytes of the EventTime of ``time_ns`` (ext type 0: seconds, nanoseconds)."""
    if type(time_ns) is not int and (not isinstance(time_ns, int) or isinstance(time_ns, bool)):
        raise LocalProtocolError(
            f"time must be int nanoseconds, not {type(time_ns).__name__}", code="bad-time"
        )
    seconds, nanoseconds = divmod(time_ns, NS_PER_S)
    if not 0 <= seconds <= 0xFFFFFFFF:
        raise LocalProtocolError(f"time {time_ns} ns is outside EventTime's range", code="bad-time")
    data: bytes = EVENT_TIME_EXT.pack(seconds, nanoseconds)
    return data


def _event_time(time_ns: int) -> Any:
    # tuple.__new__ skips ExtType.__new__'s argument checks, which cost half of this function;
    # the arguments here are known to be valid.
    return tuple.__new__(msgpack.ExtType, (0, _event_time_bytes(time_ns)))


def _str_or_placeholder(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the whole record
        return f"<unprintable {type(value).__name__}>"


def _deeper(depth: int) -> int:
    if depth >= _MAX_ENCODE_DEPTH:
        raise LocalProtocolError(
            f"value nested deeper than {_MAX_ENCODE_DEPTH} levels", code="too-deep"
        )
    return depth + 1


def _sanitize(value: object, depth: int = 0) -> object:
    """Return ``value`` in a form msgpack packs and our decoders read back (see encode_forward).

    Plain values are kept as they are (the packer's default= hook turns big ints into str), so
    only containers and unknown objects cost a call.
    """
    if type(value) in _PLAIN:
        return value
    if isinstance(value, dict | Mapping):
        depth = _deeper(depth)
        return {
            (k if type(k) is str else str_key(k)): (v if type(v) in _PLAIN else _sanitize(v, depth))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        depth = _deeper(depth)
        return [v if type(v) in _PLAIN else _sanitize(v, depth) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):  # subclasses: IntEnum, IntFlag...
        return int(value) if _INT_MIN <= value < _INT_END else str(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, EventTime):
        return _event_time(value.to_ns())
    if isinstance(value, msgpack.ExtType | msgpack.Timestamp):
        return value
    return _str_or_placeholder(value)


def _default(value: object) -> object:
    # Called by the packer for what it cannot pack: ints beyond 64 bits, unknown objects.
    if isinstance(value, int):
        return str(value)
    return _sanitize(value)


def _record(record: Mapping[str, Any]) -> Mapping[str, Any]:
    if type(record) is dict:
        for key, value in record.items():
            if type(key) is not str or type(value) not in _PLAIN:
                break
        else:
            return record  # fast path: flat, str keys, plain values
    elif not isinstance(record, Mapping):
        raise LocalProtocolError(
            f"record must be a mapping, not {type(record).__name__}", code="bad-record"
        )
    sanitized = _sanitize(record)
    assert isinstance(sanitized, dict)
    return sanitized


def _packer(unicode_errors: str | None, *, autoreset: bool = True) -> Any:
    return msgpack.Packer(
        default=_default, use_bin_type=True, unicode_errors=unicode_errors, autoreset=autoreset
    )


# How str is encoded, tried in turn until one works. Strict first: msgpack packs str from
# Python's cached UTF-8 then, while any error handler costs an encode() per string (about
# 40% of packing a log record); strict and surrogateescape give the same bytes for every str
# strict accepts. surrogateescape round-trips what a decoder read with it; "replace" is the
# last resort for other lone surrogates.
_UNICODE_ERRORS = (None, "surrogateescape", "replace")


def packb(obj: object) -> bytes:
    try:
        for unicode_errors in _UNICODE_ERRORS[:-1]:
            try:
                data: bytes = _packer(unicode_errors).pack(obj)
                return data
            except UnicodeEncodeError:
                pass
        data = _packer(_UNICODE_ERRORS[-1]).pack(obj)
    except (ValueError, OverflowError, TypeError) as exc:
        raise LocalProtocolError(f"cannot encode: {exc}", code="unencodable") from exc
    return data


def _pack_entries(entries: Sequence[tuple[int, Mapping[str, Any] | bytes, bool]]) -> bytes:
    """Concatenated ``[EventTime, record]`` entries: a MessagePackEventStream.

    Each entry is ``(time_ns, record, plain)``; a ``plain`` record is packed as it is (see
    :func:`encode_packed_batch`), any other goes through the sanitising check first.
    """
    try:
        for unicode_errors in _UNICODE_ERRORS[:-1]:
            try:
                return _pack_stream(entries, unicode_errors)
            except UnicodeEncodeError:
                pass
        return _pack_stream(entries, _UNICODE_ERRORS[-1])
    except (ValueError, OverflowError, TypeError) as exc:
        raise LocalProtocolError(f"cannot encode: {exc}", code="unencodable") from exc


def _pack_stream(
    entries: Iterable[tuple[int, Mapping[str, Any] | bytes, bool]], unicode_errors: str | None
) -> bytes:
    # The sender's hot loop: the packer's own array-header and ext methods write each
    # entry's head, where an [ExtType, record] list per entry costs two objects and the
    # packer's slower generic path (about a third of the loop's time more).
    packer = _packer(unicode_errors, autoreset=False)
    array_header, ext, pack = packer.pack_array_header, packer.pack_ext_type, packer.pack
    time_data, divide = EVENT_TIME_EXT.pack, divmod
    done: list[bytes] = []
    for time_ns, record, plain in entries:
        if isinstance(record, bytes):  # an entry packed already (wire.entries)
            done += (packer.bytes(), record)
            packer.reset()
            continue
        array_header(2)
        try:
            # Exactly int: a bool or an int subclass takes the checked path below.
            data = time_data(*divide(time_ns, NS_PER_S)) if type(time_ns) is int else None
        except struct.error:  # negative, or beyond EventTime's range
            data = None
        ext(0, data if data is not None else _event_time_bytes(time_ns))
        pack(record if plain else _record(record))
    if done:
        return b"".join((*done, packer.bytes()))
    out: bytes = packer.bytes()
    return out


def _forward_option(size: int, chunk: str | None) -> dict[str, Any]:
    option: dict[str, Any] = {"size": size}
    if chunk is not None:
        option["chunk"] = require_str(chunk, "chunk")
    return option


def encode_forward(
    tag: str,
    entries: Sequence[tuple[int, Mapping[str, Any]]],
    *,
    chunk: str | None = None,
    compressed: bool = False,
) -> bytes:
    """Encode entries as one Forward message, or CompressedPackedForward when ``compressed``.

    Times go out as EventTime. Values msgpack cannot carry get a fallback rather than an
    error: ints beyond 64 bits and unknown objects become ``str(value)``; tuples, sets and
    frozensets become lists; non-str keys become ``str(key)`` (bytes keys are decoded as UTF-8);
    EventTime values become ext type 0; str that is not encodable as UTF-8 even with
    surrogateescape gets ``?`` replacements.

    Args:
        tag: The Fluent tag.
        entries: ``(time in ns since the epoch, record)`` pairs.
        chunk: Ask the server to ack with this id.
        compressed: Send the entries gzip-compressed (option ``compressed: "gzip"``).

    Returns:
        The message bytes. Its option holds ``size`` and, when given, ``chunk``.

    Raises:
        LocalProtocolError: tag or chunk is not a str (``bad-tag``, ``bad-chunk``), a time is
            not int or outside EventTime's range (``bad-time``), a record is not a mapping
            (``bad-record``), nesting is deeper than 100 levels (``too-deep``).
    """
    tag = require_str(tag, "tag")
    option = _forward_option(len(entries), chunk)
    if compressed:
        option["compressed"] = "gzip"
        # wbits=31: gzip framing.
        body = zlib.compress(_pack_entries(_unvouched(entries)), 6, wbits=31)
        return packb([tag, body, option])
    return packb([tag, [[_event_time(t), _record(r)] for t, r in entries], option])


def encode_packed_forward(
    tag: str,
    entries: Sequence[tuple[int, Mapping[str, Any]]],
    *,
    chunk: str | None = None,
) -> bytes:
    """Encode entries as one PackedForward message (entries as bin).

    Same fallbacks, return value and errors as :func:`encode_forward`.
    """
    tag = require_str(tag, "tag")
    return packb([tag, _pack_entries(_unvouched(entries)), _forward_option(len(entries), chunk)])


def encode_packed_batch(
    tag: str,
    entries: Sequence[tuple[int, Mapping[str, Any] | bytes, bool]],
    *,
    chunk: str | None = None,
) -> bytes:
    """Encode ``(time_ns, record, plain)`` entries as one PackedForward message.

    The client's batches take this path: it packs each entry straight into one buffer, and
    ``plain`` lets a record whose builder knows its contents skip the sanitising check,
    the largest per-record cost on the sender thread after packing itself. The bytes decode to
    the same entries as :func:`encode_forward` gives.

    Args:
        tag: The Fluent tag.
        entries: ``(time in ns since the epoch, record, plain)``. ``plain`` vouches that
            the record is a dict with str keys whose values are str, int, float, bool, None,
            bytes, or lists and dicts (str keys) of those: what the sanitising would leave
            as it is. Big ints still get their fallback; other records get all of them.
            A record given as bytes is a whole entry packed already (`wire.entries`): it is
            copied as it is, and its time is the one inside it.
        chunk: Ask the server to ack with this id.

    Returns:
        The message bytes. Its option holds ``size`` and, when given, ``chunk``.

    Raises:
        LocalProtocolError: as :func:`encode_forward`.
    """
    tag = require_str(tag, "tag")
    return packb([tag, _pack_entries(entries), _forward_option(len(entries), chunk)])


def encode_packed_entries(tag: str, entries: Sequence[bytes], *, chunk: str | None = None) -> bytes:
    """Wrap entries packed already (`wire.entries`) as one PackedForward message, copying
    each once; see :func:`encode_packed_batch` for the option it carries."""
    tag = require_str(tag, "tag")
    size = sum(map(len, entries))
    if size < 0x100:
        stream_head = _BIN8.pack(0xC4, size)
    elif size < 0x10000:
        stream_head = _BIN16.pack(0xC5, size)
    else:
        stream_head = _BIN32.pack(0xC6, size)
    head = b"\x93" + packb(tag) + stream_head
    return b"".join((head, *entries, packb(_forward_option(len(entries), chunk))))


def _unvouched(
    entries: Iterable[tuple[int, Mapping[str, Any]]],
) -> list[tuple[int, Mapping[str, Any], bool]]:
    return [(time_ns, record, False) for time_ns, record in entries]


def encode_message(
    tag: str, time_ns: int, record: Mapping[str, Any], *, chunk: str | None = None
) -> bytes:
    """Encode one event in Message mode; option ``{"chunk": chunk}`` only when chunk is given.

    Same fallbacks and errors as :func:`encode_forward`.
    """
    tag = require_str(tag, "tag")
    message: list[object] = [tag, _event_time(time_ns), _record(record)]
    if chunk is not None:
        message.append({"chunk": require_str(chunk, "chunk")})
    return packb(message)


def encode_ack(chunk: str | bytes) -> bytes:
    """Encode ``{"ack": chunk}``, echoing the chunk exactly: str stays str, bytes stays bin.

    Raises:
        LocalProtocolError: chunk is neither str nor bytes (``bad-chunk``).
    """
    if not isinstance(chunk, str | bytes):
        raise LocalProtocolError(
            f"chunk must be str or bytes, not {type(chunk).__name__}", code="bad-chunk"
        )
    return packb({"ack": chunk})


def encode_map(payload: Mapping[str, Any]) -> bytes:
    """Encode one control-socket message, with the fallbacks of :func:`encode_forward`.

    Raises:
        LocalProtocolError: payload is not a mapping (``bad-record``) or too deep.
    """
    return packb(_record(payload))
