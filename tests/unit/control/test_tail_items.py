"""Tail items without a daemon: lines read back, lines drawn, filters, and the cursor a
follower resumes with."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from logd.config import Layout
from logd.control import lines
from logd.control.tailing import (
    ITEM_FIELDS,
    Cursor,
    TailFilter,
    compile_grep,
    item_key,
    level_number,
    min_level,
    public,
    skip_counts,
)
from logd.write.records import normalize
from logd.write.routing import route, tail_item

T0 = 1_762_353_052_123_000_000  # 2025-11-05T14:30:52.123Z
RUN = "20251105_143052_a1b2c3d4"


def routed(raw: dict[str, Any], utc: bool) -> tuple[dict[str, Any], list[str], lines.EventRows]:
    """A record as the writer handles it: its live item, its main.log (or call file)
    lines, and its index row."""
    record = normalize("app", T0, {"app": "app", "run_id": RUN, **raw})
    layout = Layout(utc=utc)
    result = route(record, RUN, layout)
    path = "call_" if record.call_id else "/main.log"
    text = next(w.line for w in result.writes if path in w.path)
    rows: dict[tuple[str, str | None, str | None], list[dict[str, Any]]] = {}
    if result.event is not None:
        row = result.event
        kv = {} if row.kv_json is None else json.loads(row.kv_json)
        entry = {"event_type": row.event_type, "source": row.source, "message": row.message}
        rows[(row.ts, row.run_id, row.call_id)] = [{**entry, "kv": kv}]
    return tail_item(record, RUN, layout), text.rstrip("\n").split("\n"), rows


CASES = [
    {"msg": "plain", "logger": "agent"},
    {"msg": "in a session", "logger": "agent", "session_id": "s1", "level": "WARNING"},
    {"msg": "answered", "event_type": "llm:response", "kv": {"ms": 5, "ok": True, "m": "a b"}},
    {"msg": "", "event_type": "app:start", "session_id": "s1", "logger": "logd_client"},
    {
        "msg": "failed\nsecond line",
        "level": "ERROR",
        "exc": "Traceback (most recent call last):\n  x\nValueError: boom\n",
    },
    {"msg": "retry:3 attempts", "logger": "agent"},
]


@pytest.mark.parametrize("utc", [False, True], ids=["local", "utc"])
@pytest.mark.parametrize("raw", CASES, ids=[str(i) for i in range(len(CASES))])
def test_a_run_log_line_reads_back_as_the_live_item(raw: dict[str, Any], utc: bool) -> None:
    live, text, rows = routed(raw, utc)
    item = lines.run_item(text, {"app": "app", "run_id": RUN}, utc=utc, events=rows)
    assert item is not None
    assert item["line"] == live["line"] == "\n".join(text)
    assert lines.render_line(live, utc) == live["line"]
    for field in ("time", "level", "logger", "app", "run_id", "session_id", "event_type", "kv"):
        assert item[field] == live[field], field
    assert item["msg"] == live["msg"]
    assert (item["exc"] or "") == (live["exc"] or "").rstrip()
    assert item_key(item) == item_key(live)


def test_a_call_line_reads_back_with_its_call() -> None:
    raw = {"msg": "inside", "logger": "bot", "call_id": "c1", "bot_id": "7", "level": "WARNING"}
    live, text, rows = routed(raw, False)
    base = {"app": "app", "run_id": RUN, "call_id": "c1", "bot_id": "7", "session_id": None}
    item = lines.call_item(text, base, utc=False, events=rows)
    assert item is not None
    assert (item["msg"], item["level"], item["call_id"]) == ("inside", "WARNING", "c1")
    assert item["logger"] is None  # the call line does not say
    assert item["line"].endswith(" - ? - WARNING - inside")
    assert item_key(item) == item_key(live)


def test_a_word_like_an_event_type_is_an_event_only_with_its_index_row() -> None:
    _, text, rows = routed({"msg": "", "event_type": "llm:request", "kv": {"n": 1}}, False)
    as_event = lines.run_item(text, {"app": "app", "run_id": RUN}, utc=False, events=rows)
    as_text = lines.run_item(text, {"app": "app", "run_id": RUN}, utc=False, events={})
    assert as_event is not None
    assert as_text is not None
    assert (as_event["event_type"], as_event["kv"]) == ("llm:request", {"n": 1})
    # Without the row it is a plain record whose trailing `n=1` reads as an extra field;
    # its line is drawn back the same either way.
    assert (as_text["event_type"], as_text["msg"]) == (None, "llm:request")
    assert as_text["extras"] == {"n": 1}
    assert as_text["line"] == as_event["line"] == text[0]


def test_extra_fields_ride_in_text_lines_and_read_back() -> None:
    raw = {
        "msg": 'paid a=b "quoted"',
        "user_id": 42,
        "plan": "pro plus",
        "tags": ["a", "b"],
        "session_id": "s1",
    }
    live, text, rows = routed(raw, False)
    assert text[0].endswith(' - "paid a=b \\"quoted\\"" user_id=42 plan="pro plus" tags=["a","b"]')
    item = lines.run_item(text, {"app": "app", "run_id": RUN}, utc=False, events=rows)
    assert item is not None
    assert item["msg"] == 'paid a=b "quoted"'
    assert item["extras"] == {"user_id": 42, "plan": "pro plus", "tags": ["a", "b"]}
    assert item["line"] == text[0] == live["line"]
    event_raw = {"msg": "ok", "event_type": "llm:response", "kv": {"ms": 5}, "user": "u 1"}
    _, text, rows = routed(event_raw, False)
    assert text[0].endswith(' - llm:response ok ms=5 user="u 1"')
    event = lines.run_item(text, {"app": "app", "run_id": RUN}, utc=False, events=rows)
    assert event is not None
    assert (event["event_type"], event["kv"], event["extras"]) == (
        "llm:response",
        {"ms": 5},
        {"user": "u 1"},
    )
    assert event["line"] == text[0]


def test_a_session_line_keeps_every_field_and_the_extras() -> None:
    raw = {"msg": "hi", "session_id": "s1", "user_id": 42, "kv": {"a": 1}, "event_type": "x:y"}
    record = normalize("app", T0, {"app": "app", "run_id": RUN, **raw})
    result = route(record, RUN, Layout())
    line = next(w.line for w in result.writes if w.path.endswith(".jsonl"))
    item = lines.session_item(line, {"app": "app", "session_id": "s1"}, utc=False)
    assert item is not None
    assert item["extras"] == {"user_id": 42}
    assert (item["event_type"], item["kv"], item["run_id"]) == ("x:y", {"a": 1}, RUN)
    assert item["line"] == tail_item(record, RUN, Layout())["line"]
    assert lines.session_item("not json", {}, utc=False) is None


def test_public_is_the_session_file_shape() -> None:
    out = public({"msg": "m", "line": "[x] ...", "kv": None})
    assert list(out) == list(ITEM_FIELDS)
    assert (out["kv"], out["extras"], out["time"]) == ({}, {}, None)


def test_levels() -> None:
    assert [min_level(t) for t in ("debug", "INFO", "Warning", "warn", "error", "fatal", "7")] == [
        10,
        20,
        30,
        30,
        40,
        50,
        7,
    ]
    with pytest.raises(ValueError, match="'loud' is not a level"):
        min_level("loud")
    assert [level_number(x) for x in ("CRITICAL", "Level 5", "AUDIT", None)] == [50, 5, 20, 20]


def test_grep_is_a_regex_with_smart_case_and_falls_back_to_text() -> None:
    assert compile_grep("boom").search("BOOM")
    assert not compile_grep("Boom").search("BOOM")
    assert compile_grep("a.c").search("abc")
    assert compile_grep("(unclosed").search("an (unclosed paren")


ITEM: dict[str, Any] = {
    "time": "2025-11-05T14:30:52.123Z",
    "level": "WARNING",
    "logger": "agent",
    "msg": "slow answer",
    "app": "a",
    "run_id": "r",
    "session_id": "s",
    "call_id": None,
    "event_type": None,
    "kv": {},
    "exc": None,
}


@pytest.mark.parametrize(
    ("args", "matches"),
    [
        ({}, True),
        ({"level": "warning"}, True),
        ({"level": "error"}, False),
        ({"since": "2025-11-05T14:30:52.123Z"}, True),
        ({"since": "2025-11-05T14:30:52.124Z"}, False),
        ({"until": "2025-11-05T14:30:52.122Z"}, False),
        ({"grep": "^slow"}, True),
        ({"grep": "^answer"}, False),
        ({"app": "a", "session": "s", "level": "INFO", "grep": "answer"}, True),
        ({"app": "b"}, False),
        ({"events": "*"}, False),
    ],
)
def test_filters_combine(args: dict[str, Any], matches: bool) -> None:
    assert TailFilter.from_args(args).matches(ITEM) is matches


def test_grep_sees_event_fields_extras_and_the_traceback() -> None:
    event = {**ITEM, "msg": "", "event_type": "llm:request", "kv": {"model": "llama"}}
    assert TailFilter.from_args({"grep": "model=llama"}).matches(event)
    assert TailFilter.from_args({"grep": "user_id=42"}).matches({**ITEM, "extras": {"user_id": 42}})
    assert TailFilter.from_args({"grep": "ValueError"}).matches({**ITEM, "exc": "ValueError: x"})


def test_events_filter_counts_an_error_with_a_traceback_as_error_runtime() -> None:
    error = {**ITEM, "level": "ERROR", "exc": "Traceback ...\nValueError: x"}
    assert TailFilter.from_args({"events": "error:*"}).matches(error)
    assert not TailFilter.from_args({"events": "error:*"}).matches({**error, "exc": None})
    event = {**ITEM, "event_type": "llm:request"}
    assert TailFilter.from_args({"events": "llm:*"}).matches(event)


# --- the resume cursor ----------------------------------------------------------------------------


def at(ms: int, run: str = "r", n: int = 0) -> dict[str, Any]:
    seconds, millis = divmod(ms, 1000)
    return {
        "time": f"2025-11-05T14:{seconds // 60:02d}:{seconds % 60:02d}.{millis:03d}Z",
        "app": "a",
        "run_id": run,
        "msg": f"{ms}/{n}",
    }


def test_a_cursor_resumes_at_the_floor_less_what_it_showed() -> None:
    cursor = Cursor()
    floor = at(1000)
    cursor.start(floor["time"], [[*item_key(floor), 2]])  # two records at the floor then
    for item in (at(1000, n=3), at(1500), at(1500, n=1), at(1500, run="q")):
        cursor.note(item)
    args = cursor.resume_args()
    assert args["after"] == floor["time"]
    assert skip_counts(args["skip"]) == Counter(
        {item_key(floor): 3, item_key(at(1500)): 2, item_key(at(1500, run="q")): 1}
    )


def test_a_cursor_looks_back_a_slack_behind_the_newest_it_showed() -> None:
    cursor = Cursor(slack_ms=10_000)
    cursor.start(at(1000)["time"], [])
    for ms in range(1000, 60_000, 500):
        cursor.note(at(ms))
    args = cursor.resume_args()
    assert args["after"] == at(59_500 - 10_000)["time"]
    assert min(entry[0] for entry in args["skip"]) == args["after"]
    assert sum(entry[4] for entry in args["skip"]) == 21


def test_a_cursor_without_a_floor_or_records_asks_for_everything() -> None:
    cursor = Cursor()
    cursor.start(None, [])
    assert cursor.resume_args() == {"after": None, "skip": []}


def test_a_cursor_stays_small_by_looking_back_less() -> None:
    cursor = Cursor(max_keys=100)
    cursor.start(at(0)["time"], [])
    for ms in range(5000):
        cursor.note(at(ms))
    args = cursor.resume_args()
    assert len(args["skip"]) <= 100
    assert args["after"] == at(4900)["time"]
    assert {entry[0] for entry in args["skip"]} == {at(ms)["time"] for ms in range(4900, 5000)}


def test_skip_lists_are_checked() -> None:
    assert skip_counts([["t", "a", "r", "", 2], ["t", "a", "r", "", 1]]) == Counter(
        {("t", "a", "r", ""): 3}
    )
    for bad in ("x", [["t", "a", "r", 2]], [["t", "a", "r", "", 0]], [["t", "a", "r", "", True]]):
        with pytest.raises(ValueError, match="skip"):
            skip_counts(bad)
