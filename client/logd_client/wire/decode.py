"""The incremental decoders: bytes in, wire messages out, with buffer limits and EOF.

Sans-IO: the caller feeds bytes it read and asks for events; nothing here touches a socket,
clock, thread or file.
"""

from __future__ import annotations

from typing import Any, Generic, NoReturn, TypeVar

import msgpack

from .messages import (
    Ack,
    Closed,
    Entries,
    Heartbeat,
    Helo,
    LocalProtocolError,
    Ping,
    Pong,
    RemoteProtocolError,
)
from .parse import decode_forward_message, decode_map, decode_response
from .unpacker import new_unpacker

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "ForwardDecoder", "MapDecoder", "ResponseDecoder"]

# The daemon's default limit on one message, which logd's client keeps its messages within.
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_CLOSED = Closed()

_Event = TypeVar("_Event")


READ_CHUNK = 64 * 1024


class _Decoder(Generic[_Event]):
    """Framing shared by the decoders: buffering, limits, EOF and the terminal error state."""

    def __init__(self, *, max_message_bytes: int) -> None:
        if max_message_bytes < 1:
            raise ValueError(f"max_message_bytes must be positive, not {max_message_bytes}")
        self._max_bytes = max_message_bytes
        # Made on the first byte and dropped again at every message boundary: an idle
        # connection then holds no Unpacker (about 44 KiB each, mostly its parse stack).
        self._unpacker: Any = None
        self._fed = 0  # bytes given to the unpacker so far
        self._message_start = 0  # stream offset where the current message begins
        self._pending = bytearray()  # bytes beyond the unpacker's buffer limit, not fed yet
        self._eof = False
        self._error: RemoteProtocolError | None = None

    @property
    def read_size(self) -> int:
        """How many bytes to read next: at most 64 KiB, never past the buffer limit, at least 1.

        Capped because a socket read allocates its full size up front: asking for the
        whole 16 MiB limit would map and unmap that much on every read.
        """
        return max(min(self._room() - len(self._pending), READ_CHUNK), 1)

    @property
    def in_message(self) -> bool:
        """Whether bytes of a message not returned yet are buffered.

        Right after :meth:`next_event` returned None, that is a message partly received: a
        server stopping or closing idle connections lets such a peer finish it first.
        """
        if self._pending:
            return True
        return self._unpacker is not None and self._fed > self._message_start

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
            if self._unpacker is None:
                if self._pending:
                    self._feed_pending()
                    continue
                return _CLOSED if self._eof else None
            try:
                obj: object = self._unpacker.unpack()
            except msgpack.OutOfData:
                if self._pending:
                    self._feed_pending()
                    continue
                partial = self._fed - self._message_start
                if partial > self._max_bytes:
                    self._fail_too_large(partial)
                if not partial:
                    self._unpacker = None
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
            if end == self._fed and not self._pending:
                # Nothing buffered past this message: let the Unpacker go now, not after
                # the caller has handled the message (which may take a while).
                self._unpacker = None
            try:
                return self._interpret(obj)
            except RemoteProtocolError as exc:
                self._fail(exc)

    def _interpret(self, obj: object) -> _Event:
        raise NotImplementedError

    def _feed(self, data: bytes | bytearray) -> None:
        if not data:
            return
        if self._unpacker is None:
            self._unpacker = new_unpacker(self._max_bytes)
            self._fed = self._message_start = 0
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull as exc:  # unreachable while we respect the room left
            self._fail(
                RemoteProtocolError("message exceeds the buffer", code="message-too-large"), exc
            )
        self._fed += len(data)

    def _room(self) -> int:
        # What msgpack's feed() accepts before BufferFull: it counts unconsumed bytes only.
        if self._unpacker is None:
            return self._max_bytes
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
    ``too-many-records`` (only with ``max_records``) and ``truncated``.

    Args:
        max_message_bytes: Largest message accepted, and the limit on decompressed entries.
            Messages are bounded by bytes, as Fluentd and Fluent Bit bound them.
        max_records: Most entries accepted in one message; None (the default) for no count
            limit beyond what fits in ``max_message_bytes``.
        lazy_packed: Leave the entries of PackedForward messages packed, in
            :attr:`Entries.packed`, for `unpacked()` to decode later (not with
            ``max_records``, which must count them on arrival). Broken packed entries are
            then found by `unpacked()`.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_records: int | None = None,
        lazy_packed: bool = False,
    ) -> None:
        if max_records is not None and max_records < 1:
            raise ValueError(f"max_records must be positive, not {max_records}")
        super().__init__(max_message_bytes=max_message_bytes)
        self._max_records = max_records
        self._lazy = lazy_packed

    def _interpret(self, obj: object) -> Entries | Ping | Heartbeat:
        return decode_forward_message(
            obj, self._max_bytes, self._max_records, lazy_packed=self._lazy
        )


class ResponseDecoder(_Decoder[Ack | Helo | Pong]):
    """What a producer receives from a server: Ack, Helo, Pong, then Closed.

    Args:
        max_message_bytes: Largest message accepted.
    """

    def __init__(self, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        super().__init__(max_message_bytes=max_message_bytes)

    def _interpret(self, obj: object) -> Ack | Helo | Pong:
        return decode_response(obj)


class MapDecoder(_Decoder[dict[str, Any]]):
    """Framing for the control socket: a stream of msgpack maps, each a dict, then Closed.

    Keys are str at every level (bin keys decoded as UTF-8, others through ``str()``).

    Args:
        max_message_bytes: Largest message accepted.
    """

    def __init__(self, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        super().__init__(max_message_bytes=max_message_bytes)

    def _interpret(self, obj: object) -> dict[str, Any]:
        return decode_map(obj)
