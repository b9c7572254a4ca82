"""RFC 5424 syslog messages with RFC 6587 octet-counting framing, from forwarded records.

Pure: no sockets, no clock. A record keeps its ids in one structured-data element,
`[logd@32473 run_id="…" session_id="…" call_id="…" …]` (32473 is the enterprise number
RFC 5612 reserves for examples), its app as APP-NAME and its event type as MSGID.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from logd.index.eventline import format_event_line
from logd.index.levels import LEVELS

SD_ID = "logd@32473"
NILVALUE = "-"
BOM = b"\xef\xbb\xbf"
# RFC 5424 §6: field lengths in PRINTUSASCII characters.
MAX_HOSTNAME = 255
MAX_APP_NAME = 48
MAX_PROCID = 128
MAX_MSGID = 32
_SD_PARAMS = ("run_id", "session_id", "call_id", "bot_id", "logger", "level")


def severity(level: object) -> int:
    """RFC 5424 severity (0 emergency … 7 debug) for a Python level name or number."""
    if isinstance(level, bool):
        levelno = 20
    elif isinstance(level, int):
        levelno = level
    elif isinstance(level, str):
        name = level.strip().upper()
        if name in LEVELS:
            levelno = LEVELS[name]
        elif name.startswith("LEVEL ") and name[6:].isdigit():
            levelno = int(name[6:])  # logging's name for an unnamed number
        else:
            levelno = 20
    else:
        levelno = 20
    for floor, sev in ((50, 2), (40, 3), (30, 4), (25, 5), (20, 6)):
        if levelno >= floor:
            return sev
    return 7


def printusascii(text: str, limit: int) -> str:
    """A header field: characters 33-126 only (others become `_`), at most `limit`; `-` if empty."""
    cleaned = "".join(c if "!" <= c <= "~" else "_" for c in text[:limit])
    return cleaned or NILVALUE


def escape_param(value: str) -> str:
    """PARAM-VALUE escaping (RFC 5424 §6.3.3): `\\`, `"` and `]` get a backslash."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def timestamp(time_ns: int) -> str:
    """RFC 3339 in UTC with microseconds, the most TIME-SECFRAC allows (6 digits)."""
    seconds, rest_ns = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest_ns // 1000:06d}Z"


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def structured_data(record: Mapping[str, Any]) -> str:
    """The `[logd@32473 …]` element with the record's ids, logger and level present."""
    params = [
        f'{name}="{escape_param(_text(record[name]))}"'
        for name in _SD_PARAMS
        if record.get(name) not in (None, "")
    ]
    if not params:
        return NILVALUE
    return f"[{SD_ID} {' '.join(params)}]"


def message_text(time_ns: int, record: Mapping[str, Any]) -> str:
    """MSG: the text, event fields as ` key=value` (as in events.log), then the traceback."""
    text = _text(record.get("msg"))
    kv = record.get("kv")
    if isinstance(kv, Mapping) and kv:
        # The event log's own quoting, so MSG reads and parses like its message column.
        line = format_event_line(time_ns, "x:x", "x", text, {str(k): v for k, v in kv.items()})
        text = line.split("|", 3)[3]
    exc = record.get("exc")
    if exc:
        text = f"{text}\n{_text(exc).rstrip()}"
    return text


def format_message(
    time_ns: int,
    record: Mapping[str, Any],
    *,
    facility: int,
    hostname: str,
    utf8_bom: bool = False,
) -> bytes:
    """One RFC 5424 SYSLOG-MSG for a forwarded record.

    Args:
        time_ns: the record's time (the producer's clock).
        record: the forwarded map (`hub.outbound`): `app`, `level`, `msg`, ids, `kv`, ….
        facility: syslog facility number (1 = user, 16 = local0).
        hostname: HOSTNAME when the record carries no `host` of its own.
        utf8_bom: start MSG with the BOM RFC 5424 §6.4 asks of UTF-8 text. Off by
            default: rsyslog keeps it as part of the message (rsyslog issue #284).
    """
    pri = facility * 8 + severity(record.get("level"))
    host = printusascii(_text(record.get("host")) or hostname, MAX_HOSTNAME)
    app = printusascii(_text(record.get("app")), MAX_APP_NAME)
    pid = record.get("pid")
    if pid is None:
        pid = record.get("peer_pid")
    procid = printusascii(_text(pid), MAX_PROCID)
    msgid = printusascii(_text(record.get("event_type")), MAX_MSGID)
    header = f"<{pri}>1 {timestamp(time_ns)} {host} {app} {procid} {msgid} "
    head = (header + structured_data(record)).encode("utf-8", "replace")
    text = message_text(time_ns, record)
    if not text:
        return head
    body = text.encode("utf-8", "replace")
    return head + b" " + (BOM + body if utf8_bom else body)


def frame(message: bytes) -> bytes:
    """RFC 6587 §3.4.1 octet counting: `MSG-LEN SP SYSLOG-MSG`, so MSG may hold newlines."""
    return b"%d %b" % (len(message), message)
