"""`logd-ctl`: the operator's command, a blocking client of the daemon's control socket.

Parses arguments into one request map (`build_request`, no I/O), sends it over the
control socket (`connection`) and prints the reply through `format` and
`blocks`. Stdlib + msgpack only (no trio), so it starts fast. Exit codes: 0 ok,
1 the daemon said no, 2 usage, 3 no daemon.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any, TextIO

from logd.control.requests import MAX_LIMIT, request
from logd.control.tailing import min_level, public
from logd.ctl import blocks
from logd.ctl import format as fmt
from logd.ctl.connection import (
    CONTROL_ENV,
    REPLY_TIMEOUT_S,
    SYSTEM_CONTROL,
    DaemonError,
    Unavailable,
    connect,
    control_candidates,
    control_path,
)
from logd.ctl.follow import follow

__all__ = [
    "SYSTEM_CONTROL",
    "Printer",
    "build_parser",
    "build_request",
    "control_candidates",
    "control_path",
    "main",
    "render",
]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
# Cleanup deletes a tree's worth of old files before it answers.
_SLOW_TIMEOUT_S = {"cleanup": 600.0, "rotate": 600.0}


# --- arguments ----------------------------------------------------------------------------------


def _count_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_LIMIT}")
    return value


def _date_arg(text: str) -> str:
    try:
        date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None
    if len(text) != 10:  # fromisoformat also takes 20251105; the folders are YYYY-MM-DD
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}")
    return text


def _level_arg(text: str) -> str:
    try:
        min_level(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; `--json` and `--control` work before or after the command."""
    parser = argparse.ArgumentParser(
        prog="logd-ctl",
        description="Query and steer a running logd through its control socket.",
        epilog="Exit status: 0 ok, 1 error reported by logd, 2 usage, 3 logd not running.",
    )
    parser.add_argument("--control", metavar="PATH", help=f"control socket (${CONTROL_ENV})")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    # Subcommand copies default to SUPPRESS so they never overwrite what came before.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--control", metavar="PATH", default=argparse.SUPPRESS, help="as above")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="as above")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], help=help_text, description=help_text)

    def app_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--app", metavar="A", help="only this app")

    add("status", "daemon health, clients, totals and rate")
    runs = add("runs", "list runs, newest first")
    app_option(runs)
    runs.add_argument("--active", action="store_true", help="only runs still open")
    runs.add_argument("--limit", type=_count_arg, metavar="N", help="at most N runs")
    run = add("run", "one run's metadata")
    run.add_argument("run_id", metavar="RUN_ID", help='a run id, or "current"')
    app_option(run)
    sessions = add("sessions", "list sessions")
    app_option(sessions)
    sessions.add_argument("--active", action="store_true", help="only open sessions")
    sessions.add_argument("--limit", type=_count_arg, metavar="N", help="at most N sessions")
    calls = add("calls", "list calls")
    app_option(calls)
    calls.add_argument("--date", type=_date_arg, metavar="D", help="day folder, YYYY-MM-DD")
    calls.add_argument("--bot", metavar="B", help="only this bot id")
    calls.add_argument("--active", action="store_true", help="only calls not ended")
    calls.add_argument("--limit", type=_count_arg, metavar="N", help="at most N calls")
    tail = add("tail", "the newest records of every app and run, as run-log lines; -f follows live")
    app_option(tail)
    tail.add_argument("--run", metavar="R", help='only this run ("current" works)')
    tail.add_argument("--session", metavar="S", help="only this session")
    tail.add_argument("--call", metavar="C", help="only this call")
    tail.add_argument("--events", metavar="PATTERN", help="only events matching, e.g. 'llm:*'")
    tail.add_argument(
        "-p", "--level", type=_level_arg, metavar="LEVEL", help="this level and above, e.g. error"
    )
    tail.add_argument("--since", metavar="T", help="1h, 30m, 2d or an ISO time")
    tail.add_argument("--until", metavar="T", help="1h, 30m, 2d or an ISO time")
    tail.add_argument(
        "-g", "--grep", metavar="TEXT", help="messages matching (a regex; any case if lower-case)"
    )
    tail.add_argument("-n", type=_count_arg, default=10, metavar="N", help="last N (10)")
    tail.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing new records; waits for an id not seen yet, survives restarts",
    )
    events = add("events", "query the event index")
    app_option(events)
    events.add_argument("--type", metavar="PATTERN", help="event type, wildcards like 'llm:*'")
    events.add_argument("--since", metavar="T", help="1h, 30m, 2d or an ISO time")
    events.add_argument("--until", metavar="T", help="1h, 30m, 2d or an ISO time")
    events.add_argument("--session", metavar="S", help="only this session")
    events.add_argument("--run", metavar="R", help="only this run")
    events.add_argument("--call", metavar="C", help="only this call")
    events.add_argument("--limit", type=_count_arg, default=1000, metavar="N", help="newest N")
    events.add_argument(
        "-p",
        "--level",
        type=_level_arg,
        metavar="LEVEL",
        help="ERROR or CRITICAL: every record at that level and above, events or not",
    )
    cleanup = add("cleanup", "apply retention now")
    cleanup.add_argument("--dry-run", action="store_true", help="only say what would go")
    add("rotate", "rotate every open file now")
    add("reload", "re-read the configuration")
    return parser


# What each command sends; the parser's dest names are the request's argument names.
_REQUEST_ARGS: dict[str, tuple[str, ...]] = {
    "runs": ("app", "active", "limit"),
    "run": ("run_id", "app"),
    "sessions": ("app", "active", "limit"),
    "calls": ("app", "date", "bot", "active", "limit"),
    "tail": (
        *("app", "run", "session", "call", "events", "level", "since", "until", "grep"),
        *("n", "follow"),
    ),
    "events": ("app", "type", "since", "until", "session", "run", "call", "limit", "level"),
    "cleanup": ("dry_run",),
}


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    """The request map for parsed arguments.

    Options not given are left out, and so are switches that are off (`--active`,
    `-f`), except `dry_run`, which is always explicit: a cleanup must never depend on
    what the daemon assumes.
    """
    values: dict[str, Any] = {}
    for key in _REQUEST_ARGS.get(args.command, ()):
        value = getattr(args, key)
        values[key] = None if value is False and key != "dry_run" else value
    return request(args.command, **values)


# --- output -------------------------------------------------------------------------------------


def _json_default(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _dumps(value: object, *, pretty: bool) -> str:
    return json.dumps(
        value, ensure_ascii=False, default=_json_default, indent=2 if pretty else None
    )


class Printer:
    """Where output goes and how: JSON or human, table width, colour.

    A terminal gets tables cut to its width and tail lines coloured by level (unless
    `NO_COLOR` is set, https://no-color.org); a pipe gets whole lines and no escapes.

    Args:
        out: The stream; not closed here.
        as_json: `--json`.
        environ: Where `NO_COLOR` is looked up.
    """

    def __init__(self, out: TextIO, *, as_json: bool, environ: Mapping[str, str]) -> None:
        self.out = out
        self.as_json = as_json
        tty = out.isatty()
        self.width: int | None = shutil.get_terminal_size().columns if tty else None
        self.colour = tty and not environ.get("NO_COLOR")

    def lines(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.out.write(line + "\n")
        self.out.flush()

    def json(self, value: object) -> None:
        self.out.write(_dumps(value, pretty=True) + "\n")
        self.out.flush()

    def item(self, item: Mapping[str, Any]) -> None:
        if self.as_json:
            self.out.write(_dumps(public(item), pretty=False) + "\n")
        else:
            line = _item_line(item)
            if self.width is not None:  # a terminal: no escape sequences from the logs
                line = "\n".join(fmt.printable(part) for part in line.split("\n"))
            level = item.get("level")
            text = fmt.colour_line(line, level if isinstance(level, str) else None, self.colour)
            self.out.write(text + "\n")
        self.out.flush()


def _item_line(item: Mapping[str, Any]) -> str:
    line = item.get("line")
    if isinstance(line, str):
        return line
    # The daemon draws every line; this is only for an item without one (SPEC §4 format).
    session = item.get("session_id") or "in-progress"
    return (
        f"[{session}] - {fmt.short_time(item.get('time'))} - {item.get('logger', '?')}"
        f" - {item.get('level', '?')} - {item.get('msg', '')}"
    )


_TABLES: dict[str, Callable[[Sequence[Mapping[str, Any]], float, int | None], list[str]]] = {
    "runs": fmt.runs_table,
    "sessions": fmt.sessions_table,
    "calls": fmt.calls_table,
    "events": fmt.events_table,
}


def render(command: str, result: Any, printer: Printer, now: float) -> int:
    """Print a command's result; returns the exit code (cleanup errors make it 1)."""
    if printer.as_json:
        printer.json(result)
    elif command == "status":
        width = min(printer.width or blocks.STATUS_WIDTH, blocks.STATUS_WIDTH)
        printer.lines(blocks.status_block(result, width))
    elif command == "run":
        printer.lines(blocks.run_block(result, now))
    elif command in _TABLES:
        if result:
            printer.lines(_TABLES[command](result, now, printer.width))
        else:
            printer.lines([f"-- no {command} --"])
    elif command == "cleanup":
        printer.lines(blocks.cleanup_lines(result))
    elif command == "rotate":
        printer.lines([f"Rotated {result.get('rotated', 0)} files."])
    elif command == "reload":
        printer.lines([blocks.reload_line(result)])
    else:  # pragma: no cover - every command is rendered above
        printer.json(result)
    if command == "cleanup" and result.get("errors"):
        for error in result["errors"]:
            print(f"logd-ctl: cleanup: {error}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _quiet_stdout() -> None:
    # After EPIPE, Python would complain again while flushing stdout at exit; point the
    # descriptor at /dev/null (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `logd-ctl`.

    Args:
        argv: Arguments without the program name; `sys.argv[1:]` when None.

    Returns:
        0 on success, 1 when logd reports an error, 2 on a usage error, 3 when logd
        cannot be reached.

    Error handling: every failure becomes one `logd-ctl: ...` line on stderr, never a
    traceback; a closed stdout (`logd-ctl events | head`) ends the command quietly.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors and --help; return, don't exit, for callers
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            # Ids may hold undecodable bytes (surrogate escapes); never crash printing them.
            stream.reconfigure(errors="backslashreplace")
    payload = build_request(args)
    printer = Printer(sys.stdout, as_json=args.json, environ=os.environ)
    try:
        paths = control_candidates(args.control, os.environ)
        timeout = _SLOW_TIMEOUT_S.get(args.command, REPLY_TIMEOUT_S)
        if args.command == "tail" and args.follow:
            ask = {**payload["args"], "wait": True}  # an id not seen yet: wait for it
            return follow(lambda: connect(paths, timeout), ask, printer)
        with connect(paths, timeout) as conn:
            result = conn.call(payload)
        if args.command == "tail":
            for item in result or ():
                printer.item(item)
            return EXIT_OK
        return render(args.command, result, printer, time.time())
    except Unavailable as exc:
        print(f"logd-ctl: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except DaemonError as exc:
        print(f"logd-ctl: {' '.join(exc.message.split())}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_OK
    except KeyboardInterrupt:  # quietly; for `tail -f` it is the normal way out
        return EXIT_OK if args.command == "tail" else 130


if __name__ == "__main__":
    sys.exit(main())
