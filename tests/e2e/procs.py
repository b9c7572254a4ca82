"""Real daemon and producer processes for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[str]
    root: Path
    socket: Path
    env: dict[str, str]
    stderr_path: Path

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def connectable(path: Path) -> bool:
    """Whether something accepts connections on the Unix socket at `path`."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(os.fspath(path))
        except OSError:
            return False
    return True


def start_daemon(
    root: Path,
    socket_dir: Path,
    *,
    preexec_fn: Callable[[], None] | None = None,
    args: tuple[str, ...] = (),
    stderr_pipe: bool = False,
    module: str = "logd",
    extra_env: dict[str, str] | None = None,
) -> DaemonProcess:
    """`python -m logd serve` in its own process; returns once both its ingest and its
    control socket accept (they are bound one after the other).

    With `stderr_pipe`, its stderr reaches the file through a pipe and a thread here: for
    a daemon whose RLIMIT_FSIZE would refuse its writes to that file. `module` runs a
    test's wrapper of logd's main instead (from this repository), with `extra_env`.
    """
    sock = socket_dir / "logd.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGD_")}
    env["LOGD_ADDRESS"] = f"unix:{sock}"
    env["XDG_RUNTIME_DIR"] = str(socket_dir)
    env["XDG_CACHE_HOME"] = str(socket_dir / "cache")
    env["LOGD_SPOOL_DIR"] = os.environ.get("LOGD_SPOOL_DIR") or str(socket_dir / "spool")
    if module != "logd":
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *sys.path])
    env.update(extra_env or {})
    stderr_path = socket_dir / "stderr.txt"
    command = [sys.executable, "-m", module, "serve", "--root", str(root)]
    command += ["--socket", str(sock), "--control", str(socket_dir / "ctl.sock"), *args]
    if stderr_pipe:
        proc = subprocess.Popen(
            command, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn
        )
        threading.Thread(target=_copy, args=(proc, stderr_path), daemon=True).start()
    else:
        with open(stderr_path, "a") as stderr:
            proc = subprocess.Popen(
                command, env=env, stderr=stderr, text=True, preexec_fn=preexec_fn
            )
    daemon = DaemonProcess(proc, root, sock, env, stderr_path)
    deadline = time.monotonic() + 20
    while not (connectable(sock) and connectable(socket_dir / "ctl.sock")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"logd did not start: {daemon.stderr}")
        time.sleep(0.05)
    return daemon


def _copy(proc: subprocess.Popen[str], path: Path) -> None:
    assert proc.stderr is not None
    with proc.stderr, open(path, "a") as out:
        for line in proc.stderr:
            out.write(line)
            out.flush()


def wait_for(predicate: Callable[[], Any], seconds: float = 20) -> None:
    """Poll until `predicate()` is true; fail the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail("condition not reached in time")


def ctl_json(daemon: DaemonProcess, *args: str) -> Any:
    """`logd-ctl --json ARGS` of `daemon`, through its control socket, decoded."""
    control = daemon.socket.parent / "ctl.sock"
    result = subprocess.run(
        [sys.executable, "-m", "logd.ctl", "--control", str(control), "--json", *args],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def ctl_status(daemon: DaemonProcess) -> dict[str, object]:
    """`logd-ctl --json status` of `daemon`."""
    status: dict[str, object] = ctl_json(daemon, "status")
    return status
