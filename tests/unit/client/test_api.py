"""logd_client's public API: validation, contexts, install(), dictConfig, import hygiene.

No daemon here: records stay queued in the transport (its address never exists), where
the tests read them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
from datetime import datetime
from typing import Any

import logd_client as logd
import pytest
from logd_client import context, recordmap, shared

ABSENT = "unix:/nonexistent-logd-test-dir/logd.sock"
RUN_ID = re.compile(r"\d{8}_\d{6}_[0-9a-f]{8}")


def queued() -> list[dict[str, Any]]:
    return [rec for t in shared.shared_transports() for _, _, rec in t.pending_records()]


def events(kind: str) -> list[dict[str, Any]]:
    return [r for r in queued() if r.get("event_type") == kind]


# ----------------------------------------------------------------- call-site validation


@pytest.mark.parametrize(
    "event_type", ["", "llm", "llm:", ":request", "LLM:request", "llm request:x", "llm:a|b"]
)
def test_event_rejects_a_malformed_event_type(event_type: str) -> None:
    with pytest.raises(ValueError, match="event_type"):
        logd.event(event_type, "agent")


@pytest.mark.parametrize("source", ["", "a|b", "a\nb", "a\rb"])
def test_event_rejects_a_malformed_source(source: str) -> None:
    with pytest.raises(ValueError, match="source"):
        logd.event("llm:request", source)


def test_wrong_types_raise_type_error() -> None:
    with pytest.raises(TypeError):
        logd.event(1, "agent")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        logd.event("a:b", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        logd.event("a:b", "s", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        logd.error("s", "not an exception")  # type: ignore[arg-type]


@pytest.mark.parametrize(("bad", "error"), [(None, TypeError), (3, TypeError), ("", ValueError)])
def test_ids_are_checked_when_the_scope_is_created(bad: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        logd.session(bad)
    with pytest.raises(error):
        logd.call(bad)
    with pytest.raises(error):
        logd.call("c1", bot_id=bad)
    with pytest.raises(error):
        logd.end_session(bad)


def test_event_before_install_is_checked_and_ignored(clean_runtime: None) -> None:
    logd.event("llm:request", "agent", model="x")
    logd.error("agent", ValueError("x"))
    assert shared.shared_transports() == []
    assert logd.run_id() is None
    assert logd.flush(0.1)


# ----------------------------------------------------------------- contexts


def test_current_session_defaults_to_in_progress_and_nests() -> None:
    assert logd.current_session() == "in-progress"
    with logd.session("outer") as outer:
        assert outer == "outer"
        with logd.session("inner"):
            assert logd.current_session() == "inner"
        assert logd.current_session() == "outer"
    assert logd.current_session() == "in-progress"


def test_sessions_are_separate_per_thread() -> None:
    barrier = threading.Barrier(2, timeout=5)
    seen: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        with logd.session(name):
            barrier.wait()  # both threads are inside their session now
            seen[name] = [logd.current_session()]
            barrier.wait()
        seen[name].append(logd.current_session())

    with logd.session("main"):
        threads = [threading.Thread(target=worker, args=(n,)) for n in ("t1", "t2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        assert logd.current_session() == "main"
    assert seen == {"t1": ["t1", "in-progress"], "t2": ["t2", "in-progress"]}


def test_sessions_are_separate_per_asyncio_task() -> None:
    log_record = logging.LogRecord("x", logging.INFO, "f", 1, "m", None, None)

    async def task(name: str, turn: asyncio.Event, other: asyncio.Event) -> list[str]:
        got = []
        with logd.session(name):
            for _ in range(3):
                await turn.wait()
                turn.clear()
                got.append(recordmap.build_record(log_record, "a", None)["session_id"])
                other.set()  # hand over while still inside the session
        return got

    async def main() -> tuple[list[str], list[str]]:
        a_turn, b_turn = asyncio.Event(), asyncio.Event()
        a_turn.set()
        a, b = await asyncio.gather(task("A", a_turn, b_turn), task("B", b_turn, a_turn))
        return a, b

    assert asyncio.run(main()) == (["A"] * 3, ["B"] * 3)
    assert logd.current_session() == "in-progress"


def test_run_id_format() -> None:
    first = context.new_run_id(datetime(2025, 11, 5, 14, 30, 52))
    assert first.startswith("20251105_143052_")
    assert RUN_ID.fullmatch(first)
    assert context.new_run_id(datetime(2025, 11, 5, 14, 30, 52)) != first


# ----------------------------------------------------------------- install and the API


def test_install_opens_the_run_and_exports_it(clean_runtime: None) -> None:
    logd.install(app="demo", address=ABSENT)
    run_id = logd.run_id()
    assert run_id is not None
    assert RUN_ID.fullmatch(run_id)
    assert os.environ["LOGD_RUN_ID"] == run_id
    (start,) = events("app:start")
    assert start["logger"] == "logd_client"
    assert start["app"] == "demo"
    assert start["kv"]["pid"] == os.getpid()
    assert start["kv"]["argv"] == sys.argv
    assert set(start["kv"]) == {"pid", "host", "argv", "client_version"}


def test_install_joins_an_inherited_run_without_app_start(
    clean_runtime: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGD_RUN_ID", "20250101_000000_deadbeef")
    logd.install(app="child", address=ABSENT)
    assert logd.run_id() == "20250101_000000_deadbeef"
    assert not context.owns_run()
    assert events("app:start") == []


def test_install_is_idempotent(clean_runtime: None) -> None:
    logd.install(app="demo", address=ABSENT)
    logd.install(app="demo", address=ABSENT)
    logd.install(app="other")
    root_handlers = [h for h in logging.getLogger().handlers if isinstance(h, logd.LogdHandler)]
    assert len(root_handlers) == 1
    assert len(events("app:start")) == 1


@pytest.mark.parametrize(
    ("before", "level", "after"),
    [
        (logging.WARNING, logging.INFO, logging.INFO),
        (logging.DEBUG, logging.INFO, logging.DEBUG),
        (logging.NOTSET, logging.INFO, logging.NOTSET),
        (logging.INFO, logging.DEBUG, logging.DEBUG),
    ],
)
def test_install_lowers_the_root_level_only_when_stricter(
    clean_runtime: None, before: int, level: int, after: int
) -> None:
    logging.getLogger().setLevel(before)
    logd.install(app="demo", level=level, address=ABSENT)
    assert logging.getLogger().level == after


def test_install_refuses_bad_arguments(clean_runtime: None) -> None:
    with pytest.raises(ValueError, match="app"):
        logd.install(app="")
    with pytest.raises(ValueError, match="address"):
        logd.install(app="demo", address="http://example.com")
    with pytest.raises(TypeError):
        logd.install(app=None)  # type: ignore[arg-type]


def test_records_and_events_after_install(clean_runtime: None) -> None:
    logd.install(app="demo", address=ABSENT)
    log = logging.getLogger("test_client_api.records")
    with logd.session("s1"):
        log.info("hi %s", "there")
        log.debug("not at INFO")
        logd.event("llm:request", "agent", "asked", model="m")
    logd.end_session("s1")
    recs = [r for r in queued() if r.get("event_type") != "app:start"]
    assert [r.get("event_type", r["msg"]) for r in recs] == [
        "hi there",
        "llm:request",
        "session:end",
    ]
    assert all(r["session_id"] == "s1" and r["run_id"] == logd.run_id() for r in recs)


def test_call_sends_start_and_end_and_scopes_records(clean_runtime: None) -> None:
    logd.install(app="demo", address=ABSENT)
    log = logging.getLogger("test_client_api.call")
    with logd.call("c1", bot_id="b7") as call_id:
        assert call_id == "c1"
        log.info("inside")
    with pytest.raises(ZeroDivisionError), logd.call("c2"):
        _ = 1 / 0
    log.info("outside")
    recs = [r for r in queued() if r.get("event_type") != "app:start"]
    assert [(r.get("event_type", r["msg"]), r.get("call_id")) for r in recs] == [
        ("call:start", "c1"),
        ("inside", "c1"),
        ("call:end", "c1"),
        ("call:start", "c2"),
        ("call:end", "c2"),
        ("outside", None),
    ]
    assert recs[1]["bot_id"] == "b7"
    assert recs[3]["bot_id"] == "unknown"
    assert set(recs[2]["kv"]) == {"duration_ms"}
    assert recs[4]["kv"]["error"] == "ZeroDivisionError: division by zero"


def test_logged_reports_and_reraises_for_sync_and_async(clean_runtime: None) -> None:
    logd.install(app="demo", address=ABSENT)

    @logd.logged("agent_service")
    def sync_fail(x: int) -> int:
        raise ValueError(f"bad {x}")

    @logd.logged("agent_service")
    async def async_fail() -> None:
        raise KeyError("k")

    @logd.logged("agent_service")
    def fine(x: int) -> int:
        return x + 1

    assert fine(1) == 2
    with pytest.raises(ValueError, match="bad 3"):
        sync_fail(3)
    with pytest.raises(KeyError):
        asyncio.run(async_fail())
    assert sync_fail.__name__ == "sync_fail"
    errors = events("error:runtime")
    assert [(e["logger"], e["level"], e["msg"]) for e in errors] == [
        ("agent_service", "ERROR", f"{sync_fail.__qualname__} - ValueError: bad 3"),
        ("agent_service", "ERROR", f"{async_fail.__qualname__} - KeyError: 'k'"),
    ]
    assert all("Traceback (most recent call last)" in e["exc"] for e in errors)


def test_logged_refuses_a_bad_source_at_decoration() -> None:
    with pytest.raises(ValueError, match="source"):
        logd.logged("a|b")


def test_emit_never_raises(clean_runtime: None, request: pytest.FixtureRequest) -> None:
    logd.install(app="demo", address=ABSENT)
    log = logging.getLogger("test_client_api.emit")
    log.propagate = False  # only our handler: pytest's own capture handler would raise
    log_handler = logd.LogdHandler()
    log.addHandler(log_handler)
    request.addfinalizer(lambda: log.removeHandler(log_handler))

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    log.info("%s", Unprintable())  # getMessage() fails inside emit
    log.info("ok", extra={"odd": Unprintable()})  # str() of the extra fails
    bad_args, bad_extra = queued()[-2:]
    assert "formatting failed" in bad_args["msg"]
    assert (bad_extra["msg"], bad_extra["odd"]) == ("ok", "<unprintable Unprintable>")


# ----------------------------------------------------------------- fresh interpreters


def run_python(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOGD_")}
    environ.update(env)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_leaves_trio_and_logd_unloaded() -> None:
    out = run_python(
        """
        import sys
        import logd_client, logd_client.handler, logd_client.runtime, logd_client.shared
        heavy = ("trio", "logd")
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
        """
    )
    assert out.strip() == "[]"


def test_dictconfig_creates_a_working_handler() -> None:
    out = run_python(
        f"""
        import json, logging, logging.config, os
        import logd_client as logd
        from logd_client import shared
        logging.config.dictConfig({{
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {{"logd": {{
                "class": "logd_client.LogdHandler", "app": "configured",
                "address": "{ABSENT}", "level": "DEBUG",
            }}}},
            "root": {{"handlers": ["logd"], "level": "DEBUG"}},
        }})
        logging.getLogger("cfg").debug("configured %d", 1)
        logd.install(app="ignored")  # already has a LogdHandler on the root: no-op
        (h,) = logging.getLogger().handlers
        recs = [r for t in shared.shared_transports() for _, _, r in t.pending_records()]
        print(json.dumps({{"level": h.level, "app": h.app, "records": recs}}), flush=True)
        os._exit(0)  # skip the exit hook's wait for the absent daemon
        """
    )
    data = json.loads(out)
    assert data["level"] == logging.DEBUG
    assert data["app"] == "configured"
    start, rec = data["records"]
    assert start["event_type"] == "app:start"
    assert start["app"] == "configured"
    assert (rec["msg"], rec["level"], rec["logger"]) == ("configured 1", "DEBUG", "cfg")
    assert rec["run_id"] == start["run_id"]
