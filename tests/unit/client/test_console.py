"""`install(console=...)`, `SessionFilter` and `events_off`, in process (no daemon: records
stay queued in the transport)."""

from __future__ import annotations

import logging

import logd_client as logd
import pytest
from logd_client import shared
from logd_client.console import CONSOLE_FORMAT, console_level
from logd_client.runtime import events_off_patterns

ABSENT = "unix:/nonexistent-logd-test-dir/logd.sock"


@pytest.mark.parametrize(
    ("console", "had_handlers", "level"),
    [
        (True, False, logging.WARNING),
        (True, True, None),
        (False, False, None),
        (logging.INFO, True, logging.INFO),
        ("debug", False, logging.DEBUG),
    ],
)
def test_console_level(console: bool | int | str, had_handlers: bool, level: int | None) -> None:
    assert console_level(console, had_handlers) == level


def test_console_level_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="loud"):
        console_level("loud", False)
    with pytest.raises(TypeError):
        console_level(1.5, False)  # type: ignore[arg-type]


def test_session_filter_sets_the_ids() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    assert logd.SessionFilter().filter(record)
    # The filter adds attributes LogRecord does not declare: read them as it set them.
    assert (vars(record)["session_id"], vars(record)["call_id"]) == ("in-progress", None)
    with logd.session("s1"), logd.call("c1"):
        inside = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
        logd.SessionFilter().filter(inside)
    assert (vars(inside)["session_id"], vars(inside)["call_id"]) == ("s1", "c1")
    assert logging.Formatter(CONSOLE_FORMAT).format(inside) == "[s1] - INFO - m"


def test_the_console_handler_comes_after_the_logd_handler(clean_runtime: None) -> None:
    """Records reach the LogdHandler before the filter gives them attributes, so they are
    sent as plain records, not with `session_id` as an extra field."""
    root = logging.getLogger()
    root.handlers[:] = []
    logd.install(app="demo", address=ABSENT)
    kinds = [type(h).__name__ for h in root.handlers]
    assert kinds == ["LogdHandler", "StreamHandler"]
    assert root.handlers[1].level == logging.WARNING


@pytest.mark.parametrize(
    ("given", "environ", "patterns"),
    [
        (None, {}, ()),
        (
            None,
            {"LOGD_EVENTS_OFF": "conversation:turn, debug:*,"},
            ("conversation:turn", "debug:*"),
        ),
        (["llm:*"], {"LOGD_EVENTS_OFF": "debug:*"}, ("llm:*",)),
        ([], {"LOGD_EVENTS_OFF": "debug:*"}, ()),
    ],
)
def test_events_off_patterns(
    given: list[str] | None, environ: dict[str, str], patterns: tuple[str, ...]
) -> None:
    assert events_off_patterns(given, environ) == patterns


def test_events_off_patterns_refuse_nonsense() -> None:
    with pytest.raises(TypeError):
        events_off_patterns("debug:*", {})
    with pytest.raises(ValueError, match="empty"):
        events_off_patterns([" "], {})


def test_events_off_are_not_sent_and_counted(clean_runtime: None) -> None:
    logd.install(app="demo", address=ABSENT, console=False, events_off=["conversation:*"])
    logd.event("conversation:turn", "agent", "turn 1")
    logd.event("llm:request", "agent", "asked")
    try:
        raise ValueError("boom")
    except ValueError as exc:
        logd.error("agent", exc)
    sent = [
        r.get("event_type") for t in shared.shared_transports() for *_, r in t.pending_records()
    ]
    assert "conversation:turn" not in sent
    assert {"llm:request", "error:runtime"} <= set(sent)
    (transport,) = shared.shared_transports()
    assert transport.statistics().events_off == 1
