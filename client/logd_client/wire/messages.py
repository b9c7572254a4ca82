"""The wire's errors and the frozen messages its decoders return and its encoders take.

Plain data with no msgpack, socket, clock or file: no I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "Ack",
    "Closed",
    "Entries",
    "EventTime",
    "Heartbeat",
    "Helo",
    "Invalid",
    "LocalProtocolError",
    "Ping",
    "Pong",
    "ProtocolError",
    "RemoteProtocolError",
]

NS_PER_S: Final = 1_000_000_000
# EventTime's ext type 0 payload: big-endian uint32 seconds, uint32 nanoseconds.
EVENT_TIME_EXT: Final = struct.Struct(">II")


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
        seconds, nanoseconds = divmod(ns, NS_PER_S)
        return cls(seconds, nanoseconds)

    def to_ns(self) -> int:
        """Return nanoseconds since the epoch."""
        return self.seconds * NS_PER_S + self.nanoseconds


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
        packed: A PackedForward message's entries still packed (``entries`` then empty),
            from a decoder made with ``lazy_packed``; `unpacked()` decodes them. None once
            decoded.
    """

    tag: str
    entries: list[tuple[int, dict[str, Any]]]
    option: dict[str, Any]
    invalid: list[Invalid]
    packed: bytes | None = None

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
