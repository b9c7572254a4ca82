"""Routing as a table: record -> the files it lands in, and the exact lines."""

from __future__ import annotations

import json
from typing import Any

import pytest

from logd.config import Layout
from logd.index.eventline import parse_event_line
from logd.index.names import safe_name
from logd.write.records import Record, Unroutable, exception_summary, normalize
from logd.write.rejects import rejected_write
from logd.write.routing import Kind, clock_text, route

UTC = Layout(utc=True, component_files=True)
T0 = 1_762_353_052_123_456_789  # 2025-11-05T14:30:52.123456789Z
RUN = "20251105_143052_a1b2c3d4"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "app.py", line 3, in <module>\n'
    "    1 / 0\n"
    "ZeroDivisionError: division by zero"
)


def rec(**fields: Any) -> Record:
    raw = {"msg": "hello", "logger": "cycling_ai.agent", "level": "INFO", "app": "cyc"}
    raw.update(fields)
    return normalize("cyc", T0, {k: v for k, v in raw.items() if v is not None})


RUN_DIR = f"cyc/runs/{RUN}"
CASES = [
    pytest.param(rec(), [f"{RUN_DIR}/main.log", f"{RUN_DIR}/cycling_ai.agent.log"], id="plain"),
    pytest.param(
        rec(session_id="s1"),
        [f"{RUN_DIR}/main.log", f"{RUN_DIR}/cycling_ai.agent.log", "cyc/sessions/session_s1.jsonl"],
        id="session",
    ),
    pytest.param(
        rec(call_id="B2B.1", bot_id="123"),
        ["cyc/calls/2025-11-05/bot_123/call_B2B.1.log"],
        id="call-isolated",
    ),
    pytest.param(
        rec(call_id="B2B.1"),
        ["cyc/calls/2025-11-05/bot_unknown/call_B2B.1.log"],
        id="call-unknown-bot",
    ),
    pytest.param(
        rec(call_id="c", session_id="s"),
        ["cyc/sessions/session_s.jsonl", "cyc/calls/2025-11-05/bot_unknown/call_c.log"],
        id="call-with-session",
    ),
    pytest.param(
        rec(event_type="llm:request", kv={"model": "llama3.2"}),
        [f"{RUN_DIR}/main.log", f"{RUN_DIR}/cycling_ai.agent.log", "cyc/events.log"],
        id="event",
    ),
    pytest.param(
        rec(event_type="call:end", call_id="c"),
        ["cyc/calls/2025-11-05/bot_unknown/call_c.log", "cyc/events.log"],
        id="call-event-not-in-run-logs",
    ),
    pytest.param(rec(logger="main"), [f"{RUN_DIR}/main.log"], id="logger-named-main"),
    pytest.param(
        rec(level="ERROR", exc=TRACEBACK),
        [f"{RUN_DIR}/main.log", f"{RUN_DIR}/cycling_ai.agent.log", "cyc/events.log"],
        id="error-with-traceback-becomes-event",
    ),
    pytest.param(
        rec(level="WARNING", exc=TRACEBACK),
        [f"{RUN_DIR}/main.log", f"{RUN_DIR}/cycling_ai.agent.log"],
        id="warning-with-traceback-is-no-event",
    ),
    pytest.param(
        rec(app="../etc", logger="a/b"),
        [f"%2E.%2Fetc/runs/{RUN}/main.log", f"%2E.%2Fetc/runs/{RUN}/a%2Fb.log"],
        id="hostile-ids-encoded",
    ),
]


@pytest.mark.parametrize(("record", "paths"), CASES)
def test_route_paths(record: Record, paths: list[str]) -> None:
    assert [w.path for w in route(record, RUN, UTC).writes] == paths


def test_component_files_off() -> None:
    layout = Layout(utc=True, component_files=False)
    assert [w.path for w in route(rec(), RUN, layout).writes] == [f"{RUN_DIR}/main.log"]


def test_call_day_from_the_call_start_wins() -> None:
    writes = route(rec(call_id="c"), RUN, UTC, call_day="2025-11-04").writes
    assert writes[0].path == "cyc/calls/2025-11-04/bot_unknown/call_c.log"


def test_run_line_format() -> None:
    lines = {w.path: w.line for w in route(rec(session_id="20251105_143052"), RUN, UTC).writes}
    expected = "[20251105_143052] - 2025-11-05 14:30:52,123 - cycling_ai.agent - INFO - hello\n"
    assert lines[f"{RUN_DIR}/main.log"] == expected
    assert lines[f"{RUN_DIR}/cycling_ai.agent.log"] == expected


def test_run_line_without_session_says_in_progress() -> None:
    line = route(rec(), RUN, UTC).writes[0].line
    assert line.startswith("[in-progress] - 2025-11-05 14:30:52,123 - ")


def test_call_line_format() -> None:
    write = route(rec(call_id="c", thread=140204331655232, msg="Call started"), RUN, UTC).writes[0]
    assert write.kind is Kind.CALL
    assert write.line == "2025-11-05 14:30:52,123 - tid: 140204331655232 - INFO - Call started\n"


def test_traceback_follows_the_message() -> None:
    line = route(rec(level="ERROR", exc=TRACEBACK, msg="failed"), RUN, UTC).writes[0].line
    assert line.endswith(" - ERROR - failed\n" + TRACEBACK + "\n")


def test_event_line_and_run_text() -> None:
    routed = route(
        rec(
            event_type="llm:request",
            msg="",
            kv={"model": "llama3.2", "tokens_in": 512},
            session_id="abc123",
            logger="agent",
        ),
        RUN,
        UTC,
    )
    lines = {w.kind: w.line for w in routed.writes}
    expected = (
        "2025-11-05T14:30:52.123Z|llm:request|agent|model=llama3.2 tokens_in=512 session_id=abc123"
    )
    assert lines[Kind.EVENTS] == expected + "\n"
    assert lines[Kind.RUN].endswith(
        " - agent - INFO - llm:request model=llama3.2 tokens_in=512 session_id=abc123\n"
    )
    assert routed.event is not None
    assert routed.event.raw_line == expected
    assert routed.event.run_id == RUN
    assert routed.event.session_id == "abc123"
    assert json.loads(routed.event.kv_json or "") == {"model": "llama3.2", "tokens_in": 512}


def test_error_runtime_event_from_traceback() -> None:
    routed = route(rec(level="ERROR", exc=TRACEBACK, logger="websockets"), RUN, UTC)
    event = next(w.line for w in routed.writes if w.kind is Kind.EVENTS)
    parsed = parse_event_line(event.rstrip("\n"))
    assert (parsed.event_type, parsed.source) == ("error:runtime", "websockets")
    assert parsed.text == "ZeroDivisionError: division by zero"


def test_session_line_is_json_with_required_fields() -> None:
    routed = route(rec(session_id="s1", user="u7", call_id=None), RUN, UTC)
    line = next(w.line for w in routed.writes if w.kind is Kind.SESSION)
    obj = json.loads(line)
    assert obj == {
        "time": "2025-11-05T14:30:52.123Z",
        "level": "INFO",
        "logger": "cycling_ai.agent",
        "msg": "hello",
        "run_id": RUN,
        "session_id": "s1",
        "user": "u7",
    }


def test_local_time_layout_uses_local_clock() -> None:
    local = Layout(utc=False, component_files=True)
    line = route(rec(), RUN, local).writes[0].line
    assert clock_text(T0, utc=False) in line


@pytest.mark.parametrize(
    ("ident", "expected"),
    [
        ("abc", "abc"),
        ("B2B.502.79.1756047989", "B2B.502.79.1756047989"),
        ("20251105_143052", "20251105_143052"),
        ("a:b-c", "a:b-c"),
        ("..", "%2E."),
        (".hidden", "%2Ehidden"),
        ("a/b", "a%2Fb"),
        ("a\x00b", "a%00b"),
        ("", "%"),
        ("x~y", "x%7Ey"),
        ("%41", "%2541"),
    ],
)
def test_safe_name(ident: str, expected: str) -> None:
    assert safe_name(ident) == expected


def test_long_ids_are_cut_and_stay_distinct() -> None:
    a, b = "x" * 200 + "a", "x" * 200 + "b"
    assert len(safe_name(a)) == 128
    assert safe_name(a) != safe_name(b)
    assert safe_name("y" * 128) == "y" * 128


def test_safe_names_never_escape() -> None:
    for ident in ["../../etc/passwd", "/abs", "a/../../b", "\\..\\", ".", "..."]:
        name = safe_name(ident)
        assert "/" not in name
        assert name not in (".", "..")
        assert not name.startswith(".")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ([1, 2], "not a map"),
        ({"session_id": {"a": 1}}, "session_id must be a string"),
        ({"level": [1]}, "level"),
        ({"event_type": "Not An Event"}, "event_type"),
        ({"kv": "x=1"}, "kv must be a map"),
        ({"pid": "abc"}, "pid must be an integer"),
        ({"run_id": "r" * 5000}, "longer than"),
    ],
)
def test_unroutable_records(raw: object, reason: str) -> None:
    with pytest.raises(Unroutable, match=reason):
        normalize("app", T0, raw)


def test_time_out_of_range_is_unroutable() -> None:
    with pytest.raises(Unroutable, match="outside"):
        normalize("app", 10**22, {"msg": "x"})
    with pytest.raises(Unroutable, match="outside"):
        normalize("app", -1, {"msg": "x"})


def test_normalize_aliases_and_defaults() -> None:
    r = normalize("myapp.web", T0, {"message": "hi", "source": "db", "level": 30})
    assert (r.app, r.msg, r.logger, r.level, r.levelno) == ("myapp", "hi", "db", "WARNING", 30)
    r = normalize("myapp", T0, {"log": "container line"})
    assert (r.msg, r.logger, r.level) == ("container line", "myapp", "INFO")
    r = normalize("myapp", T0, {})
    assert r.msg == ""


def test_exception_summary() -> None:
    assert exception_summary(TRACEBACK) == "ZeroDivisionError: division by zero"
    chained = (
        TRACEBACK
        + "\n\nDuring handling...\n\nTraceback (most recent call last):\n"
        + ('  File "x", line 1\nmod.CustomError: bad\nthing')
    )
    assert exception_summary(chained) == "mod.CustomError: bad thing"


def test_rejected_write_keeps_reason_and_record() -> None:
    write = rejected_write(T0, "record is a list, not a map", "app", [1, 2], {"pid": 7})
    assert write.path == "_rejected/2025-11-05.jsonl"
    obj = json.loads(write.line)
    assert obj["reason"] == "record is a list, not a map"
    assert obj["record"] == [1, 2]
    assert obj["peer"] == {"pid": 7}


def test_deep_nesting_is_unroutable_not_a_crash() -> None:
    deep: object = "leaf"
    for _ in range(2000):
        deep = [deep]
    with pytest.raises(Unroutable, match="deeper"):
        normalize("app", T0, {"msg": "x", "payload": deep})
    with pytest.raises(Unroutable, match="deeper"):
        normalize("app", T0, {"msg": "x", "kv": {"a": deep}})
    write = rejected_write(T0, "deep", "app", {"payload": deep}, {})
    assert json.loads(write.line)["reason"] == "deep"


def test_moderate_nesting_is_kept() -> None:
    nested = {"a": {"b": {"c": [1, [2, [3]]]}}}
    assert normalize("app", T0, {"msg": "x", "kv": nested}).kv == nested
