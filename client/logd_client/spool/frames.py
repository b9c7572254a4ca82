"""The spool file format: frames that each hold one Forward message, read and written by offset.

Knows nothing of directories, names or locks (`claims` does). No sockets, threads, clock, trio
or msgpack, so logd_client's sender thread and the daemon (at start) share it.

Format: a file is a sequence of frames, each one msgpack array written with fixed-width
encodings so it can be parsed here without msgpack (and the file stays a valid msgpack
stream for any other tool): `[acked, crc32, count, first_seq, chunk, message]` as
`0x96`, `0xc2`/`0xc3` (false/true), `0xce`+u32, `0xce`+u32, `0xcf`+u64, `0xda`+u16+UTF-8,
`0xc6`+u32+bytes. `crc32` covers every byte after it, so only `acked` may be rewritten.
`count` is the message's record count, `first_seq` a number only the writing process
understands. A frame that is cut short (the writer died mid-append) or fails its check
ends the readable part of the file; readers count it in a `ReadReport` and stop there.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Frame",
    "ReadReport",
    "SpoolDamage",
    "encode_frame",
    "iter_frames",
    "read_frame",
    "read_messages",
]

# Larger than any message a client sends (8 MiB) or a daemon accepts (16 MiB by default),
# small enough that a damaged length cannot make a reader allocate gigabytes.
MAX_MESSAGE_BYTES: Final = 64 << 20

_HEAD: Final = struct.Struct(">BBBIBIBQBH")  # array, acked, crc, count, seq, chunk length
_BIN: Final = struct.Struct(">BI")
_ACKED_AT: Final = 1  # offset of the acked byte in a frame
_CRC_END: Final = 7  # the crc covers the frame from here on
# CPython's zlib releases the GIL for buffers above 5 KiB.
_CRC_PIECE: Final = 4096
_ARRAY6, _FALSE, _TRUE, _U32, _U64, _STR16, _BIN32 = 0x96, 0xC2, 0xC3, 0xCE, 0xCF, 0xDA, 0xC6
_MAX_U32: Final = (1 << 32) - 1


class SpoolDamage(ValueError):
    """The file holds a frame that is cut short or fails its check.

    Attributes:
        offset: where the damaged frame starts; nothing from there on can be read.
        count: the damaged frame's record count when its header was readable, else None.
    """

    def __init__(self, message: str, *, offset: int, count: int | None) -> None:
        super().__init__(message)
        self.offset = offset
        self.count = count


@dataclass(frozen=True, slots=True)
class Frame:
    """One spooled Forward message.

    Attributes:
        offset: where the frame starts in its file.
        size: the frame's length in bytes.
        acked: whether a claimant already had it acknowledged.
        count: how many records the message holds.
        first_seq: the writing process's own number; meaningless to anyone else.
        chunk: the message's chunk id, as its ack will echo it.
        message: the complete Forward message, to send as it is.
    """

    offset: int
    size: int
    acked: bool
    count: int
    first_seq: int
    chunk: str
    message: bytes

    @property
    def end(self) -> int:
        """Where the next frame starts."""
        return self.offset + self.size


@dataclass
class ReadReport:
    """What reading one or more spool files found; readers add to it as they go.

    Attributes:
        frames: frames yielded (not acked yet).
        acked_frames: frames skipped because a claimant had them acknowledged already.
        damaged_frames: frames cut short or failing their check (at most one per file).
        damaged_records: records in those frames, where their header was readable.
        damaged_bytes: bytes from the damaged frame to the end of its file.
    """

    frames: int = 0
    acked_frames: int = 0
    damaged_frames: int = 0
    damaged_records: int = 0
    damaged_bytes: int = 0


def encode_frame(chunk: str, message: bytes, *, count: int, first_seq: int = 0) -> bytes:
    """Encode one Forward message as a spool frame (not acked).

    Args:
        chunk: the chunk id inside `message`.
        message: a complete Forward message.
        count: how many records it holds.
        first_seq: the writer's own number for it (0 to 2**64 - 1).

    Raises:
        ValueError: a field does not fit its encoding.
    """
    chunk_bytes = chunk.encode("utf-8", "surrogateescape")
    if len(chunk_bytes) > 0xFFFF or len(message) > MAX_MESSAGE_BYTES or not 0 <= count <= _MAX_U32:
        raise ValueError("chunk, message or count too large for a spool frame")
    head = _HEAD.pack(
        _ARRAY6, _FALSE, _U32, 0, _U32, count, _U64, first_seq, _STR16, len(chunk_bytes)
    )
    frame = bytearray(head)
    frame += chunk_bytes
    frame += _BIN.pack(_BIN32, len(message))
    frame += message
    struct.pack_into(">I", frame, 3, _crc32(memoryview(frame)[_CRC_END:]))
    return bytes(frame)


def _crc32(data: memoryview) -> int:
    """zlib.crc32 in pieces small enough that it keeps the GIL.

    On a larger buffer crc32 releases the GIL, and the sender thread then waits up to a
    switch interval (5 ms) to get it back from a busy app thread: twice per spooled
    frame, that made spooling slower than a tight logging loop.
    """
    crc = 0
    for start in range(0, len(data), _CRC_PIECE):
        crc = zlib.crc32(data[start : start + _CRC_PIECE], crc)
    return crc


def read_frame(fd: int, offset: int) -> Frame | None:
    """Read the frame at `offset` of an open spool file; None at the end of the file.

    Raises:
        SpoolDamage: the frame is cut short or fails its check.
        OSError: reading failed.
    """
    head = os.pread(fd, _HEAD.size, offset)
    if not head:
        return None
    if len(head) < _HEAD.size:
        raise SpoolDamage("frame header cut short", offset=offset, count=None)
    array, acked, u32a, _, u32b, count, u64, first_seq, str16, chunk_len = _HEAD.unpack(head)
    if (array, u32a, u32b, u64, str16) != (_ARRAY6, _U32, _U32, _U64, _STR16) or acked not in (
        _FALSE,
        _TRUE,
    ):
        raise SpoolDamage("not a spool frame", offset=offset, count=None)
    rest_at = offset + _HEAD.size
    rest = os.pread(fd, chunk_len + _BIN.size, rest_at)
    if len(rest) < chunk_len + _BIN.size:
        raise SpoolDamage("frame cut short", offset=offset, count=count)
    marker, length = _BIN.unpack_from(rest, chunk_len)
    if marker != _BIN32 or length > MAX_MESSAGE_BYTES:
        raise SpoolDamage("bad message header", offset=offset, count=count)
    message = os.pread(fd, length, rest_at + len(rest))
    if len(message) < length:
        raise SpoolDamage("frame cut short", offset=offset, count=count)
    crc = zlib.crc32(head[_CRC_END:])
    crc = zlib.crc32(rest, crc)
    if zlib.crc32(message, crc) != struct.unpack_from(">I", head, 3)[0]:
        raise SpoolDamage("frame fails its checksum", offset=offset, count=count)
    return Frame(
        offset=offset,
        size=_HEAD.size + len(rest) + length,
        acked=acked == _TRUE,
        count=count,
        first_seq=first_seq,
        chunk=rest[:chunk_len].decode("utf-8", "surrogateescape"),
        message=message,
    )


def iter_frames(fd: int, report: ReadReport | None = None, *, start: int = 0) -> Iterator[Frame]:
    """Yield the frames of an open spool file not yet acked, from `start`, in order.

    Error handling:
        A damaged frame ends the iteration; it and the bytes after it are added to `report`.
    """
    report = report if report is not None else ReadReport()
    offset = start
    while True:
        try:
            frame = read_frame(fd, offset)
        except SpoolDamage as damage:
            report.damaged_frames += 1
            report.damaged_records += damage.count or 0
            report.damaged_bytes += max(0, os.fstat(fd).st_size - offset)
            return
        if frame is None:
            return
        offset = frame.end
        if frame.acked:
            report.acked_frames += 1
            continue
        report.frames += 1
        yield frame


def read_messages(path: Path, report: ReadReport | None = None) -> Iterator[bytes]:
    """Yield every not yet acked Forward message of a spool file, oldest first.

    Reads without claiming: to deliver a file, claim it (`Claim`) and use `Claim.frames()`.

    Args:
        path: the spool file.
        report: collects what was skipped, including a damaged or truncated last frame.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for frame in iter_frames(fd, report):
            yield frame.message
    finally:
        os.close(fd)


def read_first_seq(fd: int, offset: int) -> int | None:
    head = os.pread(fd, _HEAD.size, offset)
    if len(head) < _HEAD.size or head[0] != _ARRAY6:
        return None
    first_seq: int = _HEAD.unpack(head)[7]
    return first_seq


def write_acked(fd: int, offset: int) -> None:
    os.pwrite(fd, bytes((_TRUE,)), offset + _ACKED_AT)
