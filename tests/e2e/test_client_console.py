"""What an app sees of logd_client on its own console and at exit when the daemon is
absent or stopped (#17): real app processes, no XDG_RUNTIME_DIR."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.procs import start_daemon, wait_for

pytestmark = pytest.mark.e2e

# The README's smallest app, with a knob for install()'s keyword arguments.
APP = r"""
import logging, sys
import logd_client as logd
{before}
logd.install(app="three"{install})
log = logging.getLogger("three")
log.info("info line")
log.warning("hello")
with logd.session("s-1"):
    log.error("in the session")
"""
# Far beyond any exit this test waits for: an exit hook that waited for it would fail.
FLUSH_BOUND_S = 3600


def run_app(
    tmp_path: Path, *, before: str = "", install: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The app, with no daemon anywhere and the runtime dir unset (cron, containers)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LOGD_", "XDG_"))}
    base["LOGD_SPOOL_DIR"] = str(tmp_path / "spool")
    base["HOME"] = str(tmp_path)
    script = APP.format(before=before, install=f", exit_flush_timeout_s={FLUSH_BOUND_S}{install}")
    return subprocess.run(
        # `-W default` shows every warning once, as in an app where it was not filtered.
        [sys.executable, "-W", "default", "-c", script],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def spooled_bytes(spool: Path) -> int:
    return sum(p.stat().st_size for p in spool.rglob("*") if p.is_file())


def test_default_console_keeps_warnings_with_the_session_id(tmp_path: Path) -> None:
    """Without logging set up, the app printed WARNING and above (logging's last resort);
    after install() it still does, each line starting with the session id, and nothing
    else reaches stderr: no RuntimeDirWarning, no traceback. The exit hook does not wait
    for a daemon that is not there: it spools and the app exits."""
    result = run_app(tmp_path)
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "[in-progress] - WARNING - hello",
        "[s-1] - ERROR - in the session",
    ]
    assert spooled_bytes(tmp_path / "spool") > 0


def test_console_false_prints_nothing(tmp_path: Path) -> None:
    result = run_app(tmp_path, install=", console=False")
    assert result.returncode == 0
    assert result.stderr == ""


def test_console_level_prints_more(tmp_path: Path) -> None:
    result = run_app(tmp_path, install=', console="INFO"')
    assert result.stderr.splitlines() == [
        "[in-progress] - INFO - info line",
        "[in-progress] - WARNING - hello",
        "[s-1] - ERROR - in the session",
    ]


def test_an_app_with_its_own_console_keeps_it(tmp_path: Path) -> None:
    before = 'logging.basicConfig(format="app: %(levelname)s %(message)s")'
    result = run_app(tmp_path, before=before)
    assert result.stderr.splitlines() == ["app: WARNING hello", "app: ERROR in the session"]


def test_the_session_filter_from_dict_config(tmp_path: Path) -> None:
    """`SessionFilter` gives any handler `%(session_id)s`, `%(run_id)s` and `%(call_id)s`."""
    before = """
import logging.config
logging.config.dictConfig({
    "version": 1,
    "filters": {"ids": {"()": "logd_client.SessionFilter"}},
    "handlers": {"err": {
        "class": "logging.StreamHandler",
        "filters": ["ids"],
        "formatter": "f",
    }},
    "formatters": {"f": {"format": "%(session_id)s|%(run_id)s|%(call_id)s|%(message)s"}},
    "root": {"handlers": ["err"], "level": "WARNING"},
})
"""
    result = run_app(tmp_path, before=before)
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    session, run_id, call_id, message = lines[1].split("|")
    assert (session, call_id, message) == ("s-1", "None", "in the session")
    assert run_id.startswith(("20", "19"))  # the run install() opened, YYYYMMDD_...
    assert lines[0].startswith("in-progress|")


STALLED = r"""
import logging, sys
import logd_client as logd

logd.install(app="stalled", console=False, exit_flush_timeout_s=float(sys.argv[1]))
log = logging.getLogger("stalled")
log.info("before")
assert logd.flush(30)
print("acknowledged", flush=True)
sys.stdin.readline()  # the daemon is stopped now
log.info("after")
"""


def test_exit_does_not_wait_for_a_stopped_daemon(log_root: Path, socket_dir: Path) -> None:
    """Connected, but the daemon sends no more acks (SIGSTOP here; a full disk alike): the
    exit hook waits while acks arrive, not for its whole timeout, and spools the rest,
    which the daemon writes once it runs again."""
    daemon = start_daemon(log_root, socket_dir)
    try:
        with subprocess.Popen(
            [sys.executable, "-c", STALLED, str(FLUSH_BOUND_S)],
            env=daemon.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as app:
            assert app.stdin is not None
            assert app.stdout is not None
            assert app.stdout.readline() == "acknowledged\n"
            daemon.proc.send_signal(signal.SIGSTOP)
            try:
                app.stdin.write("go\n")
                app.stdin.close()
                assert app.wait(timeout=120) == 0
            finally:
                daemon.proc.send_signal(signal.SIGCONT)
        assert spooled_bytes(Path(daemon.env["LOGD_SPOOL_DIR"])) > 0
        main_logs = log_root / "stalled"
        wait_for(lambda: "after" in "".join(p.read_text() for p in main_logs.rglob("main.log")))
    finally:
        daemon.stop()
