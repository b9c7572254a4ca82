"""Record values that arrive as msgpack extension types, turned into plain values.

A record is stored as JSON and forwarded to peers that may not know a sender's
extensions, so an extension value never survives as raw bytes: Go's ``time.Time`` becomes
an ISO 8601 UTC time, any other extension ``{"ext": type, "b64": data}``, which loses
nothing. Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import struct
from datetime import datetime, timedelta
from typing import Final

__all__ = ["GO_TIME_EXT", "ExtensionValue", "extension_value", "go_time_text"]

# tinylib/msgp, which fluent-logger-golang encodes records with, sends time.Time as ext
# type 5 of 12 bytes: big-endian int64 seconds since the epoch, then int32 nanoseconds
# (msgp's AppendTime and putUnix, always in UTC).
GO_TIME_EXT: Final = 5
_GO_TIME: Final = struct.Struct(">qi")
_EPOCH: Final = datetime(1970, 1, 1)
_NS_PER_S: Final = 1_000_000_000

ExtensionValue = str | dict[str, int | str]


def go_time_text(data: bytes) -> str | None:
    """``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`` for a Go time payload, None when it is not one.

    Nanoseconds are always written (9 digits), so the text sorts as the time does and
    gives back the exact value. Times outside years 1 to 9999 are not times here.
    """
    if len(data) != _GO_TIME.size:
        return None
    seconds, nanoseconds = _GO_TIME.unpack(data)
    if not 0 <= nanoseconds < _NS_PER_S:
        return None
    try:
        moment = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        return None
    return f"{moment.isoformat()}.{nanoseconds:09d}Z"


def extension_value(code: int, data: bytes) -> ExtensionValue:
    """The plain value stored for extension ``code`` with payload ``data``.

    Returns:
        The ISO 8601 UTC text of a Go time (type 5), else ``{"ext": code, "b64": data in
        base64}``, which keeps every byte (also for a type 5 payload that is no time).
    """
    if code == GO_TIME_EXT:
        text = go_time_text(data)
        if text is not None:
            return text
    return {"ext": code, "b64": base64.b64encode(data).decode("ascii")}
