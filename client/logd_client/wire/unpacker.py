"""msgpack's Unpacker as the codec sets it up: its size limits, str that round-trips as
bytes, EventTime decoded as `EventNs` and other extensions as plain values, and whether
an exhausted unpacker stopped between objects.

Shared by the stream decoders (`decode`) and PackedForward entries (`parse`), so a record
unpacks alike whichever way it came. No I/O.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .extensions import extension_value
from .messages import EVENT_TIME_EXT, NS_PER_S


class EventNs(int):
    """An EventTime as decoded: nanoseconds since the epoch, marked as a time by its type.

    An int subclass rather than `EventTime`: the daemon decodes one per record, and this
    skips building a frozen dataclass only to turn it into nanoseconds again. Entries keep
    it as their time: it is an int in every use, and arithmetic on it gives plain ints.
    """

    __slots__ = ()


def _ext_hook(code: int, data: bytes) -> object:
    # fixext8 and ext8 with length 8 both arrive here; the Forward spec allows either.
    if code == 0 and len(data) == 8:
        seconds, nanoseconds = EVENT_TIME_EXT.unpack(data)
        return EventNs(seconds * NS_PER_S + nanoseconds)
    # Any other extension in a record (Go's time.Time, an app's own type) becomes a plain
    # value here, so what is stored and forwarded is JSON-able and loses nothing.
    return extension_value(code, data)


def unpack_options() -> dict[str, Any]:
    """How every unpacker here decodes (`new_unpacker()`), for `msgpack.unpackb()` of one
    object whose bytes are already bounded."""
    # surrogateescape: a str that is not valid UTF-8 (out_forward sends packed entries as str, a
    # chunk id may be arbitrary bytes) round-trips exactly when re-encoded the same way.
    return {
        "raw": False,
        "unicode_errors": "surrogateescape",
        "strict_map_key": False,
        "ext_hook": _ext_hook,
    }


def new_unpacker(max_bytes: int) -> Any:
    return msgpack.Unpacker(
        **unpack_options(),
        max_buffer_size=max_bytes,
        read_size=min(max_bytes, 64 * 1024),
        max_str_len=max_bytes,
        max_bin_len=max_bytes,
        max_array_len=max_bytes,
        max_map_len=max_bytes // 2,
        max_ext_len=max_bytes,
    )


def at_boundary(unpacker: Any) -> bool:
    """Whether an exhausted unpacker holds no partial object.

    tell() cannot say: msgpack consumes the head of an incomplete object. A nil fed at a
    boundary unpacks as None; fed after a partial object it completes or extends that object.
    """
    unpacker.feed(b"\xc0")
    try:
        return unpacker.unpack() is None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError):
        return False
