"""Frames of the forward buffer: one batch as bytes, and back. Pure: no files, no clock.

A frame is a 20-byte header (payload bytes, CRC-32, seq, records) and a msgpack map
`{"tag", "entries": [[time_ns, record], ...]}`. The CRC covers seq, records and
payload, so a torn or damaged frame is told apart from a whole one.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from logd_client import wire

Entry = tuple[int, Mapping[str, Any]]
HEADER = struct.Struct(">IIQI")  # payload bytes, crc32(seq, records, payload), seq, records
_SEQ_RECORDS = struct.Struct(">QI")
# One batch's payload is split below this so a Forward message stays far under the
# receiver's limit (logd: 16 MiB, Fluent Bit: buffer_max_size).
SPLIT_PAYLOAD_BYTES = 4 * 1024 * 1024
# Anything bigger in a header is damage, not a batch (one record alone cannot reach it).
MAX_PAYLOAD_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Batch:
    """A buffered batch as the sender gets it; `seq` increases by one per batch."""

    seq: int
    tag: str
    entries: list[tuple[int, dict[str, Any]]]


def _crc(seq: int, records: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(_SEQ_RECORDS.pack(seq, records)))


def pack_frame(seq: int, records: int, payload: bytes) -> bytes:
    """Header and payload of one frame."""
    return HEADER.pack(len(payload), _crc(seq, records, payload), seq, records) + payload


def header_records(data: bytes, offset: int) -> int:
    """The record count a frame's header claims (for counting a damaged frame)."""
    records: int = HEADER.unpack_from(data, offset)[3]
    return records


def encode_payloads(tag: str, entries: Sequence[Entry]) -> list[tuple[bytes, int]]:
    """Payloads for one batch, halved until each is under SPLIT_PAYLOAD_BYTES."""
    payload = wire.encode_map({"tag": tag, "entries": [[t, r] for t, r in entries]})
    if len(payload) <= SPLIT_PAYLOAD_BYTES or len(entries) == 1:
        return [(payload, len(entries))]
    half = len(entries) // 2
    return encode_payloads(tag, entries[:half]) + encode_payloads(tag, entries[half:])


def decode_batch(seq: int, payload: bytes) -> Batch | None:
    """The batch in a frame's payload, or None if it is not one of ours."""
    decoder = wire.MapDecoder(max_message_bytes=MAX_PAYLOAD_BYTES)
    try:
        decoder.receive_data(payload)
        decoder.receive_eof()
        obj = decoder.next_event()
    except wire.RemoteProtocolError:
        return None
    if not isinstance(obj, dict):
        return None
    tag, raw = obj.get("tag"), obj.get("entries")
    if not isinstance(tag, str) or not isinstance(raw, list):
        return None
    entries: list[tuple[int, dict[str, Any]]] = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2):
            return None
        time_ns, record = item
        if not isinstance(time_ns, int) or not isinstance(record, dict):
            return None
        entries.append((time_ns, record))
    return Batch(seq, tag, entries)


def parse_frame(data: bytes, offset: int) -> tuple[int, int, int] | None:
    """`(seq, records, frame bytes)` of a whole, intact frame at `offset`, else None."""
    end = offset + HEADER.size
    if end > len(data):
        return None
    length, crc, seq, records = HEADER.unpack_from(data, offset)
    if length > MAX_PAYLOAD_BYTES or end + length > len(data):
        return None
    if _crc(seq, records, data[end : end + length]) != crc:
        return None
    return seq, records, HEADER.size + length


def damaged_size(data: bytes, offset: int) -> int | None:
    """The size of a frame that fails its CRC, if a sound frame follows it.

    A bad frame followed by nothing is a torn append, cut off; one followed by a good
    frame is damage in place, skipped so the batches after it survive.
    """
    if offset + HEADER.size > len(data):
        return None
    length: int = HEADER.unpack_from(data, offset)[0]
    following = offset + HEADER.size + length
    if length > MAX_PAYLOAD_BYTES or following >= len(data):
        return None
    if parse_frame(data, following) is None:
        return None
    return following - offset
