"""Sans-IO codec for the Fluentd Forward Protocol v1 (msgpack), shared by the daemon and the client.

It turns bytes into frozen message objects and messages into bytes; it owns no socket, clock,
thread or file, and never does I/O.
"""

from .auth import encode_helo, encode_ping, encode_pong, password_digest, shared_key_digest
from .decode import DEFAULT_MAX_MESSAGE_BYTES, ForwardDecoder, MapDecoder, ResponseDecoder
from .encode import encode_ack, encode_forward, encode_map, encode_message, encode_packed_forward
from .messages import (
    Ack,
    Closed,
    Entries,
    EventTime,
    Heartbeat,
    Helo,
    Invalid,
    LocalProtocolError,
    Ping,
    Pong,
    ProtocolError,
    RemoteProtocolError,
)
from .parse import unpacked
from .prefixes import Prefixes

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
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
    "Prefixes",
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
    "unpacked",
]
