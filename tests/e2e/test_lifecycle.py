"""Lifecycle across daemon restarts: lost runs, a corrupt index, config errors, SIGHUP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from logd.index.store import RegistryStore
from tests.e2e.procs import DaemonProcess, start_daemon, wait_for
from tests.helpers import read_lines

pytestmark = pytest.mark.e2e

SLEEPER = (
    "import logging, time, logd_client as logd; logd.install(app='crashy');"
    "logging.getLogger('c').info('hello'); assert logd.flush(10);"
    "print(logd.run_id(), flush=True); time.sleep(120)"
)


def run_logd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logd", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_runs_open_at_a_crash_end_as_lost(
    daemon: DaemonProcess, log_root: Path, socket_dir: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SLEEPER], env=daemon.env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait()
    proc.kill()
    proc.wait()
    proc.stdout.close()
    meta_path = log_root / "crashy" / "runs" / run_id / "metadata.json"
    assert json.loads(meta_path.read_text())["end_reason"] is None
    restarted = start_daemon(log_root, socket_dir)
    try:
        meta = json.loads(meta_path.read_text())
        assert meta["end_reason"] == "lost"
        assert meta["end_time"] is not None
    finally:
        assert restarted.stop() == 0
    store = RegistryStore(log_root / "index.sqlite3")
    (row,) = store.list_runs(app="crashy")
    store.close()
    assert row["end_reason"] == "lost"


def test_corrupt_index_is_rebuilt_from_the_files(
    daemon: DaemonProcess, log_root: Path, socket_dir: Path
) -> None:
    script = (
        "import logging, logd_client as logd; logd.install(app='rb');"
        "logd.event('llm:request', 'agent', model='m'); assert logd.flush(10)"
    )
    subprocess.run([sys.executable, "-c", script], env=daemon.env, check=True, timeout=60)
    assert daemon.stop() == 0
    index = log_root / "index.sqlite3"
    for suffix in ("-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    index.write_bytes(b"this is not a database" * 100)
    restarted = start_daemon(log_root, socket_dir)
    try:
        assert "rebuilt" in restarted.stderr
    finally:
        assert restarted.stop() == 0
    assert list(log_root.glob("index.sqlite3.corrupt-*")), "the bad file is kept aside"
    store = RegistryStore(index)
    runs = store.list_runs(app="rb")
    store.close()
    assert len(runs) == 1
    assert runs[0]["end_reason"] == "shutdown"
    import sqlite3

    with sqlite3.connect(index) as db:
        types = [r[0] for r in db.execute("select event_type from events where app = 'rb'")]
    assert "llm:request" in types


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[rotation.run]\nmax_bytes = -5\n", "[rotation.run] max_bytes = -5"),
        ("[limits]\nbogus = 1\n", "bogus"),
        ('[durability]\nfsync = "sometimes"\n', "fsync"),
        ("not toml at all [", "logd.toml"),
    ],
)
def test_config_errors_stop_the_start_with_one_line(
    tmp_path: Path, toml: str, message: str
) -> None:
    config = tmp_path / "logd.toml"
    config.write_text(toml)
    result = run_logd("serve", "--config", str(config), "--root", str(tmp_path / "r"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert str(config) in lines[0]


def test_sighup_reloads_and_a_bad_file_keeps_the_old_config(
    log_root: Path, socket_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "logd.toml"
    config.write_text("[layout]\ncomponent_files = true\n")
    daemon = start_daemon(log_root, socket_dir, args=("--config", str(config)))
    try:
        log_one = (
            "import logging, sys, logd_client as logd; logd.install(app='hup');"
            "logging.getLogger(sys.argv[1]).info('x'); assert logd.flush(10);"
            "print(logd.run_id())"
        )

        def produce(logger: str) -> str:
            out = subprocess.run(
                [sys.executable, "-c", log_one, logger],
                env=daemon.env,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            return out.stdout.strip()

        run = produce("before")
        assert (log_root / "hup" / "runs" / run / "before.log").exists()
        config.write_text("[layout]\ncomponent_files = false\n")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in daemon.stderr)
        run = produce("after")
        assert not (log_root / "hup" / "runs" / run / "after.log").exists()
        assert read_lines(log_root / "hup" / "runs" / run / "main.log")
        config.write_text("[layout]\nbogus = 1\n")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in daemon.stderr)
        assert daemon.proc.poll() is None
    finally:
        assert daemon.stop() == 0
