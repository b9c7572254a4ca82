"""The record maps logd_client builds from LogRecords and events (no sockets)."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import logd_client as logd
import pytest
from logd_client import context
from logd_client.recordmap import build_event, build_record, describe_exception, format_exception


def make_record(
    msg: str = "hello %s",
    args: tuple[Any, ...] = ("world",),
    *,
    level: int = logging.INFO,
    extra: dict[str, Any] | None = None,
    exc_info: bool = False,
    stack_info: bool = False,
) -> logging.LogRecord:
    logger = logging.getLogger("test_client_record.agent")
    info = sys.exc_info() if exc_info else None
    sinfo = "Stack (most recent call last):\n  frame" if stack_info else None
    return logger.makeRecord(logger.name, level, "f.py", 1, msg, args, info, "func", extra, sinfo)


def test_plain_record_has_the_core_fields_and_nothing_absent() -> None:
    rec = make_record()
    out = build_record(rec, "myapp", None)
    assert out == {
        "msg": "hello world",
        "level": "INFO",
        "logger": "test_client_record.agent",
        "app": "myapp",
        "pid": rec.process,
        "thread": threading.get_ident(),
        "thread_name": threading.current_thread().name,
    }


def test_run_id_is_included_when_known() -> None:
    assert build_record(make_record(), "a", "20250101_000000_0123abcd")["run_id"] == (
        "20250101_000000_0123abcd"
    )


def test_message_args_are_formatted_and_a_bad_format_is_kept_not_raised() -> None:
    assert build_record(make_record("%d items", (3,)), "a", None)["msg"] == "3 items"
    out = build_record(make_record("%d items", ("x",)), "a", None)
    assert out["msg"].startswith("%d items (logd_client: formatting failed")


def test_exception_and_stack_info_become_exc() -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        rec = make_record(level=logging.ERROR, exc_info=True, stack_info=True)
    out = build_record(rec, "a", None)
    assert out["exc"].startswith("Traceback (most recent call last):")
    assert "KeyError: 'missing'" in out["exc"]
    assert out["exc"].endswith("Stack (most recent call last):\n  frame")
    assert rec.exc_text  # cached for the other handlers, as Formatter does


def test_extra_fields_are_sent_and_odd_values_become_str() -> None:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    extra = {"user": "ann", "n": 3, "ok": True, "tags": ["a"], "obj": Thing(), "none": None}
    out = build_record(make_record(extra=extra), "a", None)
    assert {k: out[k] for k in extra} == {
        "user": "ann",
        "n": 3,
        "ok": True,
        "tags": ["a"],
        "obj": "a thing",
        "none": None,
    }


def test_extra_fields_do_not_replace_core_fields() -> None:
    rec = make_record()
    rec.__dict__.update({"app": "evil", "level": "NOPE", "pid": -1})
    out = build_record(rec, "a", None)
    assert (out["app"], out["level"], out["pid"]) == ("a", "INFO", rec.process)


def test_session_and_call_come_from_the_context() -> None:
    assert "session_id" not in build_record(make_record(), "a", None)
    with logd.session("s1"):
        out = build_record(make_record(), "a", None)
        token = context.push_call("c1", "b1")
        try:
            in_call = build_record(make_record(), "a", None)
        finally:
            context.pop_call(token)
    assert out["session_id"] == "s1"
    assert "call_id" not in out
    assert "bot_id" not in out
    assert (in_call["session_id"], in_call["call_id"], in_call["bot_id"]) == ("s1", "c1", "b1")


def test_explicit_ids_in_extra_win_but_in_progress_means_none() -> None:
    with logd.session("ctx"):
        out = build_record(make_record(extra={"session_id": "explicit"}), "a", None)
        seed_filter = build_record(make_record(extra={"session_id": "in-progress"}), "a", None)
    assert out["session_id"] == "explicit"
    assert seed_filter["session_id"] == "ctx"
    assert "session_id" not in build_record(
        make_record(extra={"session_id": "in-progress"}), "a", None
    )


def test_event_record_carries_kv_context_and_origin() -> None:
    with logd.session("s1"):
        out = build_event("app", "llm:request", "agent", "", {"model": "m", "n": 1, "x": {1}})
    assert out["event_type"] == "llm:request"
    assert (out["logger"], out["level"], out["msg"], out["app"]) == ("agent", "INFO", "", "app")
    assert out["kv"] == {"model": "m", "n": 1, "x": "{1}"}
    assert out["session_id"] == "s1"
    assert out["thread"] == threading.get_ident()


def test_event_kv_ids_set_the_record_ids() -> None:
    out = build_event("app", "conversation:start", "svc", "", {"session_id": "abc", "turns": 2})
    assert out["session_id"] == "abc"
    assert out["kv"] == {"turns": 2}


def test_event_without_kv_has_no_kv_key() -> None:
    assert "kv" not in build_event("app", "a:b", "s", "m", {})


@pytest.mark.parametrize(
    ("context_text", "expected"),
    [("", "ValueError: bad value"), ("session abc", "session abc - ValueError: bad value")],
)
def test_describe_exception(context_text: str, expected: str) -> None:
    assert describe_exception(ValueError("bad value"), context_text) == expected


def test_format_exception_includes_the_chain() -> None:
    try:
        try:
            raise OSError("inner")
        except OSError as exc:
            raise RuntimeError("outer") from exc
    except RuntimeError as exc:
        text = format_exception(exc)
    assert "OSError: inner" in text
    assert text.endswith("RuntimeError: outer")
