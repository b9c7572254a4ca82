"""The client's side of the control socket without a daemon: the follow protocol across
reconnects, argument shapes, and the errors an app sees."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from logd_client.control.connection import NoPermission, Unavailable, unavailable_error
from logd_client.control.protocol import DaemonError, TailFollow
from logd_client.control.readers import time_arg


def item(time: str, msg: str) -> dict[str, object]:
    return {"time": time, "app": "a", "run_id": "r", "call_id": None, "msg": msg}


T0 = "2026-01-01T10:00:00.000Z"
T1 = "2026-01-01T10:00:01.000Z"


def test_follow_asks_for_the_backlog_then_resumes_after_what_it_showed() -> None:
    follow = TailFollow({"app": "a", "n": 1, "wait": True})
    assert follow.request() == {
        "cmd": "tail",
        "args": {"app": "a", "n": 1, "wait": True, "follow": True},
    }
    reply = {
        "ok": True,
        "result": [item(T0, "old")],
        "floor": T0,
        "floor_keys": [[T0, "a", "r", "", 1]],
    }
    assert follow.receive_reply(reply) == ([item(T0, "old")], None)
    assert follow.receive_message({"item": item(T1, "new")}) == (item(T1, "new"), None)
    assert follow.receive_message({"notice": "skipped 3"}) == (None, "skipped 3")
    follow.connection_lost()
    args = follow.request()["args"]
    assert args["after"] == T0  # the floor: never before what the backlog showed
    assert sorted(args["skip"]) == [[T0, "a", "r", "", 1], [T1, "a", "r", "", 1]]
    # The resumed conversation's records are noted too, for the next loss.
    again = {"ok": True, "result": [item(T1, "meanwhile")]}
    assert follow.receive_reply(again) == ([item(T1, "meanwhile")], None)
    follow.connection_lost()
    assert [T1, "a", "r", "", 2] in follow.request()["args"]["skip"]


def test_follow_keeps_the_run_current_meant_and_says_it_waits() -> None:
    follow = TailFollow({"run": "current", "wait": True})
    reply = {"ok": True, "result": [], "floor": None, "floor_keys": [], "run": "r-1"}
    reply["waiting"] = "no session 's' yet; waiting for it"
    assert follow.receive_reply(reply) == ([], "no session 's' yet; waiting for it")
    follow.connection_lost()
    args = follow.request()["args"]
    assert args["run"] == "r-1"
    assert args["after"] == "1970-01-01T00:00:00.000Z"  # nothing shown: everything


def test_follow_error_replies_raise() -> None:
    follow = TailFollow({})
    with pytest.raises(DaemonError) as info:
        follow.receive_reply({"ok": False, "error": {"code": "unknown-run", "message": "no run"}})
    assert info.value.code == "unknown-run"
    with pytest.raises(DaemonError) as closed:
        follow.receive_reply(None)
    assert closed.value.code == "disconnected"


def test_time_arguments() -> None:
    assert time_arg("1h") == "1h"
    assert time_arg(None) is None
    moment = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert datetime.fromisoformat(time_arg(moment) or "") == moment
    with pytest.raises(TypeError):
        time_arg(3600)  # type: ignore[arg-type]


def test_a_refused_socket_is_a_permission_error_naming_it_and_the_setting() -> None:
    error = unavailable_error([("/run/logd/ctl.sock", PermissionError(13, "denied"))])
    assert isinstance(error, NoPermission)
    assert isinstance(error, PermissionError)
    assert isinstance(error, ConnectionError)
    assert "/run/logd/ctl.sock" in str(error)
    assert "SocketMode=0660" in str(error)
    missing = unavailable_error([("/x/ctl.sock", FileNotFoundError(2, "no"))])
    assert type(missing) is Unavailable
    assert str(missing) == "logd is not running (no control socket at /x/ctl.sock)"
