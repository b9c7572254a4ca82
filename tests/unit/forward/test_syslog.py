"""RFC 5424 formatting and RFC 6587 octet-counting framing of forwarded records."""

from __future__ import annotations

from typing import Any

import pytest

from logd.forward.syslog import (
    escape_param,
    format_message,
    frame,
    printusascii,
    severity,
    structured_data,
    timestamp,
)

T = 1_762_353_052_123_456_789  # 2025-11-05T14:30:52.123456789Z


def fmt(record: dict[str, Any], **kwargs: Any) -> str:
    options: dict[str, Any] = {"facility": 1, "hostname": "web1"}
    options.update(kwargs)
    return format_message(T, record, **options).decode("utf-8")


@pytest.mark.parametrize(
    ("level", "sev"),
    [
        ("CRITICAL", 2),
        ("FATAL", 2),
        ("ERROR", 3),
        ("WARNING", 4),
        ("warn", 4),
        ("NOTICE", 5),
        ("INFO", 6),
        ("DEBUG", 7),
        ("TRACE", 7),
        ("Level 45", 3),
        (35, 4),
        ("nonsense", 6),
        (None, 6),
        (True, 6),
    ],
)
def test_severity_from_level(level: object, sev: int) -> None:
    assert severity(level) == sev


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ('say "hi"', 'say \\"hi\\"'),
        ("a\\b", "a\\\\b"),
        ("x]y", "x\\]y"),
        ('\\"]', '\\\\\\"\\]'),
        ("ünïcode [ok", "ünïcode [ok"),
    ],
)
def test_param_value_escaping(raw: str, escaped: str) -> None:
    assert escape_param(raw) == escaped


@pytest.mark.parametrize(
    ("text", "limit", "out"),
    [
        ("cycling-ai", 48, "cycling-ai"),
        ("my app", 48, "my_app"),
        ("ünï", 48, "_n_"),
        ("x" * 60, 48, "x" * 48),
        ("", 48, "-"),
        ("tab\there", 48, "tab_here"),
    ],
)
def test_header_fields_are_printusascii(text: str, limit: int, out: str) -> None:
    assert printusascii(text, limit) == out


def test_timestamp_is_utc_with_microseconds() -> None:
    assert timestamp(T) == "2025-11-05T14:30:52.123456Z"
    assert timestamp(0) == "1970-01-01T00:00:00.000000Z"


RECORD = {
    "app": "cycling-ai",
    "run_id": "20251105_143052_a1b2c3d4",
    "session_id": "s1",
    "level": "INFO",
    "logger": "agent",
    "msg": "Processing user message",
    "host": "box",
    "peer_pid": 4242,
}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            RECORD,
            "<14>1 2025-11-05T14:30:52.123456Z box cycling-ai 4242 - "
            '[logd@32473 run_id="20251105_143052_a1b2c3d4" session_id="s1" logger="agent" '
            'level="INFO"] Processing user message',
        ),
        (
            {**RECORD, "pid": 7, "event_type": "llm:request", "kv": {"model": "llama3.2"}},
            "<14>1 2025-11-05T14:30:52.123456Z box cycling-ai 7 llm:request "
            '[logd@32473 run_id="20251105_143052_a1b2c3d4" session_id="s1" logger="agent" '
            'level="INFO"] Processing user message model=llama3.2',
        ),
        (
            {"app": "a", "level": "ERROR", "msg": "boom", "exc": "Traceback...\nValueError: x\n"},
            '<11>1 2025-11-05T14:30:52.123456Z web1 a - - [logd@32473 level="ERROR"] '
            "boom\nTraceback...\nValueError: x",
        ),
        (
            {"app": "a", "msg": ""},
            "<14>1 2025-11-05T14:30:52.123456Z web1 a - - -",
        ),
        (
            {"app": "a", "call_id": 'B2B]"x\\', "msg": "m"},
            '<14>1 2025-11-05T14:30:52.123456Z web1 a - - [logd@32473 call_id="B2B\\]\\"x\\\\"] m',
        ),
    ],
)
def test_format_table(record: dict[str, Any], expected: str) -> None:
    assert fmt(record) == expected


def test_facility_local0_and_long_fields_cut() -> None:
    record = {"app": "a" * 60, "event_type": "category:" + "x" * 40, "level": "WARNING"}
    line = fmt(record, facility=16)
    pri, _, host, app, procid, msgid, sd = line.split(" ", 6)
    assert pri == "<132>1"  # 16 * 8 + 4
    assert (host, app, procid) == ("web1", "a" * 48, "-")
    assert msgid == ("category:" + "x" * 40)[:32]
    assert sd == '[logd@32473 level="WARNING"]'


def test_bom_only_when_asked() -> None:
    plain = format_message(T, {"app": "a", "msg": "é"}, facility=1, hostname="h")
    with_bom = format_message(T, {"app": "a", "msg": "é"}, facility=1, hostname="h", utf8_bom=True)
    assert plain.endswith(b" - \xc3\xa9")
    assert with_bom.endswith(b" - \xef\xbb\xbf\xc3\xa9")


def test_no_structured_data_is_nilvalue() -> None:
    assert structured_data({"msg": "x"}) == "-"


def test_lone_surrogates_become_valid_utf8() -> None:
    data = format_message(T, {"app": "a", "msg": "bad \udcff"}, facility=1, hostname="h")
    data.decode("utf-8")  # does not raise


@pytest.mark.parametrize(
    ("message", "framed"),
    [
        (b"<14>1 - - - - - -", b"17 <14>1 - - - - - -"),
        (b"a\nb", b"3 a\nb"),
        ("é".encode(), b"2 \xc3\xa9"),
    ],
)
def test_octet_counting(message: bytes, framed: bytes) -> None:
    assert frame(message) == framed


def test_frames_split_back_into_messages() -> None:
    """A receiver reading MSG-LEN SP MSG gets each message back, newlines included."""
    messages = [fmt({**RECORD, "msg": f"line {i}\nsecond"}).encode() for i in range(3)]
    stream = b"".join(frame(m) for m in messages)
    out = []
    while stream:
        length, _, rest = stream.partition(b" ")
        out.append(rest[: int(length)])
        stream = rest[int(length) :]
    assert out == messages
