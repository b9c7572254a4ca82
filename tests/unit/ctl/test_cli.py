"""`logd-ctl` without a daemon: arguments -> requests, socket resolution, formatting."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from datetime import UTC, timedelta, timezone
from typing import Any

import pytest

from logd.control.tailing import ITEM_FIELDS
from logd.ctl import blocks
from logd.ctl import format as fmt
from logd.ctl.cli import (
    SYSTEM_CONTROL,
    Printer,
    build_parser,
    build_request,
    control_candidates,
    control_path,
    main,
    render,
)

NOW = 1_762_353_000.0  # 2025-11-05T14:30:00Z


def req(argv: list[str]) -> dict[str, Any]:
    return build_request(build_parser().parse_args(argv))


# --- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status"], {"cmd": "status", "args": {}}),
        (["runs"], {"cmd": "runs", "args": {}}),
        (
            ["runs", "--app", "shop", "--active"],
            {"cmd": "runs", "args": {"app": "shop", "active": True}},
        ),
        (["runs", "--limit", "5"], {"cmd": "runs", "args": {"limit": 5}}),
        (["run", "current"], {"cmd": "run", "args": {"run_id": "current"}}),
        (["run", "R1", "--app", "shop"], {"cmd": "run", "args": {"run_id": "R1", "app": "shop"}}),
        (["sessions", "--app", "a"], {"cmd": "sessions", "args": {"app": "a"}}),
        (["sessions", "--active"], {"cmd": "sessions", "args": {"active": True}}),
        (
            ["calls", "--app", "a", "--date", "2025-11-05", "--bot", "7"],
            {"cmd": "calls", "args": {"app": "a", "date": "2025-11-05", "bot": "7"}},
        ),
        (["tail"], {"cmd": "tail", "args": {"n": 10}}),
        (
            ["tail", "--app", "a", "--run", "R", "--session", "S", "--call", "C", "-n", "3", "-f"],
            {
                "cmd": "tail",
                "args": {
                    "app": "a",
                    "run": "R",
                    "session": "S",
                    "call": "C",
                    "n": 3,
                    "follow": True,
                },
            },
        ),
        (
            ["tail", "--events", "llm:*", "--follow"],
            {"cmd": "tail", "args": {"events": "llm:*", "n": 10, "follow": True}},
        ),
        (
            [*("tail", "-p", "warning", "--since", "1h", "--until", "10m", "-g", "a|b")],
            {
                "cmd": "tail",
                "args": {"level": "warning", "since": "1h", "until": "10m", "grep": "a|b", "n": 10},
            },
        ),
        (
            ["tail", "--level", "ERROR", "--grep", "x", "-f", "--app", "a"],
            {
                "cmd": "tail",
                "args": {"app": "a", "level": "ERROR", "grep": "x", "n": 10, "follow": True},
            },
        ),
        (["events"], {"cmd": "events", "args": {"limit": 1000}}),
        (
            [
                *("events", "--app", "a", "--type", "llm:*", "--since", "1h", "--until", "30m"),
                *("--session", "S", "--limit", "5"),
            ],
            {
                "cmd": "events",
                "args": {
                    "app": "a",
                    "type": "llm:*",
                    "since": "1h",
                    "until": "30m",
                    "session": "S",
                    "limit": 5,
                },
            },
        ),
        (
            ["events", "--run", "R", "--call", "C"],
            {"cmd": "events", "args": {"run": "R", "call": "C", "limit": 1000}},
        ),
        (["cleanup"], {"cmd": "cleanup", "args": {"dry_run": False}}),
        (["cleanup", "--dry-run"], {"cmd": "cleanup", "args": {"dry_run": True}}),
        (["rotate"], {"cmd": "rotate", "args": {}}),
        (["reload"], {"cmd": "reload", "args": {}}),
    ],
)
def test_every_command_builds_its_request(argv: list[str], expected: dict[str, Any]) -> None:
    assert req(argv) == expected


def test_requests_pass_the_daemons_validation() -> None:
    from logd.control.requests import parse_request

    for argv in (
        ["tail", "-f"],
        ["tail", "-p", "info", "--since", "1h", "--until", "1m", "-g", "x"],
        ["events", "--since", "1h"],
        ["cleanup"],
        ["run", "x"],
    ):
        parse_request(req(argv))


@pytest.mark.parametrize(
    ("argv", "as_json"),
    [
        (["status"], False),
        (["--json", "status"], True),
        (["status", "--json"], True),
        (["--json", "runs", "--app", "a", "--json"], True),
        (["events", "--json", "--type", "x:*"], True),
    ],
)
def test_json_before_or_after_the_command(argv: list[str], as_json: bool) -> None:
    assert build_parser().parse_args(argv).json is as_json


def test_control_before_or_after_the_command() -> None:
    parser = build_parser()
    assert parser.parse_args(["--control", "/a", "status"]).control == "/a"
    assert parser.parse_args(["status", "--control", "/b"]).control == "/b"
    assert parser.parse_args(["status"]).control is None


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["run"],
        ["tail", "-n", "many"],
        ["tail", "-n", "-1"],
        ["tail", "-p", "loud"],
        ["events", "--limit", "99999999"],
        ["calls", "--date", "2025-13-01"],
        ["calls", "--date", "20251105"],
        ["status", "--what"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage: logd-ctl" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("status", "runs", "run", "sessions", "calls", "tail", "events", "cleanup"):
        assert command in out


# --- the control socket -------------------------------------------------------------------------


def test_control_path_explicit_then_env_then_user_then_system() -> None:
    def user() -> str:
        return "/run/user/1000/logd"

    env = {"LOGD_CONTROL": "/env/ctl.sock"}
    assert control_path("/flag.sock", env, runtime_dir=user) == "/flag.sock"
    assert control_path(None, env, runtime_dir=user) == "/env/ctl.sock"
    yes, no = (lambda _: True), (lambda _: False)
    assert control_path(None, {}, runtime_dir=user, is_socket=yes) == "/run/user/1000/logd/ctl.sock"
    assert control_path(None, {}, runtime_dir=user, is_socket=no) == SYSTEM_CONTROL
    assert control_path(None, {"LOGD_CONTROL": ""}, runtime_dir=lambda: None) == SYSTEM_CONTROL


def test_user_socket_must_be_a_socket(tmp_path: Any) -> None:
    (tmp_path / "ctl.sock").write_text("not a socket")
    assert control_path(None, {}, runtime_dir=lambda: str(tmp_path)) == SYSTEM_CONTROL


def test_default_resolution_without_xdg_runtime_dir_does_not_warn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pytest turns warnings into errors: platformdirs' RuntimeDirWarning must stay quiet."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert control_path(None, {}).endswith("ctl.sock")


def test_no_daemon_is_one_line_and_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--control", "/tmp/nonexistent.sock", "status"]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "logd-ctl: logd is not running (no control socket at /tmp/nonexistent.sock)\n"
    )


def test_candidates_explicit_or_env_alone_else_user_then_system() -> None:
    user = lambda: "/run/user/1000/logd"  # noqa: E731
    assert control_candidates("/flag.sock", {"LOGD_CONTROL": "/e"}, runtime_dir=user) == [
        "/flag.sock"
    ]
    assert control_candidates(None, {"LOGD_CONTROL": "/e"}, runtime_dir=user) == ["/e"]
    assert control_candidates(None, {}, runtime_dir=user) == [
        "/run/user/1000/logd/ctl.sock",
        SYSTEM_CONTROL,
    ]
    assert control_candidates(None, {}, runtime_dir=lambda: None) == [SYSTEM_CONTROL]


def test_no_daemon_names_every_place_it_looked(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LOGD_CONTROL", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert main(["status"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"no control socket at {tmp_path}/logd/ctl.sock" in err
    assert SYSTEM_CONTROL in err
    assert err.startswith("logd-ctl: logd is not running (") or "permission denied" in err


def test_no_daemon_via_env(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOGD_CONTROL", "/nonexistent-dir/ctl.sock")
    assert main(["runs", "--json"]) == 3
    assert capsys.readouterr().err.count("\n") == 1


# --- small values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (10 * 1024**2, "10.0 MiB"),
        (3 * 1024**3 + 1024**3 // 2, "3.5 GiB"),
        (5 * 1024**4, "5.0 TiB"),
        (2048 * 1024**4, "2048.0 TiB"),
    ],
)
def test_human_bytes(size: int, text: str) -> None:
    assert fmt.human_bytes(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3, "0ms"),
        (0.25, "250ms"),
        (42.9, "42s"),
        (192, "3m 12s"),
        (7500, "2h 05m"),
        (3 * 86400 + 4 * 3600 + 5, "3d 04h"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert fmt.human_duration(seconds) == text


def test_sparkline_scales_to_the_maximum() -> None:
    assert fmt.sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert fmt.sparkline([5, 5]) == "██"
    assert fmt.sparkline([0] * 60) == "▁" * 60
    assert fmt.sparkline([]) == ""


def test_sparkline_buckets_a_minute_into_a_width() -> None:
    series = [0] * 30 + [10] * 30
    line = fmt.sparkline(series, 30)
    assert line == "▁" * 15 + "█" * 15
    assert len(fmt.sparkline(list(range(60)), 7)) == 7


def test_short_time_reads_utc_and_offsets() -> None:
    assert fmt.short_time("2025-11-05T14:30:52.123Z", UTC) == "2025-11-05 14:30:52"
    plus_one = "2025-11-05T15:30:52.123+01:00"
    assert fmt.short_time(plus_one, UTC) == "2025-11-05 14:30:52"
    assert fmt.short_time(NOW, timezone(timedelta(hours=2))) == "2025-11-05 16:30:00"
    assert fmt.short_time(None) == "-"
    assert fmt.short_time("yesterday-ish") == "yesterday-ish"


def test_colour_by_level_only_when_enabled() -> None:
    line = "[s] - 2025-11-05 14:30:52,123 - app - ERROR - failed"
    assert fmt.colour_line(line, "ERROR", False) == line
    assert fmt.colour_line(line, "ERROR", True) == f"\x1b[31m{line}\x1b[0m"
    assert fmt.colour_line(line, "INFO", True) == line
    assert fmt.colour_line(line, "DEBUG", True).startswith("\x1b[2m")
    assert fmt.colour_line(line, "WARNING", True).startswith("\x1b[33m")
    assert fmt.colour_line(line, "CRITICAL", True).startswith("\x1b[1;31m")
    assert fmt.colour_line(line, None, True) == line


def test_colour_wraps_each_traceback_line() -> None:
    text = "head\nTraceback (most recent call last):\nValueError: x"
    coloured = fmt.colour_line(text, "ERROR", True).split("\n")
    assert len(coloured) == 3
    assert all(part.startswith("\x1b[31m") and part.endswith("\x1b[0m") for part in coloured)


def test_printable_escapes_control_characters() -> None:
    assert fmt.printable("a\nb\x1b[31m\tc") == "a\\nb\\x1b[31m\\tc"
    assert fmt.printable("café ✓") == "café ✓"


# --- status -------------------------------------------------------------------------------------


def make_status(**changes: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "version": "0.1.0",
        "pid": 4242,
        "uptime_s": 11532.4,
        "listeners": ["unix:/run/logd/logd.sock", "tcp://127.0.0.1:24224"],
        "root": "/var/log/logd",
        "clients": [
            {
                "conn": i,
                "pid": 1000 + i,
                "uid": 1000,
                "transport": "unix",
                "address": "",
                "apps": ["shop"],
                "runs": ["20251105_143052_ab12cd34"],
            }
            for i in range(3)
        ],
        "totals": {
            "records_in": 123456,
            "records_written": 123450,
            "events_indexed": 321,
            "rejected": 2,
            "duplicates": 0,
            "dropped_by_clients": 7,
        },
        "rate_1m": 42.31,
        "rate_series": [i % 8 for i in range(60)],
        "open_files": 17,
        "active": {"runs": 3, "sessions": 2, "calls": 1},
        "disk_bytes": 1234567890,
        "last_error": None,
        "last_cleanup": {
            "time": "2025-11-05T13:00:00.000Z",
            "deleted": ["a", "b"],
            "freed_bytes": 2048,
        },
        "errors": {},
    }
    status.update(changes)
    return status


def test_status_block_shows_everything_within_80_columns() -> None:
    lines = blocks.status_block(make_status())
    text = "\n".join(lines)
    assert max(len(line) for line in lines) <= 80
    assert lines[0].startswith("● logd 0.1.0")
    assert "pid 4242" in lines[0]
    assert "up 3h 12m" in lines[0]
    for expected in (
        "unix:/run/logd/logd.sock",
        "tcp://127.0.0.1:24224",
        "/var/log/logd",
        "3 connected",
        "in 123,456",
        "written 123,450",
        "events 321",
        "rejected 2",
        "duplicates 0",
        "by clients 7",
        "42.3/s",
        "Open files: 17",
        "runs 3 · sessions 2 · calls 1",
        "1.1 GiB",
        "Last error: none",
        "deleted 2, freed 2.0 KiB",
    ):
        assert expected in text, expected
    assert re.search(r"1001\s+1000\s+shop\s+20251105_143052_ab12cd34", text)
    spark = next(line for line in lines if "Rate:" in line)
    assert re.search(f"[{fmt._BARS}]{{{blocks.SPARK_WIDTH}}}", spark)


def test_status_labels_are_aligned() -> None:
    lines = blocks.status_block(make_status())
    colons = {line.index(":") for line in lines[1:] if line[:12].strip() and ":" in line}
    assert colons == {12}


def test_status_many_clients_and_long_values_still_fit() -> None:
    clients = [
        {"conn": i, "pid": None, "uid": None, "transport": "tcp", "address": "10.0.0.1:5000"}
        | {"apps": ["an-app-with-a-very-long-name-indeed"], "runs": ["run-" + "x" * 60]}
        for i in range(25)
    ]
    lines = blocks.status_block(
        make_status(
            clients=clients,
            root="/" + "deep/" * 30,
            last_error="disk full: " + "no space left on device " * 20,
            errors={"record-too-large": 3, "malformed": 10},
        )
    )
    assert max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    assert "25 connected" in text
    assert "… and 15 more" in text
    assert sum("10.0.0.1:5000" in line for line in lines) == 10
    assert "malformed 10, record-too-large 3" in text
    error_lines = lines[lines.index(next(x for x in lines if "Last error" in x)) :][:3]
    assert error_lines[0].startswith("  Last error: disk full")
    assert error_lines[2].endswith("…")


def test_status_of_a_fresh_daemon() -> None:
    lines = blocks.status_block(
        make_status(clients=[], rate_1m=0.0, rate_series=[0] * 60, last_cleanup=None)
    )
    text = "\n".join(lines)
    assert "Clients: none" in text
    assert "Last cleanup: never" in text
    assert "▁" * blocks.SPARK_WIDTH in text


def test_status_shows_events_off_only_when_some_were() -> None:
    assert not any("Events off" in line for line in blocks.status_block(make_status()))
    totals = {**make_status()["totals"], "events_off": 1234}
    lines = blocks.status_block(make_status(totals=totals))
    assert "  Events off: 1,234" in lines


def test_status_tolerates_missing_fields() -> None:
    assert blocks.status_block({})[0].startswith("● logd ?")


# --- tables -------------------------------------------------------------------------------------

RUNS: list[dict[str, Any]] = [
    {
        "run_id": "20251105_143052_ab12cd34",
        "app": "shop",
        "start_time": "2025-11-05T14:30:52.123+01:00",
        "end_time": "2025-11-05T14:35:01.500+01:00",
        "end_reason": "disconnected",
        "records": 12345,
        "counts": {"INFO": 12000, "ERROR": 3, "CRITICAL": 1},
        "active": False,
    },
    {
        "run_id": "20251105_152000_deadbeef",
        "app": "cycling-ai-backend-service",
        "start_time": "2025-11-05T14:20:00.000Z",
        "end_time": None,
        "end_reason": None,
        "records": 5,
        "counts": {},
        "active": True,
    },
]


def columns_of(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_runs_table() -> None:
    header, first, second = fmt.runs_table(RUNS, NOW, None)
    assert columns_of(header) == ["RUN_ID", "APP", "START", "DURATION", "RECORDS", "ERRORS", "END"]
    assert columns_of(first) == [
        "20251105_143052_ab12cd34",
        "shop",
        fmt.short_time("2025-11-05T13:30:52Z"),
        "4m 09s",
        "12,345",
        "4",
        "disconnected",
    ]
    assert columns_of(second)[1] == "cycling-ai-backend-service"
    assert columns_of(second)[3] == "10m 00s"  # active: so far
    assert columns_of(second)[-1] == "running"
    # Numbers are right-aligned under their headers.
    assert first.index("12,345") + len("12,345") == header.index("RECORDS") + len("RECORDS")


def test_runs_table_shows_a_containers_name_when_there_is_one() -> None:
    runs = [RUNS[0], {**RUNS[1], "container_name": "shop-web", "container_id": "ab" * 32}]
    header, first, second = fmt.runs_table(runs, NOW, None)
    assert columns_of(header)[:3] == ["RUN_ID", "APP", "CONTAINER"]
    assert columns_of(first)[2] == "-"
    assert columns_of(second)[2] == "shop-web"


def test_run_block_names_a_containers_run() -> None:
    run = {**RUNS[0], "container_id": "ab" * 32, "container_name": "shop-web", "image": "shop:1"}
    text = "\n".join(blocks.run_block(run, NOW))
    assert "shop-web (abababababab, image shop:1)" in text
    assert "Container" not in "\n".join(blocks.run_block(RUNS[0], NOW))


def test_tables_cut_to_the_terminal_but_never_the_ids() -> None:
    wide = fmt.runs_table(RUNS, NOW, None)
    assert max(map(len, wide)) > 80
    narrow = fmt.runs_table(RUNS, NOW, 80)
    assert max(map(len, narrow)) <= 80
    assert all(run["run_id"] in "\n".join(narrow) for run in RUNS)
    assert "cycl…" in narrow[2]
    assert "running" in narrow[2]
    assert fmt.short_time(RUNS[0]["start_time"])[5:16] in narrow[1]  # compact start


@pytest.mark.parametrize("listing", ["runs", "sessions", "calls"])
def test_a_300_character_id_is_cut_and_the_other_columns_stay(listing: str) -> None:
    long_id = "x" * 290 + "-long-id"
    key = {"runs": "run_id", "sessions": "session_id", "calls": "call_id"}[listing]
    row = {**RUNS[0], key: long_id, "first_ts": "2025-11-05T14:30:52Z", "bot_id": "7"}
    render = {"runs": fmt.runs_table, "sessions": fmt.sessions_table, "calls": fmt.calls_table}
    header, line = render[listing]([row], NOW, 100)
    assert max(len(header), len(line)) <= 100
    cells = columns_of(line)
    assert cells[0].endswith("…")
    assert long_id.startswith(cells[0][:-1])
    assert len(cells[0]) >= fmt.ID_WIDTH, "ids are cut last, and never below a UUID's length"
    assert cells[1] == "shop", "the next column keeps its place"
    assert line.index("shop") == header.index("APP")
    wide = render[listing]([row], NOW, None)
    assert long_id in wide[1], "not on a terminal (a pipe): whole"


def test_events_table_cuts_the_message_first() -> None:
    events = [
        {
            "ts": "2025-11-05T14:30:52.123Z",
            "event_type": "llm:request",
            "source": "agent",
            "message": "",
            "kv": {"model": "llama3.2"},
            "raw_line": "2025-11-05T14:30:52.123Z|llm:request|agent|model=llama3.2 "
            + "tokens_in=512 " * 10,
        },
        {
            "ts": "2025-11-05T14:30:53.000Z",
            "event_type": "app:start",
            "source": "main",
            "message": "hello",
            "kv": {"version": "0.1.0", "n": 3},
        },
    ]
    full = fmt.events_table(events, NOW, None)
    assert columns_of(full[0]) == ["TS", "TYPE", "SOURCE", "MESSAGE"]
    assert full[1].endswith("tokens_in=512")
    assert columns_of(full[2])[1:] == ["app:start", "main", "hello version=0.1.0 n=3"]
    cut = fmt.events_table(events, NOW, 80)
    assert all(len(line) <= 80 for line in cut)
    assert cut[1].endswith("…")
    assert "llm:request" in cut[1]


def test_sessions_and_calls_tables() -> None:
    sessions = [
        {
            "app": "shop",
            "session_id": "sess-1",
            "runs": ["r1", "r2"],
            "first_ts": "2025-11-05T14:00:00.000Z",
            "last_ts": "2025-11-05T14:10:00.000Z",
            "end_ts": None,
            "end_reason": None,
            "records": 300,
            "path": "/x",
        }
    ]
    header, row = fmt.sessions_table(sessions, NOW, None)
    assert columns_of(header) == ["SESSION_ID", "APP", "FIRST", "LAST", "RECORDS", "RUNS", "END"]
    assert columns_of(row)[0] == "sess-1"
    assert columns_of(row)[-3:] == ["300", "2", "active"]
    calls: list[dict[str, Any]] = [
        {
            "app": "shop",
            "call_id": "B2B.502.79",
            "bot_id": "123",
            "day": "2025-11-05",
            "start_ts": "2025-11-05T14:00:00.000Z",
            "end_ts": "2025-11-05T14:00:02.500Z",
            "duration_ms": 2500.0,
            "records": 12,
            "errors": 1,
        },
        {"app": "shop", "call_id": "live", "bot_id": "unknown", "start_ts": "2025-11-05T14:29:00Z"}
        | {"end_ts": None, "duration_ms": None, "records": 1, "errors": 0},
    ]
    header, done, live = fmt.calls_table(calls, NOW, None)
    assert columns_of(header)[:3] == ["CALL_ID", "APP", "BOT"]
    assert columns_of(done)[-3:] == ["2s", "12", "1"]
    assert columns_of(live)[-3] == "1m 00s+"


def test_hostile_ids_cannot_break_a_row() -> None:
    run = dict(RUNS[0], run_id="evil\nid\x1b[2J")
    lines = fmt.runs_table([run], NOW, None)
    assert len(lines) == 2
    assert "evil\\nid\\x1b[2J" in lines[1]


def test_run_block_and_cleanup_lines() -> None:
    run = dict(RUNS[0], host="box", pids=[1, 2], argv=["app.py", "-v"], bytes=3 * 1024**2)
    text = "\n".join(blocks.run_block(run, NOW))
    for expected in ("20251105_143052_ab12cd34 (shop)", "(disconnected), after 4m 09s", "box"):
        assert expected in text
    assert "1, 2" in text
    assert "app.py -v" in text
    assert "3.0 MiB" in text
    assert "ERROR 3" in text
    assert "running for 10m 00s" in "\n".join(blocks.run_block(RUNS[1], NOW))
    dry = blocks.cleanup_lines({"dry_run": True, "deleted": ["/r/a", "/r/b"], "freed_bytes": 4096})
    assert dry == ["Would delete 2 paths, would free 4.0 KiB:", "  /r/a", "  /r/b"]
    done = blocks.cleanup_lines({"dry_run": False, "deleted": [], "freed_bytes": 0, "errors": []})
    assert done == ["Deleted 0 paths, freed 0 B."]


def test_status_says_when_the_last_cleanup_was_a_dry_run() -> None:
    last = {"time": "2025-11-05T13:00:00.000Z", "dry_run": True, "deleted": ["a"], "freed_bytes": 9}
    text = "\n".join(blocks.status_block(make_status(last_cleanup=last)))
    assert "dry run: would delete 1" in text


# --- printing -----------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


ITEM: dict[str, Any] = {
    "time": "2025-11-05T14:30:52.123Z",
    "app": "shop",
    "level": "ERROR",
    "msg": "failed",
    "line": "[in-progress] - 2025-11-05 14:30:52,123 - shop - ERROR - failed\nValueError: x",
}


def test_tail_lines_are_coloured_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    terminal = Terminal()
    Printer(terminal, as_json=False, environ={}).item(ITEM)
    assert terminal.getvalue() == fmt.colour_line(ITEM["line"], "ERROR", True) + "\n"
    no_colour = Terminal()
    Printer(no_colour, as_json=False, environ={"NO_COLOR": "1"}).item(ITEM)
    assert no_colour.getvalue() == ITEM["line"] + "\n"
    pipe = io.StringIO()
    Printer(pipe, as_json=False, environ={}).item(ITEM)
    assert pipe.getvalue() == ITEM["line"] + "\n"


def test_tail_json_is_one_object_per_line() -> None:
    out = io.StringIO()
    printer = Printer(out, as_json=True, environ={})
    printer.item(ITEM)
    printer.item(dict(ITEM, msg="second"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert [json.loads(line)["msg"] for line in lines] == ["failed", "second"]
    shape = json.loads(lines[0])
    assert list(shape) == list(ITEM_FIELDS), "the session file's fields, no `line`"
    assert (shape["kv"], shape["extras"]) == ({}, {})


def test_a_terminal_gets_no_escape_sequences_from_the_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    terminal = Terminal()
    Printer(terminal, as_json=False, environ={"NO_COLOR": "1"}).item(
        dict(ITEM, line="evil \x1b]0;pwned\x07 title")
    )
    assert terminal.getvalue() == "evil \\x1b]0;pwned\\x07 title\n"


def test_tables_fit_the_terminal_and_not_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    terminal, pipe = Terminal(), io.StringIO()
    assert render("runs", RUNS, Printer(terminal, as_json=False, environ={}), NOW) == 0
    assert render("runs", RUNS, Printer(pipe, as_json=False, environ={}), NOW) == 0
    assert max(map(len, terminal.getvalue().splitlines())) <= 60
    assert max(map(len, pipe.getvalue().splitlines())) > 80


@pytest.mark.parametrize(
    ("command", "result", "text"),
    [
        ("runs", [], "-- no runs --\n"),
        ("events", [], "-- no events --\n"),
        ("rotate", {"rotated": 4}, "Rotated 4 files.\n"),
        ("reload", {"reloaded": True}, "Configuration reloaded.\n"),
        (
            "reload",
            {"reloaded": True, "restart_needed": ["root", "listen.tcp"]},
            "Configuration reloaded; these changes need a restart: root, listen.tcp.\n",
        ),
        ("cleanup", {"dry_run": True, "deleted": [], "freed_bytes": 0}, "Would delete 0 paths"),
    ],
)
def test_render_human(command: str, result: Any, text: str) -> None:
    out = io.StringIO()
    assert render(command, result, Printer(out, as_json=False, environ={}), NOW) == 0
    assert out.getvalue().startswith(text)


@pytest.mark.parametrize(
    ("command", "result"),
    [
        ("status", make_status()),
        ("runs", RUNS),
        ("run", RUNS[0]),
        ("cleanup", {"dry_run": False, "deleted": ["/a"], "freed_bytes": 3, "errors": []}),
    ],
)
def test_render_json_is_the_result_unchanged(command: str, result: Any) -> None:
    out = io.StringIO()
    assert render(command, result, Printer(out, as_json=True, environ={}), NOW) == 0
    assert json.loads(out.getvalue()) == result


def test_cleanup_errors_go_to_stderr_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    result = {"dry_run": False, "deleted": [], "freed_bytes": 0, "errors": ["/a: EACCES"]}
    out = io.StringIO()
    assert render("cleanup", result, Printer(out, as_json=False, environ={}), NOW) == 1
    assert capsys.readouterr().err == "logd-ctl: cleanup: /a: EACCES\n"


def test_importing_ctl_loads_no_trio() -> None:
    """`logd-ctl` should start fast: no trio, no daemon modules."""
    code = "import sys, logd.ctl.cli; print(sorted(m for m in sys.modules if m.startswith('trio')))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
