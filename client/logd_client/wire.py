"""Sans-IO codec for the Fluentd Forward Protocol v1 (msgpack), shared by the daemon and the client.

It turns bytes into frozen message objects and messages into bytes; it owns no socket, clock,
thread or file, and never does I/O.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Generic, NoReturn, TypeVar

import msgpack

__all__ = [
    "Ack",
    "Closed",
    "Entries",
    "EventTime",
    "ForwardDecoder",
    "Heartbeat",
    "Helo",
    "Invalid",
    "LocalProtocolError",
    "MapDecoder",
    "Ping",
    "Pong",
    "ProtocolError",
    "RemoteProtocolError",
    "ResponseDecoder",
    "encode_ack",
    "encode_forward",
    "encode_helo",
    "encode_map",
    "encode_message",
    "encode_packed_forward",
    "encode_ping",
    "encode_pong",
    "password_digest",
    "shared_key_digest",
]

_NS_PER_S = 1_000_000_000
_TIME = struct.Struct(">II")
_RAW_LIMIT = 1000
# Nesting allowed in what we encode. msgpack's packer stops at 511 levels and its C unpacker at
# 1024; keeping well below both (and below Python's recursion limit of 1000) means whatever we
# send can be decoded, repr()'d and json-dumped by the daemon.
_MAX_ENCODE_DEPTH = 100
_DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_DEFAULT_MAX_RECORDS = 100_000
# Record values of these exact types need no sanitising before packing (big ints are caught by
# the packer's default= hook).
_PLAIN = frozenset({str, int, float, bool, type(None), bytes})
_INT_MIN = -(2**63)
_INT_END = 2**64


# --- errors -------------------------------------------------------------------------------------


class ProtocolError(Exception):
    """Base class of wire errors; never raised directly.

    Attributes:
        code: A short, stable string naming the failure (for example ``"message-too-large"``),
            meant for logs and counters.
    """

    code: str

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class LocalProtocolError(ProtocolError):
    """The caller asked for something invalid, such as encoding a tag that is not a str."""


class RemoteProtocolError(ProtocolError):
    """The peer's bytes are invalid; the decoder that raised it is now terminal."""


# --- messages -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventTime:
    """Forward EventTime: msgpack ext type 0 holding big-endian uint32 seconds and nanoseconds."""

    seconds: int
    nanoseconds: int

    @classmethod
    def from_ns(cls, ns: int) -> EventTime:
        """Split nanoseconds since the epoch into seconds and nanoseconds."""
        seconds, nanoseconds = divmod(ns, _NS_PER_S)
        return cls(seconds, nanoseconds)

    def to_ns(self) -> int:
        """Return nanoseconds since the epoch."""
        return self.seconds * _NS_PER_S + self.nanoseconds


@dataclass(frozen=True, slots=True)
class Invalid:
    """One entry that could not be decoded, found among valid ones.

    Attributes:
        reason: Human readable, e.g. ``"record is not a map"``.
        raw: ``repr()`` of the offending value, cut to 1000 characters.
    """

    reason: str
    raw: str


@dataclass(frozen=True, slots=True)
class Entries:
    """One Message, Forward, PackedForward or CompressedPackedForward message.

    Attributes:
        tag: The Fluent tag.
        entries: ``(time in ns since the epoch, record)`` pairs; record keys are str.
        option: The option map, ``{}`` when absent.
        invalid: Entries dropped from this message, with the reason.
    """

    tag: str
    entries: list[tuple[int, dict[str, Any]]]
    option: dict[str, Any]
    invalid: list[Invalid]

    @property
    def chunk(self) -> str | bytes | None:
        """The ``chunk`` option to echo in an ack, or None when no ack is wanted."""
        chunk = self.option.get("chunk")
        return chunk if isinstance(chunk, str | bytes) else None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A msgpack nil sent by a producer; servers ignore it."""


@dataclass(frozen=True, slots=True)
class Helo:
    """Server's handshake greeting: ``["HELO", {"nonce", "auth", "keepalive"}]``."""

    nonce: bytes
    auth: bytes
    keepalive: bool


@dataclass(frozen=True, slots=True)
class Ping:
    """Client's handshake answer: ``["PING", hostname, salt, hexdigest, username, password]``."""

    hostname: str
    shared_key_salt: bytes
    shared_key_hexdigest: str
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class Pong:
    """Server's handshake verdict: ``["PONG", auth_result, reason, hostname, hexdigest]``."""

    auth_result: bool
    reason: str
    hostname: str
    shared_key_hexdigest: str


@dataclass(frozen=True, slots=True)
class Ack:
    """Server's ``{"ack": chunk}``, chunk exactly as the client sent it."""

    chunk: str | bytes


@dataclass(frozen=True, slots=True)
class Closed:
    """The peer closed the stream cleanly, at a message boundary."""


_HEARTBEAT = Heartbeat()
_CLOSED = Closed()


# --- decoding helpers ---------------------------------------------------------------------------


def _ext_hook(code: int, data: bytes) -> object:
    # fixext8 and ext8 with length 8 both arrive here; the Forward spec allows either.
    if code == 0 and len(data) == 8:
        seconds, nanoseconds = _TIME.unpack(data)
        return EventTime(seconds, nanoseconds)
    return msgpack.ExtType(code, data)


def _new_unpacker(max_bytes: int) -> Any:
    # surrogateescape: a str that is not valid UTF-8 (out_forward sends packed entries as str, a
    # chunk id may be arbitrary bytes) round-trips exactly when re-encoded the same way.
    return msgpack.Unpacker(
        raw=False,
        unicode_errors="surrogateescape",
        strict_map_key=False,
        ext_hook=_ext_hook,
        max_buffer_size=max_bytes,
        max_str_len=max_bytes,
        max_bin_len=max_bytes,
        max_array_len=max_bytes,
        max_map_len=max_bytes // 2,
        max_ext_len=max_bytes,
    )


def _raw(value: object, limit: int = _RAW_LIMIT) -> str:
    if isinstance(value, str | bytes):
        value = value[: limit + 1]
    try:
        text = repr(value)
    except RecursionError:
        text = f"<{type(value).__name__} nested too deeply to show>"
    return text[:limit]


def _key(key: object) -> str:
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
                node.update((k if type(k) is str else _key(k), v) for k, v in items)
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
            return value * _NS_PER_S
        if type(value) is EventTime:
            return value.to_ns()
    if type(value) is float:
        ns = value * _NS_PER_S
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
        if type(time) is int:
            ns = time * _NS_PER_S
        elif type(time) is EventTime:
            ns = time.seconds * _NS_PER_S + time.nanoseconds
        else:
            maybe_ns = _slow_time(time)
            if maybe_ns is None:
                invalid.append(Invalid("time is not int or EventTime", _raw(item)))
                continue
            ns = maybe_ns
        if type(record) is not dict:
            invalid.append(Invalid("record is not a map", _raw(item)))
            continue
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


def _at_boundary(unpacker: Any) -> bool:
    """Whether an exhausted unpacker holds no partial object.

    tell() cannot say: msgpack consumes the head of an incomplete object. A nil fed at a
    boundary unpacks as None; fed after a partial object it completes or extends that object.
    """
    unpacker.feed(b"\xc0")
    try:
        return unpacker.unpack() is None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError):
        return False


def _collect_packed(
    blob: bytes,
    max_records: int,
    entries: list[tuple[int, dict[str, Any]]],
    invalid: list[Invalid],
) -> None:
    if not blob:
        return
    unpacker = _new_unpacker(len(blob) + 1)
    unpacker.feed(blob)
    try:
        # One past the limit is enough to know the limit is broken.
        _collect(islice(unpacker, max_records + 1), entries, invalid)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        # The outer stream is still in step, so this costs only the rest of this message.
        invalid.append(
            Invalid(f"packed entries are not valid msgpack: {exc!r}", _raw(blob[unpacker.tell() :]))
        )
    else:
        if len(entries) + len(invalid) <= max_records and not _at_boundary(unpacker):
            invalid.append(Invalid("packed entry is truncated", _raw(blob[-_RAW_LIMIT:])))
    if len(entries) + len(invalid) > max_records:
        raise RemoteProtocolError(
            f"message has more than {max_records} entries", code="too-many-records"
        )


def _option(value: object) -> dict[str, Any]:
    if value is None:
        return {}  # some peers send nil for "no option"
    if type(value) is not dict:
        raise _bad(f"option is not a map: {_short(value)}")
    return _normalize_keys(value)


def _decode_forward_message(
    obj: object, max_bytes: int, max_records: int
) -> Entries | Ping | Heartbeat:
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
        if len(second) > max_records:
            raise RemoteProtocolError(
                f"message has more than {max_records} entries", code="too-many-records"
            )
        option = _option(obj[2]) if size == 3 else {}
        _collect(second, entries, invalid)
    elif type(second) is bytes or type(second) is str:  # PackedForward
        if size == 4:
            raise _bad("PackedForward message has 4 elements")
        option = _option(obj[2]) if size == 3 else {}
        # A str (out_forward's choice) gives back its exact bytes, see _new_unpacker.
        blob = second.encode("utf-8", "surrogateescape") if isinstance(second, str) else second
        if option.get("compressed") == "gzip":
            blob, broken = _gunzip(blob, max_bytes)
            _collect_packed(blob, max_records, entries, invalid)
            if broken is not None:
                invalid.append(broken)
        else:
            _collect_packed(blob, max_records, entries, invalid)
    else:  # Message
        if size == 2:
            raise _bad("Message has no record")
        option = _option(obj[3]) if size == 4 else {}
        _collect((obj[1:3],), entries, invalid)
    return Entries(tag, entries, option, invalid)


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


def _decode_response(obj: object) -> Ack | Helo | Pong:
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


def _decode_map(obj: object) -> dict[str, Any]:
    if type(obj) is not dict:
        raise _bad(f"message is not a map: {_short(obj)}")
    return _normalize_keys(obj)


# --- decoders -----------------------------------------------------------------------------------

_Event = TypeVar("_Event")


class _Decoder(Generic[_Event]):
    """Framing shared by the decoders: buffering, limits, EOF and the terminal error state."""

    def __init__(self, *, max_message_bytes: int) -> None:
        if max_message_bytes < 1:
            raise ValueError(f"max_message_bytes must be positive, not {max_message_bytes}")
        self._max_bytes = max_message_bytes
        self._unpacker = _new_unpacker(max_message_bytes)
        self._fed = 0  # bytes given to the unpacker so far
        self._message_start = 0  # stream offset where the current message begins
        self._pending = bytearray()  # bytes beyond the unpacker's buffer limit, not fed yet
        self._eof = False
        self._error: RemoteProtocolError | None = None

    @property
    def read_size(self) -> int:
        """How many bytes to read next so the buffer limit is not exceeded (at least 1)."""
        return max(self._room() - len(self._pending), 1)

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; call :meth:`next_event` until it returns None.

        Reads larger than :attr:`read_size` are accepted but held back until the buffer has
        room, so memory grows with what the caller passes in.

        Raises:
            RemoteProtocolError: The decoder already failed (the same error again).
            LocalProtocolError: Data arrived after :meth:`receive_eof`.
        """
        if self._error is not None:
            raise self._error
        if self._eof:
            raise LocalProtocolError("data received after EOF", code="data-after-eof")
        if self._pending:
            self._pending += data
            return
        room = self._room()
        if len(data) > room:
            self._pending += data[room:]
            data = data[:room]
        self._feed(data)

    def receive_eof(self) -> None:
        """Note that the peer closed its side; :meth:`next_event` then ends with Closed.

        Raises:
            RemoteProtocolError: The decoder already failed (the same error again).
        """
        if self._error is not None:
            raise self._error
        self._eof = True

    def next_event(self) -> _Event | Closed | None:
        """Return the next decoded message, Closed after a clean EOF, or None for more data.

        Raises:
            RemoteProtocolError: The bytes are invalid or break a limit. The decoder is then
                terminal: every later call raises the same error, since msgpack cannot
                resynchronise.
        """
        if self._error is not None:
            raise self._error
        while True:
            try:
                obj: object = self._unpacker.unpack()
            except msgpack.OutOfData:
                if self._pending:
                    self._feed_pending()
                    continue
                partial = self._fed - self._message_start
                if partial > self._max_bytes:
                    self._fail_too_large(partial)
                if not self._eof:
                    return None
                if partial:
                    self._fail(
                        RemoteProtocolError(
                            f"stream ended inside a message ({partial} bytes)", code="truncated"
                        )
                    )
                return _CLOSED
            except msgpack.StackError as exc:
                self._fail(RemoteProtocolError("message nested too deeply", code="too-deep"), exc)
            except ValueError as exc:  # FormatError, UnicodeDecodeError, exceeds max_*_len
                code = "message-too-large" if "exceeds max_" in str(exc) else "malformed"
                self._fail(RemoteProtocolError(f"invalid msgpack: {exc!r}", code=code), exc)
            except (TypeError, RecursionError, msgpack.UnpackException) as exc:
                # TypeError: a map key msgpack cannot hash (an array or a map).
                self._fail(RemoteProtocolError(f"invalid msgpack: {exc!r}", code="malformed"), exc)
            end: int = self._unpacker.tell()
            size = end - self._message_start
            self._message_start = end
            if size > self._max_bytes:
                self._fail_too_large(size)
            try:
                return self._interpret(obj)
            except RemoteProtocolError as exc:
                self._fail(exc)

    def _interpret(self, obj: object) -> _Event:
        raise NotImplementedError

    def _feed(self, data: bytes | bytearray) -> None:
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull as exc:  # unreachable while we respect the room left
            self._fail(
                RemoteProtocolError("message exceeds the buffer", code="message-too-large"), exc
            )
        self._fed += len(data)

    def _room(self) -> int:
        # What msgpack's feed() accepts before BufferFull: it counts unconsumed bytes only.
        consumed: int = self._unpacker.tell()
        return self._max_bytes - (self._fed - consumed)

    def _feed_pending(self) -> None:
        room = self._room()
        if room <= 0:
            self._fail_too_large(self._fed - self._message_start + len(self._pending))
        chunk = self._pending[:room]
        del self._pending[:room]
        self._feed(chunk)

    def _fail_too_large(self, size: int) -> NoReturn:
        self._fail(
            RemoteProtocolError(
                f"message of more than {self._max_bytes} bytes ({size} so far)",
                code="message-too-large",
            )
        )

    def _fail(self, error: RemoteProtocolError, cause: BaseException | None = None) -> NoReturn:
        if cause is not None:
            error.__cause__ = cause
        self._error = error
        raise error


class ForwardDecoder(_Decoder[Entries | Ping | Heartbeat]):
    """What a server receives from a producer: Entries, Ping, Heartbeat, then Closed.

    Accepts every Forward v1 mode (Message, Forward, PackedForward as bin or str,
    CompressedPackedForward with one or more gzip members), EventTime as fixext8 or ext8, int
    or float seconds, the v1.5 entry form ``[[time, metadata], record]`` and bin keys (decoded
    as UTF-8). Strings that are not valid UTF-8 arrive with surrogate escapes (PEP 383).

    Error handling: entries that are broken among valid ones are not fatal; they are listed in
    :attr:`Entries.invalid`. A message whose shape is wrong raises RemoteProtocolError with
    code ``bad-message``; others are ``malformed``, ``too-deep``, ``message-too-large``,
    ``too-many-records`` and ``truncated``.

    Args:
        max_message_bytes: Largest message accepted, and the limit on decompressed entries.
        max_records: Most entries accepted in one message.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int = _DEFAULT_MAX_MESSAGE_BYTES,
        max_records: int = _DEFAULT_MAX_RECORDS,
    ) -> None:
        if max_records < 1:
            raise ValueError(f"max_records must be positive, not {max_records}")
        super().__init__(max_message_bytes=max_message_bytes)
        self._max_records = max_records

    def _interpret(self, obj: object) -> Entries | Ping | Heartbeat:
        return _decode_forward_message(obj, self._max_bytes, self._max_records)


class ResponseDecoder(_Decoder[Ack | Helo | Pong]):
    """What a producer receives from a server: Ack, Helo, Pong, then Closed.

    Args:
        max_message_bytes: Largest message accepted.
    """

    def __init__(self, *, max_message_bytes: int = _DEFAULT_MAX_MESSAGE_BYTES) -> None:
        super().__init__(max_message_bytes=max_message_bytes)

    def _interpret(self, obj: object) -> Ack | Helo | Pong:
        return _decode_response(obj)


class MapDecoder(_Decoder[dict[str, Any]]):
    """Framing for the control socket: a stream of msgpack maps, each a dict, then Closed.

    Keys are str at every level (bin keys decoded as UTF-8, others through ``str()``).

    Args:
        max_message_bytes: Largest message accepted.
    """

    def __init__(self, *, max_message_bytes: int = _DEFAULT_MAX_MESSAGE_BYTES) -> None:
        super().__init__(max_message_bytes=max_message_bytes)

    def _interpret(self, obj: object) -> dict[str, Any]:
        return _decode_map(obj)


# --- encoding -----------------------------------------------------------------------------------


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise LocalProtocolError(
            f"{what} must be a str, not {type(value).__name__}", code=f"bad-{what}"
        )
    return value


def _binary(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise LocalProtocolError(
            f"{what} must be bytes, not {type(value).__name__}", code=f"bad-{what}"
        )
    return bytes(value)


def _event_time(time_ns: int) -> Any:
    if type(time_ns) is not int and (not isinstance(time_ns, int) or isinstance(time_ns, bool)):
        raise LocalProtocolError(
            f"time must be int nanoseconds, not {type(time_ns).__name__}", code="bad-time"
        )
    seconds, nanoseconds = divmod(time_ns, _NS_PER_S)
    if not 0 <= seconds <= 0xFFFFFFFF:
        raise LocalProtocolError(f"time {time_ns} ns is outside EventTime's range", code="bad-time")
    # tuple.__new__ skips ExtType.__new__'s argument checks, which cost half of this function;
    # the arguments here are known to be valid.
    return tuple.__new__(msgpack.ExtType, (0, _TIME.pack(seconds, nanoseconds)))


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
            (k if type(k) is str else _key(k)): (v if type(v) in _PLAIN else _sanitize(v, depth))
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


def _packer(unicode_errors: str = "surrogateescape", *, autoreset: bool = True) -> Any:
    return msgpack.Packer(
        default=_default, use_bin_type=True, unicode_errors=unicode_errors, autoreset=autoreset
    )


def _packb(obj: object) -> bytes:
    try:
        try:
            data: bytes = _packer().pack(obj)
        except UnicodeEncodeError:
            # A lone surrogate outside surrogateescape's range: replace it rather than fail.
            data = _packer("replace").pack(obj)
    except (ValueError, OverflowError, TypeError) as exc:
        raise LocalProtocolError(f"cannot encode: {exc}", code="unencodable") from exc
    return data


def _pack_entries(entries: Sequence[tuple[int, Mapping[str, Any]]]) -> bytes:
    """Concatenated ``[EventTime, record]`` entries: a MessagePackEventStream."""
    packed = [[_event_time(t), _record(r)] for t, r in entries]
    try:
        try:
            packer = _packer(autoreset=False)
            for entry in packed:
                packer.pack(entry)
        except UnicodeEncodeError:
            packer = _packer("replace", autoreset=False)
            for entry in packed:
                packer.pack(entry)
    except (ValueError, OverflowError, TypeError) as exc:
        raise LocalProtocolError(f"cannot encode: {exc}", code="unencodable") from exc
    data: bytes = packer.bytes()
    return data


def _forward_option(size: int, chunk: str | None) -> dict[str, Any]:
    option: dict[str, Any] = {"size": size}
    if chunk is not None:
        option["chunk"] = _text(chunk, "chunk")
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
    tag = _text(tag, "tag")
    option = _forward_option(len(entries), chunk)
    if compressed:
        option["compressed"] = "gzip"
        body = zlib.compress(_pack_entries(entries), 6, wbits=31)  # wbits=31: gzip framing
        return _packb([tag, body, option])
    return _packb([tag, [[_event_time(t), _record(r)] for t, r in entries], option])


def encode_packed_forward(
    tag: str,
    entries: Sequence[tuple[int, Mapping[str, Any]]],
    *,
    chunk: str | None = None,
) -> bytes:
    """Encode entries as one PackedForward message (entries as bin).

    Same fallbacks, return value and errors as :func:`encode_forward`.
    """
    tag = _text(tag, "tag")
    return _packb([tag, _pack_entries(entries), _forward_option(len(entries), chunk)])


def encode_message(
    tag: str, time_ns: int, record: Mapping[str, Any], *, chunk: str | None = None
) -> bytes:
    """Encode one event in Message mode; option ``{"chunk": chunk}`` only when chunk is given.

    Same fallbacks and errors as :func:`encode_forward`.
    """
    tag = _text(tag, "tag")
    message: list[object] = [tag, _event_time(time_ns), _record(record)]
    if chunk is not None:
        message.append({"chunk": _text(chunk, "chunk")})
    return _packb(message)


def encode_ack(chunk: str | bytes) -> bytes:
    """Encode ``{"ack": chunk}``, echoing the chunk exactly: str stays str, bytes stays bin.

    Raises:
        LocalProtocolError: chunk is neither str nor bytes (``bad-chunk``).
    """
    if not isinstance(chunk, str | bytes):
        raise LocalProtocolError(
            f"chunk must be str or bytes, not {type(chunk).__name__}", code="bad-chunk"
        )
    return _packb({"ack": chunk})


def encode_map(payload: Mapping[str, Any]) -> bytes:
    """Encode one control-socket message, with the fallbacks of :func:`encode_forward`.

    Raises:
        LocalProtocolError: payload is not a mapping (``bad-record``) or too deep.
    """
    return _packb(_record(payload))


def encode_helo(nonce: bytes, auth: bytes = b"", keepalive: bool = True) -> bytes:
    """Encode the server's ``["HELO", {"nonce", "auth", "keepalive"}]``.

    Args:
        nonce: Random bytes the client must hash into its PING digest.
        auth: Salt for user authentication; empty when no username/password is required.
        keepalive: Whether the server allows long-lived connections.
    """
    options = {
        "nonce": _binary(nonce, "nonce"),
        "auth": _binary(auth, "auth"),
        "keepalive": bool(keepalive),
    }
    return _packb(["HELO", options])


def shared_key_digest(salt: bytes, hostname: str, nonce: bytes, shared_key: str) -> str:
    """Return ``sha512_hex(salt + hostname + nonce + shared_key)``, as PING and PONG carry it.

    Compare digests with :func:`hmac.compare_digest`.
    """
    digest = hashlib.sha512(salt)
    digest.update(hostname.encode("utf-8", "surrogateescape"))
    digest.update(nonce)
    digest.update(shared_key.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def password_digest(auth: bytes, username: str, password: str) -> str:
    """Return ``sha512_hex(auth_salt + username + password)``, the PING ``password`` field."""
    digest = hashlib.sha512(auth)
    digest.update(username.encode("utf-8", "surrogateescape"))
    digest.update(password.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def encode_ping(
    hostname: str,
    shared_key: str,
    nonce: bytes,
    *,
    salt: bytes | None = None,
    username: str = "",
    password: str = "",
) -> bytes:
    """Encode the client's ``["PING", hostname, salt, hexdigest, username, password]``.

    Args:
        hostname: The client's hostname, also hashed into the digest.
        shared_key: The shared secret; only its digest is sent.
        nonce: The nonce from the server's HELO.
        salt: The shared-key salt; 16 random bytes when None.
        username: Username, or empty when the server's HELO had an empty ``auth``.
        password: The already hashed password (see :func:`password_digest`), or empty.
    """
    hostname = _text(hostname, "hostname")
    salt = os.urandom(16) if salt is None else _binary(salt, "salt")
    digest = shared_key_digest(
        salt, hostname, _binary(nonce, "nonce"), _text(shared_key, "shared_key")
    )
    return _packb(
        ["PING", hostname, salt, digest, _text(username, "username"), _text(password, "password")]
    )


def encode_pong(
    auth_result: bool, reason: str, hostname: str, shared_key: str, nonce: bytes, salt: bytes
) -> bytes:
    """Encode the server's ``["PONG", auth_result, reason, hostname, hexdigest]``.

    The digest (over the client's salt, our hostname, our nonce and the key) is sent only on
    success: on failure it would hand a client with the wrong key an oracle for the right one.
    """
    hostname = _text(hostname, "hostname")
    digest = ""
    if auth_result:
        digest = shared_key_digest(
            _binary(salt, "salt"),
            hostname,
            _binary(nonce, "nonce"),
            _text(shared_key, "shared_key"),
        )
    return _packb(["PONG", bool(auth_result), _text(reason, "reason"), hostname, digest])
