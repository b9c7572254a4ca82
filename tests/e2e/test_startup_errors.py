"""Startup and operator errors as a user meets them: a second daemon on the same root or
socket, a busy port, `logd web` without its extra. Each is one line on stderr naming the
cause, with a non-zero exit, and leaves the daemon already running untouched."""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.procs import DaemonProcess, connectable, ctl_status, start_daemon, wait_for

pytestmark = pytest.mark.e2e

CHECKOUT = Path(__file__).resolve().parents[2]

PRODUCER = r"""
import logging, sys
import logd_client as logd
logd.install(app="shop")
logging.getLogger("shop.cart").info("one record")
sys.exit(0 if logd.flush(20) else 3)
"""

# Runs the real `logd` entry point in an interpreter where the web extra cannot be
# imported, as if it had never been installed.
WITHOUT_WEB_EXTRA = r"""
import sys

class Uninstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("starlette", "hypercorn"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Uninstalled())
from logd.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def serve_command(root: Path, socket_dir: Path, name: str, *args: str) -> list[str]:
    """`logd serve` with its own sockets named `name` (unless `args` override them)."""
    return [
        sys.executable,
        "-m",
        "logd",
        "serve",
        "--root",
        str(root),
        "--socket",
        str(socket_dir / f"{name}.sock"),
        "--control",
        str(socket_dir / f"{name}-ctl.sock"),
        *args,
    ]


def run(command: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[int, str]:
    # A daemon that is not refused would serve forever: the timeout fails the test.
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=20)
    return result.returncode, result.stderr


def the_one_line(stderr: str) -> str:
    """The only non-empty line of `stderr`, which must carry no traceback or group."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for noise in ("Traceback", "sub-exception", "ExceptionGroup"):
        assert noise not in stderr
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback TCP port someone else is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# --- a second daemon -------------------------------------------------------------------


def test_second_daemon_on_the_same_root_is_refused(daemon: DaemonProcess, socket_dir: Path) -> None:
    code, stderr = run(serve_command(daemon.root, socket_dir, "second"), daemon.env)
    assert code == 1
    line = the_one_line(stderr)
    assert line.endswith(
        f"cannot start: another daemon (pid {daemon.proc.pid}) is already writing to {daemon.root}"
    )
    # Refused before binding or logging anything; the running daemon goes on serving.
    assert "cannot start" not in (daemon.root / "logd.log").read_text(encoding="utf-8")
    assert not (socket_dir / "second.sock").exists()
    assert not (socket_dir / "second-ctl.sock").exists()
    assert daemon.proc.poll() is None
    assert ctl_status(daemon)["pid"] == daemon.proc.pid


def test_busy_control_socket_is_one_line_naming_it(
    daemon: DaemonProcess, socket_dir: Path, tmp_path: Path
) -> None:
    control = socket_dir / "ctl.sock"
    command = serve_command(tmp_path / "other", socket_dir, "other", "--control", str(control))
    code, stderr = run(command, daemon.env)
    assert code == 1
    line = the_one_line(stderr)
    assert line.endswith(f"cannot start: another daemon is already listening on {control}")
    assert not (socket_dir / "other.sock").exists()
    assert connectable(control)
    assert connectable(daemon.socket)
    assert ctl_status(daemon)["pid"] == daemon.proc.pid


def test_busy_tcp_port_is_one_line_and_leaves_no_socket_behind(
    busy_port: int, socket_dir: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGD_")}
    command = serve_command(tmp_path / "root", socket_dir, "t", "--tcp", f"127.0.0.1:{busy_port}")
    code, stderr = run(command, env)
    assert code == 1
    line = the_one_line(stderr)
    assert line.endswith(
        f"cannot start: cannot listen on tcp 127.0.0.1:{busy_port}: Address already in use"
    )
    assert not (socket_dir / "t.sock").exists()


def test_daemon_killed_with_sigkill_leaves_its_root_free(log_root: Path, socket_dir: Path) -> None:
    first = start_daemon(log_root, socket_dir)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    second = start_daemon(log_root, socket_dir)
    try:
        assert (log_root / ".lock").read_text() == f"{second.proc.pid}\n"
        code, stderr = run(serve_command(log_root, socket_dir, "third"), second.env)
        assert code == 1
        assert f"(pid {second.proc.pid})" in the_one_line(stderr)
    finally:
        assert second.stop() == 0


def test_lock_outlives_cleanup_and_blocks_no_reader(
    log_root: Path, socket_dir: Path, tmp_path: Path
) -> None:
    """Retention removing everything it may keeps the lock file (and so the lock); logd-ctl
    and logd web read the locked root."""
    config = tmp_path / "logd.toml"
    config.write_text(
        "[retention]\nruns_days = 0\nruns_keep = 0\nsessions_days = 0\nmax_total_bytes = 1\n",
        encoding="utf-8",
    )
    daemon = start_daemon(log_root, socket_dir, args=("--config", str(config)))
    try:
        produced = subprocess.run(
            [sys.executable, "-c", PRODUCER], env=daemon.env, timeout=60, check=False
        )
        assert produced.returncode == 0
        ctl = [sys.executable, "-m", "logd.ctl", "--control", str(socket_dir / "ctl.sock")]

        def run_ended() -> bool:
            runs = subprocess.run(
                [*ctl, "--json", "runs"], env=daemon.env, capture_output=True, text=True
            )
            return any(r["end_time"] for r in json.loads(runs.stdout or "[]"))

        wait_for(run_ended)
        cleanup = subprocess.run(
            [*ctl, "--json", "cleanup"], env=daemon.env, capture_output=True, text=True
        )
        assert cleanup.returncode == 0, cleanup.stderr
        deleted = json.loads(cleanup.stdout)["deleted"]
        assert any(path.startswith("shop/runs/") for path in deleted)
        assert not any(".lock" in path for path in deleted)
        assert (log_root / ".lock").read_text() == f"{daemon.proc.pid}\n"
        code, stderr = run(serve_command(log_root, socket_dir, "second"), daemon.env)
        assert code == 1
        assert f"(pid {daemon.proc.pid})" in the_one_line(stderr)
        web_reads(daemon, socket_dir)
    finally:
        assert daemon.stop() == 0


def web_reads(daemon: DaemonProcess, socket_dir: Path) -> None:
    """`logd web` on the locked root answers with the daemon's status."""
    pytest.importorskip("starlette", reason="logd web needs the web extra")
    command = [sys.executable, "-m", "logd", "web", "--listen", "127.0.0.1:0"]
    command += ["--root", str(daemon.root), "--control", str(socket_dir / "ctl.sock")]
    with subprocess.Popen(command, env=daemon.env, stdout=subprocess.PIPE, text=True) as web:
        try:
            assert web.stdout is not None
            ready, _, _ = select.select([web.stdout], [], [], 20)
            assert ready, "logd web did not start"
            # "logd web: serving http://127.0.0.1:PORT (root ..., control ...)"
            port = int(web.stdout.readline().split("http://127.0.0.1:", 1)[1].split()[0])
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/api/status")
            reply = conn.getresponse()
            assert reply.status == 200
            assert json.loads(reply.read())["pid"] == daemon.proc.pid
            conn.close()
        finally:
            web.send_signal(signal.SIGTERM)
            web.wait(timeout=30)


# --- logd web --------------------------------------------------------------------------


def test_web_on_a_busy_port_is_one_line_naming_it(busy_port: int, tmp_path: Path) -> None:
    pytest.importorskip("starlette", reason="logd web needs the web extra")
    listen = f"127.0.0.1:{busy_port}"
    command = [sys.executable, "-m", "logd", "web", "--listen", listen, "--root", str(tmp_path)]
    code, stderr = run(command, dict(os.environ))
    assert code == 1
    assert the_one_line(stderr) == f"logd web: cannot listen on {listen}: Address already in use"


@pytest.mark.parametrize("in_checkout", [False, True])
def test_web_without_the_extra_names_the_install_command_for_this_checkout(
    in_checkout: bool, tmp_path: Path
) -> None:
    env = dict(os.environ)
    # This checkout's logd, whatever else is installed.
    paths = [str(CHECKOUT), str(CHECKOUT / "client"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    cwd = CHECKOUT if in_checkout else tmp_path
    command = [sys.executable, "-c", WITHOUT_WEB_EXTRA, "web", "--root", str(tmp_path)]
    code, stderr = run(command, env, cwd=cwd)
    assert code == 2
    on_path = shutil.which("python3")
    same = on_path and os.path.realpath(on_path) == os.path.realpath(sys.executable)
    python = "python3" if same else sys.executable
    where = "." if in_checkout else str(CHECKOUT)
    assert the_one_line(stderr) == (
        "logd web needs the web extra (starlette, hypercorn): "
        f'{python} -m pip install -e "{where}/client" -e "{where}[web]"'
    )
