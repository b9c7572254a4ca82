"""Cutting a record too large for one Forward message down to size, visibly.

The daemon refuses a larger message for good, so such a record would be lost. Like journald
with large fields, the record is kept instead: its message (then, if need be, its other
large fields) is cut and ends in a marker saying how much went. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any, Final

from .wire import LocalProtocolError, encode_map

__all__ = ["fit_record", "human_bytes", "record_budget"]

# Fields that place a record (its run, session, call, file) or say where it came from:
# cutting them would misfile it, so they are never cut.
_KEPT: Final = frozenset(
    {"app", "run_id", "session_id", "call_id", "bot_id", "event_type", "level", "logger"}
    | {"pid", "thread", "thread_name"}
)
# Room for the marker ("… [truncated 1023.9 KiB]") and a str header that grows.
_MARKER_BYTES: Final = 64
# Room in a message for everything but the record: its array, the bin header of the
# entries, the entry's EventTime and the option map with its chunk id.
_MESSAGE_BYTES: Final = 1024


def record_budget(max_message_bytes: int, tag: str) -> int:
    """The most a record may encode to so that, alone in a message of `tag`, it fits."""
    return max_message_bytes - _MESSAGE_BYTES - 4 * len(tag)


def fit_record(record: dict[str, Any], max_bytes: int) -> tuple[dict[str, Any], int] | None:
    """Return a copy of `record` that encodes to `max_bytes` at most, and the bytes cut.

    The message (`msg`) is cut first, then the other fields (event fields in `kv`
    included) from the largest down, each only as far as needed. A str keeps its head
    and ends in ``… [truncated 3.1 MiB]``; any other value is replaced by
    ``[truncated 3.1 MiB]``. Ids, level, logger and origin are never cut.

    Returns:
        The fitted copy and how many encoded bytes of values were cut (0 and `record`
        itself when it fits already), or None when cutting what may be cut cannot make it
        fit or the record cannot be encoded at all.
    """
    try:
        over = _encoded_bytes(record) - max_bytes
        if over <= 0:
            return record, 0
        out = dict(record)
        fields = [(out, key) for key in out if key not in _KEPT and key != "kv"]
        kv = out.get("kv")
        if isinstance(kv, dict):
            out["kv"] = kv = dict(kv)
            fields += [(kv, key) for key in kv]
        elif "kv" in out:
            fields.append((out, "kv"))
        measured = [(_encoded_bytes(where[key]), where, key) for where, key in fields]
        measured.sort(key=lambda m: (m[1] is not out or m[2] != "msg", -m[0]))
        cut = 0
        for size, where, key in measured:
            if over <= 0:
                break
            if size <= _MARKER_BYTES:
                continue
            value = where[key]
            if isinstance(value, str):
                where[key], removed = _cut_str(value, size - over - _MARKER_BYTES)
            else:
                where[key], removed = f"[truncated {human_bytes(size)}]", size
            over -= size - _encoded_bytes(where[key])
            cut += removed
        if over > 0 or _encoded_bytes(out) > max_bytes:
            return None
    except LocalProtocolError:
        return None
    return out, cut


def human_bytes(count: int) -> str:
    """`count` bytes for people: ``512 B``, ``3.1 MiB``."""
    if count < 1024:
        return f"{count} B"
    for unit, scale in (("KiB", 1 << 10), ("MiB", 1 << 20)):
        if count < scale << 10:
            return f"{count / scale:.1f} {unit}"
    return f"{count / (1 << 30):.1f} GiB"


def _encoded_bytes(value: object) -> int:
    if isinstance(value, str):  # the common case, without packing megabytes again
        size = len(_utf8(value))
        return size + (1 if size < 32 else 2 if size < 256 else 3 if size < 65536 else 5)
    # As the wire encodes it, fallbacks included; less the one-entry map around it.
    return len(encode_map({"": value})) - 2


def _utf8(text: str) -> bytes:
    # The wire's order: strict (Python's cached UTF-8, no copy of the work), then
    # surrogateescape, then "?" for lone surrogates.
    for errors in ("strict", "surrogateescape"):
        try:
            return text.encode("utf-8", errors)
        except UnicodeEncodeError:
            pass
    return text.encode("utf-8", "replace")


def _cut_str(text: str, keep_bytes: int) -> tuple[str, int]:
    """`text` cut to at most `keep_bytes` of UTF-8, at a character boundary, with the marker."""
    data = _utf8(text)
    keep = max(0, min(keep_bytes, len(data)))
    while keep and keep < len(data) and data[keep] & 0xC0 == 0x80:  # inside a character
        keep -= 1
    removed = len(data) - keep
    # ASCII: slicing the str spares a decode.
    ascii_only = len(data) == len(text)
    head = text[:keep] if ascii_only else data[:keep].decode("utf-8", "surrogateescape")
    return f"{head}… [truncated {human_bytes(removed)}]", removed
