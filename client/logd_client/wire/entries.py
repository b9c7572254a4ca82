"""PackedForward entries built from parts packed ahead of time.

A process's log records share most fields with the records before them: app, run, pid,
logger, level, thread. Packing those once and joining the bytes with each record's time and
message makes encoding a record a few concatenations, where packing a fresh map costs
several times that. The bytes are the same ``[EventTime, record]`` entry that
:func:`~logd_client.wire.encode.encode_packed_batch` packs, so the daemon reads them alike.

Strict: every str must be valid UTF-8, every int fit in 64 bits. What is not raises, and
the caller takes the general encoder with its fallbacks instead. Pure: no I/O.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping
from typing import Any, Final

import msgpack

from .messages import NS_PER_S

__all__ = [
    "decode_entry",
    "encode_entry",
    "entry_time",
    "keyed_str_heads",
    "map_header",
    "packed_fields",
    "packed_str",
    "str_header",
]

# fixarray of 2, then fixext 8 of type 0 (EventTime): seconds and nanoseconds, big-endian.
_ENTRY_HEAD: Final = struct.Struct(">3sII")
_ENTRY_PREFIX: Final = b"\x92\xd7\x00"
_STR8: Final = struct.Struct(">BB")
_STR16: Final = struct.Struct(">BH")
_STR32: Final = struct.Struct(">BI")
_MAP16: Final = struct.Struct(">BH")
_MAP32: Final = struct.Struct(">BI")
_FIXMAPS: Final = tuple(bytes((0x80 | n,)) for n in range(16))


def packed_str(text: str) -> bytes:
    """``text`` as a msgpack str (the shortest header for its length).

    Raises:
        UnicodeEncodeError: ``text`` holds a lone surrogate.
    """
    data = text.encode()
    return str_header(len(data)) + data


def str_header(size: int) -> bytes:
    """The header of a msgpack str of ``size`` bytes of UTF-8."""
    if size < 32:
        return bytes((0xA0 | size,))
    if size < 0x100:
        return _STR8.pack(0xD9, size)
    if size < 0x10000:
        return _STR16.pack(0xDA, size)
    return _STR32.pack(0xDB, size)


def keyed_str_heads(key: str) -> tuple[bytes, ...]:
    """``key`` packed, then the header of a str of n bytes, for every n below 256: a
    record's "msg" and its text's header in one lookup."""
    packed_key = packed_str(key)
    return tuple(packed_key + str_header(n) for n in range(0x100))


# entry_time(seconds, nanoseconds): the head of an entry, its array header and EventTime
# (then comes the record). A partial of the C packer, since handlers call it per record.
# Raises struct.error for a time out of EventTime's range.
entry_time: Final = functools.partial(_ENTRY_HEAD.pack, _ENTRY_PREFIX)


def map_header(count: int) -> bytes:
    """The header of a msgpack map of ``count`` pairs."""
    if count < 16:
        return _FIXMAPS[count]
    if count < 0x10000:
        return _MAP16.pack(0xDE, count)
    return _MAP32.pack(0xDF, count)


def packed_fields(fields: Mapping[str, Any]) -> bytes:
    """The key/value pairs of ``fields`` as packed in a map, without the map's header.

    Raises:
        ValueError, TypeError, OverflowError, UnicodeEncodeError: a key or value msgpack
            cannot pack strictly (lone surrogates, ints beyond 64 bits, unknown objects).
    """
    packer = msgpack.Packer(use_bin_type=True, autoreset=False)
    for key, value in fields.items():
        if type(key) is not str:
            raise TypeError(f"field names must be str, not {type(key).__name__}")
        packer.pack(key)
        packer.pack(value)
    data: bytes = packer.bytes()
    return data


def encode_entry(time_ns: int, *parts: bytes) -> bytes:
    """One ``[EventTime, record]`` entry: the time, then the record's packed ``parts``.

    ``parts`` must start with :func:`map_header` of the pairs the rest hold. (The client's
    handler joins the same parts itself, :func:`entry_time` first, to save a call.)

    Raises:
        struct.error: ``time_ns`` is negative or beyond EventTime's range.
    """
    return b"".join((entry_time(*divmod(time_ns, NS_PER_S)), *parts))


def decode_entry(entry: bytes) -> tuple[int, dict[str, Any]]:
    """``(time_ns, record)`` of an entry built here: for diagnostics and the rare paths
    (dropping, cutting) that look into a queued record."""
    unpacked = msgpack.unpackb(entry, raw=False, strict_map_key=False)
    stamp, record = unpacked
    seconds, nanoseconds = struct.unpack(">II", stamp.data)
    return seconds * NS_PER_S + nanoseconds, record
