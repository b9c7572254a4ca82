"""The real thing: `python -m logd` in its own process, producers in theirs."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from tests.e2e.procs import DaemonProcess, wait_for
from tests.helpers import read_lines

pytestmark = pytest.mark.e2e

PRODUCER = r"""
import logging, os, subprocess, sys, time
import logd_client as logd

name, count = sys.argv[1], int(sys.argv[2])
logd.install(app="shop")
log = logging.getLogger(f"shop.{name}")
for i in range(count):
    with logd.session(f"sess-{name}"):
        log.info("record %s %d", name, i)
    if i % 50 == 0:
        logd.event("llm:request", "agent", model="llama3.2", n=i)
with logd.call(f"call-{name}", bot_id="7"):
    log.info("inside the call of %s", name)
try:
    raise ValueError(f"boom in {name}")
except ValueError:
    log.exception("failed")
if name == "p0":
    child = subprocess.run([sys.executable, "-c",
        "import logging, logd_client as logd; logd.install(app='shop');"
        "logging.getLogger('shop.child').info('child joined'); logd.flush(10)"])
    assert child.returncode == 0
print(logd.run_id(), flush=True)
sys.exit(0 if logd.flush(20) else 3)
"""


def test_many_producers_into_one_daemon(daemon: DaemonProcess) -> None:
    count = 300
    names = ["p0", "p1", "p2"]
    producers = [
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER, name, str(count)],
            env=daemon.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    outputs = [p.communicate(timeout=120)[0] for p in producers]
    assert [p.returncode for p in producers] == [0, 0, 0]
    run_ids = [out.strip() for out in outputs]
    assert len(set(run_ids)) == 3
    root = daemon.root / "shop"

    for name, run_id in zip(names, run_ids, strict=True):
        run_dir = root / "runs" / run_id
        main = read_lines(run_dir / "main.log")
        mine = [line for line in main if f" - record {name} " in line]
        assert [line.rsplit(" ", 1)[1] for line in mine] == [str(i) for i in range(count)]
        assert all(line.startswith(f"[sess-{name}] - ") for line in mine)
        assert all(f" - shop.{name} - INFO - record {name} " in line for line in mine)
        assert not any("inside the call" in line for line in main), "call isolation"
        component = read_lines(run_dir / f"shop.{name}.log")
        assert sum(1 for line in component if line.startswith(f"[sess-{name}] - ")) == count
        failed = [line for line in component if line.endswith(f" - shop.{name} - ERROR - failed")]
        assert len(failed) == 1
        assert failed[0].startswith("[in-progress] - ")
        assert component[-1] == f"ValueError: boom in {name}"
        session = [json.loads(x) for x in read_lines(root / f"sessions/session_sess-{name}.jsonl")]
        assert len(session) == count
        assert {s["run_id"] for s in session} == {run_id}
        (call_file,) = root.glob(f"calls/*/bot_7/call_call-{name}.log")
        call_lines = read_lines(call_file)
        assert any(f"INFO - inside the call of {name}" in line for line in call_lines)
        assert " - tid: " in call_lines[0]

    def all_ended() -> bool:
        metas = [json.loads((root / "runs" / r / "metadata.json").read_text()) for r in run_ids]
        return all(m["end_reason"] is not None for m in metas)

    wait_for(all_ended)
    for run_id in run_ids:
        meta = json.loads((root / "runs" / run_id / "metadata.json").read_text())
        assert meta["end_reason"] == "shutdown"
        assert meta["app"] == "shop"
        assert meta["argv"]
        assert meta["host"]
        assert meta["counts"]["ERROR"] == 1
        assert meta["records"] >= count
    p0 = json.loads((root / "runs" / run_ids[0] / "metadata.json").read_text())
    assert len(p0["pids"]) == 2, "the child joined its parent's run"
    assert any(
        "child joined" in line for line in read_lines(root / "runs" / run_ids[0] / "main.log")
    )

    events = read_lines(root / "events.log")
    types = [line.split("|")[1] for line in events]
    assert types.count("app:start") == 3
    assert types.count("app:shutdown") == 3
    assert types.count("error:runtime") == 3
    assert types.count("llm:request") == 3 * (count // 50)
    assert types.count("call:start") == types.count("call:end") == 3
    errors = [line for line in events if "|error:runtime|" in line]
    assert all("ValueError: boom in p" in line for line in errors)

    assert daemon.stop() == 0
    with sqlite3.connect(daemon.root / "index.sqlite3") as db:
        # The app's events; the daemon's own (app `logd`) are in logd/events.log.
        rows = db.execute(
            "select raw_line from events where app = 'shop' and event_type != '' order by id"
        ).fetchall()
        own = db.execute("select count(*) from events where app = 'logd'").fetchone()[0]
    db.close()
    assert sorted(r[0] for r in rows) == sorted(events)
    assert own == len(read_lines(daemon.root / "logd" / "events.log"))
    assert (root / "runs" / "current").is_symlink()


def test_killed_producer_run_ends_disconnected(daemon: DaemonProcess) -> None:
    script = (
        "import logging, os, time, logd_client as logd; logd.install(app='victim');"
        "logging.getLogger('v').info('alive'); assert logd.flush(10);"
        "print(logd.run_id(), flush=True);"
        "time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=daemon.env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    proc.kill()
    proc.wait()
    proc.stdout.close()
    meta_path = daemon.root / "victim" / "runs" / run_id / "metadata.json"
    wait_for(lambda: json.loads(meta_path.read_text())["end_reason"] is not None)
    meta = json.loads(meta_path.read_text())
    assert meta["end_reason"] == "disconnected"
    assert any(
        line.endswith(" - alive")
        for line in read_lines(daemon.root / "victim" / "runs" / run_id / "main.log")
    )


def test_plain_fluent_logger_client(daemon: DaemonProcess) -> None:
    from fluent import sender

    client = sender.FluentSender("webapp", host=f"unix://{daemon.socket}")
    assert client.emit("access", {"message": "GET /", "level": "INFO", "status": 200})
    assert client.emit("access", {"message": "POST /login", "status": 302})
    client.close()
    main = daemon.root / "webapp" / "runs" / "current" / "main.log"
    wait_for(lambda: main.exists() and len(read_lines(main)) == 2)
    lines = read_lines(main)
    assert lines[0].endswith(" - webapp.access - INFO - GET / status=200")  # extras ride along
    assert lines[1].endswith(" - webapp.access - INFO - POST /login status=302")
    runs = [p for p in main.parent.parent.iterdir() if p.is_dir() and not p.is_symlink()]
    assert [p.name for p in runs] == [main.resolve().parent.name]
    meta = json.loads((main.parent / "metadata.json").read_text())
    assert meta["opened_by"] == "daemon"
    assert meta["pids"] == [os.getpid()]


def test_sigterm_exits_cleanly(daemon: DaemonProcess) -> None:
    assert daemon.stop() == 0
    assert not daemon.socket.exists()
    stderr = daemon.stderr
    assert "listening on unix:" in stderr
    assert "stopped" in stderr
    assert (daemon.root / "logd.log").exists()
