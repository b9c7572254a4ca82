"""`logd-ctl tail` as journalctl users expect it (#16): real daemons, producers and
`logd-ctl` processes, rotated files, filters, and a daemon restarted under `tail -f`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from logd.control.tailing import ITEM_FIELDS
from tests.e2e.procs import DaemonProcess, start_daemon, wait_for
from tests.e2e.test_ctl import Follower, ctl, ok, produce, wait_ctl_ready

pytestmark = pytest.mark.e2e

RICH = r"""
import logging, sys
import logd_client as logd

app, session = sys.argv[1], sys.argv[2]
logd.install(app=app)
log = logging.getLogger(f"{app}.agent")
with logd.session(session):
    log.info("hello %s", session, extra={"user_id": 42})
    logd.event("llm:response", "agent", "answered", latency_ms=2333, ok=True)
    log.warning("slow answer")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    log.debug("not shown at INFO")
print(logd.run_id(), flush=True)
sys.exit(0 if logd.flush(20) else 3)
"""
COUNT = r"""
import logging, sys
import logd_client as logd

app, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
logd.install(app=app)
log = logging.getLogger(app)
for i in range(first, first + count):
    log.info("rec %d", i)
print(logd.run_id(), flush=True)
sys.exit(0 if logd.flush(20) else 3)
"""
STEADY = r"""
import logging, sys, time
import logd_client as logd

count = int(sys.argv[1])
logd.install(app="steady")
log = logging.getLogger("steady")
for i in range(count):
    log.info("rec %d", i)
    if i % 20 == 19:
        time.sleep(0.01)  # bursts: many records share a millisecond
sys.exit(0 if logd.flush(60) else 3)
"""
ROTATING = r"""
import logging, sys
import logd_client as logd

logd.install(app="rot")
log = logging.getLogger("rot")
with logd.session("s-rot"):
    log.info("in the session")
print(logd.run_id(), flush=True)
first = 0
for line in sys.stdin:
    for i in range(first, first + 10):
        log.info("rec %d", i)
    first += 10
    assert logd.flush(20)
    print("ok", flush=True)
"""
HOLD = r"""
import logging, sys
import logd_client as logd

logd.install(app=sys.argv[1])
logging.getLogger("hold").info("still here")
assert logd.flush(20)
print(logd.run_id(), flush=True)
sys.stdin.readline()
"""


def tail(daemon: DaemonProcess, *args: str) -> str:
    """`logd-ctl tail` output (records may hold tracebacks, so `ok()` would not do)."""
    result = ctl(daemon, "tail", *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def tail_json(daemon: DaemonProcess, *args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in tail(daemon, "--json", *args).splitlines()]


def msgs(items: list[dict[str, Any]]) -> list[str]:
    return [item["msg"] or item["event_type"] for item in items]


# --- 1. ids not seen yet ------------------------------------------------------------------------


def test_unknown_id_is_an_error_without_f_and_awaited_with_it(daemon: DaemonProcess) -> None:
    wait_ctl_ready(daemon)
    for flag, ident in (("--session", "s-later"), ("--run", "r-none"), ("--call", "c-none")):
        result = ctl(daemon, "tail", flag, ident)
        assert result.returncode == 1
        assert result.stdout == ""
        what = flag.lstrip("-")
        assert result.stderr == f"logd-ctl: no {what} '{ident}'\n"
    with Follower(daemon, "--session", "s-later") as tail:
        assert tail.proc.stderr is not None
        waiting = tail.proc.stderr.readline()
        assert waiting == "logd-ctl: no session 's-later' yet; waiting for it\n"
        produce(daemon, RICH, "later", "s-later")
        tail.reader.wait_for("hello s-later", 10)
        tail.reader.wait_for(" - ERROR - failed", 10)
        tail.proc.send_signal(signal.SIGINT)
        assert tail.finish() == (0, "")


# --- 2. rotated and compressed files ------------------------------------------------------------


def test_tail_reads_back_through_rotated_and_gzip_files(daemon: DaemonProcess) -> None:
    wait_ctl_ready(daemon)
    producer = subprocess.Popen(
        [sys.executable, "-c", ROTATING],
        env=daemon.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert producer.stdin is not None
    assert producer.stdout is not None

    def batch() -> None:
        assert producer.stdin is not None
        assert producer.stdout is not None
        producer.stdin.write("\n")
        producer.stdin.flush()
        assert producer.stdout.readline() == "ok\n"

    try:
        run_id = producer.stdout.readline().strip()
        folder = daemon.root / "rot" / "runs" / run_id
        for _ in range(3):
            batch()
            assert ok(daemon, "rotate").startswith("Rotated ")
        # Each rotated copy is compressed in the background: main.log.1.gz ... .3.gz.
        wanted = {f"main.log.{i}.gz" for i in (1, 2, 3)}
        wait_for(lambda: wanted <= set(os.listdir(folder)))
        assert not (folder / "main.log").exists()  # made again by the next record

        current = tail_json(daemon, "--run", "current", "--app", "rot", "-n", "3")
        assert msgs(current) == ["rec 27", "rec 28", "rec 29"]
        assert msgs(tail_json(daemon, "--app", "rot", "-n", "20")) == [
            f"rec {i}" for i in range(10, 30)
        ]
        assert msgs(tail_json(daemon, "--session", "s-rot")) == ["in the session"]
        batch()
        assert msgs(tail_json(daemon, "--app", "rot", "-n", "25")) == [
            f"rec {i}" for i in range(15, 40)
        ]
        everything = msgs(tail_json(daemon, "--run", run_id, "-n", "1000"))
        assert everything == ["app:start", "in the session", *(f"rec {i}" for i in range(40))]
    finally:
        producer.stdin.close()
        producer.wait(timeout=30)
        producer.stdout.close()


# --- 3. no filters: every app and run -----------------------------------------------------------


def test_tail_without_filters_shows_the_newest_records_of_every_app(
    daemon: DaemonProcess,
) -> None:
    wait_ctl_ready(daemon)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, "busy"],
        env=daemon.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        holder.stdout.readline()  # its record is written; its run stays active
        produce(daemon, COUNT, "done", "0", "3")  # an app that ran and exited
        wait_for(
            lambda: ctl(daemon, "--json", "runs", "--app", "done", "--active").stdout == "[]\n"
        )
        items = tail_json(daemon, "-n", "5")
        assert [(i["app"], i["msg"] or i["event_type"]) for i in items] == [
            ("done", "app:start"),
            ("done", "rec 0"),
            ("done", "rec 1"),
            ("done", "rec 2"),
            ("done", "app:shutdown"),
        ]
        everything = tail_json(daemon, "-n", "100")
        assert {i["app"] for i in everything} == {"busy", "done"}
        assert [i["time"] for i in everything] == sorted(i["time"] for i in everything)
    finally:
        assert holder.stdin is not None
        assert holder.stdout is not None
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()


# --- 4. tail -f across a daemon restart ---------------------------------------------------------


@pytest.mark.parametrize("follower", ["running", "paused"])
def test_tail_follow_survives_a_restart_showing_every_record_once(
    log_root: Path, socket_dir: Path, follower: str
) -> None:
    """A producer logs through a daemon restart. The follower either reconnects while
    records still arrive, or is paused (SIGSTOP) until all of them were written by the
    new daemon, so that it must read them all back: either way each shows once."""
    daemon = start_daemon(log_root, socket_dir)
    second: DaemonProcess | None = None
    total = 3000
    try:
        produce(daemon, COUNT, "steady", "-1", "1")  # rec -1: the backlog shows it
        with Follower(daemon, "--app", "steady", "--json", "-n", "3") as tail:
            tail.reader.wait_for('"rec -1"', 10)
            producer = subprocess.Popen([sys.executable, "-c", STEADY, str(total)], env=daemon.env)
            tail.reader.wait_for('"rec 300"', 20)
            if follower == "paused":
                tail.proc.send_signal(signal.SIGSTOP)
            assert daemon.stop() == 0
            second = start_daemon(log_root, socket_dir)
            assert producer.wait(timeout=120) == 0
            if follower == "paused":
                tail.proc.send_signal(signal.SIGCONT)
            tail.reader.wait_for(f'"rec {total - 1}"', 30)
            tail.proc.send_signal(signal.SIGINT)
            code, stderr = tail.finish()
        assert code == 0
        assert stderr == (
            "logd-ctl: lost the connection to logd; reconnecting,"
            " records written meanwhile will follow\n"
        )
        seen = [json.loads(line)["msg"] for line in tail.reader.seen]
        seen = [m for m in seen if m.startswith("rec ")]
        assert len(seen) == len(set(seen)), "nothing twice"
        assert sorted(seen, key=lambda m: int(m.split()[1])) == [
            "rec -1",
            *(f"rec {i}" for i in range(total)),
        ], "nothing lost"
    finally:
        for proc in (daemon, second):
            if proc is not None and proc.proc.poll() is None:
                proc.stop()


# --- 5, 6. one JSON shape, run-log lines --------------------------------------------------------


def test_json_has_one_shape_in_backlog_and_live(daemon: DaemonProcess) -> None:
    wait_ctl_ready(daemon)
    produce(daemon, RICH, "shape", "before")
    with Follower(daemon, "--app", "shape", "--session", "live", "--json") as tail:
        assert tail.proc.stderr is not None
        waiting = tail.proc.stderr.readline()  # subscribed: the session comes later
        assert waiting == "logd-ctl: no session 'live' in app 'shape' yet; waiting for it\n"
        produce(daemon, RICH, "shape", "live")
        tail.reader.wait_for('"msg": "failed"', 10)
        tail.proc.send_signal(signal.SIGINT)
        assert tail.finish() == (0, "")
    live = [json.loads(line) for line in tail.reader.seen]
    backlog = tail_json(daemon, "--session", "before")
    for items in (live, backlog):
        assert all(list(item) == list(ITEM_FIELDS) for item in items)
        hello, event, slow, failed = items
        assert hello["msg"] == "hello " + hello["session_id"]
        assert hello["extras"] == {"user_id": 42}
        assert hello["logger"] == "shape.agent"
        assert (event["event_type"], event["msg"]) == ("llm:response", "answered")
        assert event["kv"] == {"latency_ms": 2333, "ok": True}
        assert (slow["level"], slow["msg"]) == ("WARNING", "slow answer")
        assert failed["exc"].startswith("Traceback (most recent call last):")
        assert failed["exc"].rstrip().endswith("ValueError: boom")
    from_run_log = tail_json(daemon, "--app", "shape", "-n", "6")
    types = [i["event_type"] for i in from_run_log][-4:]
    assert types == ["llm:response", None, None, "app:shutdown"]
    event, _, failed, _ = from_run_log[-4:]
    assert (event["msg"], event["kv"]) == ("answered", {"latency_ms": 2333, "ok": True})
    assert failed["exc"].rstrip().endswith("ValueError: boom")


def test_human_tail_prints_each_record_as_its_run_log_line(daemon: DaemonProcess) -> None:
    """What `tail --session` and `tail --run` print is what main.log holds, line for line
    (local times, event type and fields, traceback lines)."""
    wait_ctl_ready(daemon)
    run_id = produce(daemon, RICH, "lines", "s-lines")
    main_log = (daemon.root / "lines" / "runs" / run_id / "main.log").read_text()
    lines = main_log.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("[s-lines] - "))
    in_session = "".join(lines[start:-1])  # the last line is app:shutdown, sessionless
    assert "llm:response answered latency_ms=2333 ok=true session_id=s-lines\n" in in_session
    assert "\nValueError: boom\n" in in_session
    assert tail(daemon, "--session", "s-lines") == in_session
    assert tail(daemon, "--run", run_id, "-n", "5") == in_session + lines[-1]


def test_extra_fields_ride_in_text_lines_and_read_back(daemon: DaemonProcess) -> None:
    """#16 item 8: `extra=` fields reach main.log as ` key=value` after the message, and
    `tail --json` reads them back from there (not only from the session file)."""
    wait_ctl_ready(daemon)
    run_id = produce(daemon, RICH, "extras", "s-extras")
    main_log = (daemon.root / "extras" / "runs" / run_id / "main.log").read_text()
    hello = [line for line in main_log.splitlines() if " - hello s-extras" in line]
    assert len(hello) == 1, hello
    assert hello[0].endswith(" - INFO - hello s-extras user_id=42"), hello
    items = tail_json(daemon, "--run", run_id, "-g", "hello")
    assert [(i["msg"], i["extras"]) for i in items] == [("hello s-extras", {"user_id": 42})]
    assert tail(daemon, "--run", run_id, "-g", "hello") == hello[0] + "\n"


# --- 7. filters ---------------------------------------------------------------------------------


def test_level_grep_since_until_filter_backlog_and_live(daemon: DaemonProcess) -> None:
    wait_ctl_ready(daemon)
    produce(daemon, RICH, "filt", "one")
    assert msgs(tail_json(daemon, "--app", "filt", "-p", "warning")) == ["slow answer", "failed"]
    assert msgs(tail_json(daemon, "--app", "filt", "--level", "ERROR")) == ["failed"]
    assert msgs(tail_json(daemon, "--app", "filt", "-g", "boom")) == ["failed"]  # traceback
    assert msgs(tail_json(daemon, "-g", "SLOW")) == []  # upper case: case-sensitive
    assert msgs(tail_json(daemon, "-g", "^slow|^answered")) == ["answered", "slow answer"]
    assert msgs(tail_json(daemon, "--app", "filt", "--since", "1m", "-p", "error")) == ["failed"]
    assert tail_json(daemon, "--app", "filt", "--until", "1h") == []
    assert tail_json(daemon, "--app", "filt", "--since", "2999-01-01T00:00:00") == []
    bad = ctl(daemon, "tail", "-p", "loud")
    assert bad.returncode == 2
    assert "'loud' is not a level" in bad.stderr
    with Follower(daemon, "--app", "filt", "-p", "warning", "-g", "slow|fail", "-n", "1") as tail:
        tail.reader.wait_for("[one] - ", 10)  # the backlog: subscribed
        produce(daemon, RICH, "filt", "two")
        produce(daemon, RICH, "other", "three")
        tail.reader.wait_for("[two] - ", 10)
        tail.reader.wait_for("ValueError: boom", 10)
        tail.proc.send_signal(signal.SIGINT)
        assert tail.finish() == (0, "")
    heads = [line for line in tail.reader.seen if line.startswith("[")]
    assert [line.split(" - ", 4)[4] for line in heads] == ["failed", "slow answer", "failed"]
    assert [line[:6] for line in heads] == ["[one] ", "[two] ", "[two] "]


# --- 9. reload names what needs a restart -------------------------------------------------------


def test_reload_names_every_changed_setting_that_needs_a_restart(
    tmp_path: Path, socket_dir: Path
) -> None:
    config = tmp_path / "logd.toml"
    root = tmp_path / "root"
    config.write_text(f'root = "{root}"\n[retention]\nruns_keep = 20\n')
    sock, control = socket_dir / "logd.sock", socket_dir / "ctl.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGD_")}
    env["XDG_RUNTIME_DIR"] = str(socket_dir)
    command = [sys.executable, "-m", "logd", "serve", "--config", str(config)]
    command += ["--socket", str(sock), "--control", str(control)]
    with open(socket_dir / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen(command, env=env, stderr=stderr, text=True)
    daemon = DaemonProcess(proc, root, sock, env, socket_dir / "stderr.txt")
    try:
        wait_ctl_ready(daemon)
        assert ok(daemon, "reload") == "Configuration reloaded.\n"
        config.write_text(
            f'root = "{tmp_path / "elsewhere"}"\n'
            '[listen]\ntcp = "127.0.0.1:24299"\n'
            "[retention]\nruns_keep = 5\n"
        )
        assert ok(daemon, "reload") == (
            "Configuration reloaded; these changes need a restart: root, listen.tcp.\n"
        )
        assert json.loads(ok(daemon, "--json", "reload")) == {
            "reloaded": True,
            "restart_needed": ["root", "listen.tcp"],
        }
        # Each reload is on the daemon's own timeline with every key it changed (item 12).
        wait_for(
            lambda: (
                len(
                    json.loads(
                        ok(daemon, "--json", "events", "--app", "logd", "--type", "logd:reload")
                    )
                )
                == 3
            ),
            10,
        )
        reloads = json.loads(
            ok(daemon, "--json", "events", "--app", "logd", "--type", "logd:reload")
        )
        reloads.sort(key=lambda e: e["id"])
        assert [e["kv"]["changed"] for e in reloads] == [
            [],
            ["root", "listen.tcp", "retention.runs_keep"],
            ["root", "listen.tcp"],
        ]
        assert reloads[1]["kv"]["restart_needed"] == ["root", "listen.tcp"]
    finally:
        assert daemon.stop() == 0
