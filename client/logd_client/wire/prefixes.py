"""Decoding packed entries by the fields they share with entries decoded before.

logd_client packs every record of one context (app, run, pid, logger, level, thread,
session or call) with the same bytes between its time and its message: `[time, {fields...,
"msg": text}]` (`recordmap.EntryBuilder`). A daemon meets those bytes thousands of times a
second. Here they are decoded once and the fields kept; an entry whose bytes start the same
way then costs its time and its message, not the dozen objects msgpack would build for it.
Entries of any other shape are left to msgpack. No I/O.
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

from .entries import map_header
from .messages import EVENT_TIME_EXT, NS_PER_S
from .unpacker import EventNs, unpack_options

# An entry this module reads: a 2-array, an EventTime as fixext8 of type 0, then the map.
_ENTRY_HEAD: Final = b"\x92\xd7\x00"
_FIELDS_AT: Final = 11
# The key packed as the map's last one; its value must be a str.
_MSG_KEY: Final = b"\xa3msg"
# Fields longer than this are left to msgpack (no search runs past it).
MAX_PREFIX_BYTES: Final = 1024
# Distinct field prefixes kept (about 1.4 KiB each with their fields, 6 MiB at most); past it the
# cache starts over.
MAX_PREFIXES: Final = 4096
# A message where most entries miss (more live contexts than the cache holds) stops trying
# after this many misses, and so do the next messages. A client's first message, with each
# of its live sessions new, misses about once per session: hundreds among thousands.
_MISSES_TO_REST: Final = 256
_REST_MESSAGES: Final = 16


class Prefixes:
    """The field prefixes of entries decoded so far, and their fields as a map.

    Owned by one decoding thread. Two entries with the same bytes before their message have
    the same fields (msgpack is deterministic), so a hit needs no check beyond the bytes.
    """

    def __init__(self, max_prefixes: int = MAX_PREFIXES) -> None:
        self._fields: dict[bytes, dict[str, Any]] = {}
        self._max = max_prefixes
        self._options = unpack_options()
        self._rest = 0  # messages still to leave to msgpack
        self._misses = 0  # in this message

    def __len__(self) -> int:
        return len(self._fields)

    def start_message(self) -> bool:
        """Begin a message; whether to try its entries here (False while resting, above)."""
        self._misses = 0
        if self._rest:
            self._rest -= 1
            return False
        return True

    @property
    def resting(self) -> bool:
        """Whether the rest of this message is better left to msgpack."""
        return self._rest > 0

    def collect(self, blob: bytes, pos: int, entries: list[tuple[int, dict[str, Any]]]) -> int:
        """Append the entries of `blob` from offset `pos` on that decode by their prefix, up
        to the first that does not (or until `resting`); return that entry's offset, or
        len(blob) when every one did."""
        n = len(blob)
        find, startswith, get = blob.find, blob.startswith, self._fields.get
        unpack_time = EVENT_TIME_EXT.unpack_from
        append = entries.append
        while pos < n and startswith(_ENTRY_HEAD, pos):
            at = pos + _FIELDS_AT
            j = find(_MSG_KEY, at, at + MAX_PREFIX_BYTES)
            if j < 0 or j + 5 > n:
                break
            head = blob[j + 4]
            if head >> 5 == 5:  # fixstr
                start = j + 5
                end = start + (head & 0x1F)
            elif head == 0xD9:  # str 8
                start = j + 6
                end = start + blob[j + 5]
            elif head == 0xDA:  # str 16
                start = j + 7
                end = start + int.from_bytes(blob[j + 5 : j + 7])
            elif head == 0xDB:  # str 32
                start = j + 9
                end = start + int.from_bytes(blob[j + 5 : j + 9])
            else:
                break
            if end > n:
                break
            prefix = blob[at:j]
            fields = get(prefix)
            if fields is None:
                fields = self._learn(blob, pos, end, prefix)
                if fields is None:
                    break
                self._misses += 1
                if self._misses >= _MISSES_TO_REST and 2 * self._misses > len(entries):
                    self._rest = _REST_MESSAGES
            seconds, nanoseconds = unpack_time(blob, pos + 3)
            record = fields.copy()
            record["msg"] = blob[start:end].decode("utf-8", "surrogateescape")
            append((seconds * NS_PER_S + nanoseconds, record))
            pos = end
            if self._rest:
                break
        return pos

    def _learn(self, blob: bytes, pos: int, end: int, prefix: bytes) -> dict[str, Any] | None:
        # Decode the whole entry with msgpack, and keep its fields when the entry is what
        # the fast path assumes: a map whose last key is "msg" with a str value, str keys,
        # no key twice, and `prefix` exactly the map's header and its other pairs.
        try:
            item = msgpack.unpackb(blob[pos:end], **self._options)
        except (ValueError, TypeError, msgpack.UnpackException, RecursionError):
            return None
        if type(item) is not list or len(item) != 2 or type(item[0]) is not EventNs:
            return None
        record = item[1]
        if type(record) is not dict or not record:
            return None
        *keys, last = record
        if last != "msg" or type(record["msg"]) is not str:
            return None
        if not all(type(key) is str for key in keys):
            return None
        count, header_bytes = _map_head(prefix)
        if count != len(record):
            return None
        fields = dict(record)
        del fields["msg"]
        # The other pairs must end exactly where the "msg" key was found: decode them as
        # a map of their own and compare.
        try:
            alone = msgpack.unpackb(map_header(count - 1) + prefix[header_bytes:], **self._options)
        except (ValueError, TypeError, msgpack.UnpackException, RecursionError):
            return None
        if type(alone) is not dict or list(alone.items()) != list(fields.items()):
            return None
        if len(self._fields) >= self._max:
            self._fields.clear()
        self._fields[prefix] = fields
        return fields


def _map_head(prefix: bytes) -> tuple[int, int]:
    """(pairs, header bytes) of the msgpack map header `prefix` starts with; (-1, 0) if
    it starts with none."""
    head = prefix[0] if prefix else 0
    if head >> 4 == 8:  # fixmap
        return head & 0x0F, 1
    if head == 0xDE and len(prefix) >= 3:  # map 16
        return int.from_bytes(prefix[1:3]), 3
    if head == 0xDF and len(prefix) >= 5:  # map 32
        return int.from_bytes(prefix[1:5]), 5
    return -1, 0
