"""logd under systemd's protocols for real: the unit files through systemd-analyze, and
socket activation through systemd-socket-activate with a fake NOTIFY_SOCKET.

No systemd as PID 1 is needed; each test skips with the reason when its tool is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import read_lines

pytestmark = pytest.mark.e2e

UNITS = Path(__file__).resolve().parents[2] / "systemd"
SYSTEM_UNITS = ["logd.service", "logd.socket", "logd-control.socket"]
MAX_EXPOSURE = 2.0
WRITTEN_200 = re.compile(r"STATUS=0 connections, 20\d records written")

PRODUCER = r"""
import logging, sys
import logd_client as logd

count = int(sys.argv[1])
logd.install(app="activated")
log = logging.getLogger("activated.worker")
for i in range(count):
    log.info("record %d", i)
print(logd.run_id(), flush=True)
sys.exit(0 if logd.flush(20) else 3)
"""


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed here (Debian package: systemd)")
    return path


def units_to_verify(source: Path, target: Path, names: list[str]) -> list[str]:
    """Copies of the units whose ExecStart runs this checkout's logd.

    `systemd-analyze verify` fails on an ExecStart binary that does not exist, and the
    shipped units point at /usr/local/bin/logd (or ~/.local/bin/logd), the install
    locations the README describes.
    """
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        text = (source / name).read_text()
        text, n = re.subn(
            r"^ExecStart=\S*/logd serve$",
            f"ExecStart={sys.executable} -m logd serve",
            text,
            flags=re.MULTILINE,
        )
        assert n == (1 if name.endswith(".service") else 0), name
        (target / name).write_text(text)
        paths.append(os.fspath(target / name))
    return paths


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    # verify exits 0 on warnings such as unknown keys, so its stderr is checked too.
    assert result.returncode == 0, result.stderr
    bad = [
        line
        for line in result.stderr.splitlines()
        if re.search(r"Unknown (key|section|lvalue)|[Ee]rror|[Ff]ailed", line)
    ]
    assert bad == []


def test_system_units_verify(tmp_path: Path) -> None:
    analyze = need("systemd-analyze")
    paths = units_to_verify(UNITS, tmp_path, SYSTEM_UNITS)
    result = subprocess.run(
        [analyze, "verify", *paths], capture_output=True, text=True, timeout=120, check=False
    )
    assert_clean(result)


def test_user_units_verify(tmp_path: Path, socket_dir: Path) -> None:
    analyze = need("systemd-analyze")
    paths = units_to_verify(UNITS / "user", tmp_path / "units", SYSTEM_UNITS)
    # A user manager needs a runtime directory to resolve %t.
    env = dict(os.environ, XDG_RUNTIME_DIR=os.fspath(socket_dir), HOME=os.fspath(tmp_path))
    result = subprocess.run(
        [analyze, "--user", "verify", *paths],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert_clean(result)


def test_shipped_units_fail_verify_only_on_the_install_path() -> None:
    """Unchanged, the only complaint is the not-yet-installed /usr/local/bin/logd."""
    analyze = need("systemd-analyze")
    result = subprocess.run(
        [analyze, "verify", *(os.fspath(UNITS / name) for name in SYSTEM_UNITS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if Path("/usr/local/bin/logd").exists():
        assert_clean(result)
        return
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "verify accepted a missing ExecStart binary"
    assert all("/usr/local/bin/logd" in line for line in lines), lines


def test_security_exposure() -> None:
    analyze = need("systemd-analyze")
    result = subprocess.run(
        [analyze, "security", "--offline=yes", os.fspath(UNITS / "logd.service")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if "--offline" in result.stderr and result.returncode != 0:
        pytest.skip(f"systemd-analyze here has no --offline (needs systemd 252): {result.stderr}")
    match = re.search(r"Overall exposure level for logd\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, result.stdout
    # What must stay visible for the promises: peer uids (no PrivateUsers=).
    assert re.search(r"✗ PrivateUsers=", result.stdout)


# -------------------------------------------------------------- socket activation


@dataclass
class NotifyListener:
    """The service manager's end of NOTIFY_SOCKET: collects every datagram."""

    path: Path
    messages: list[tuple[float, str]] = field(default_factory=list)
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(os.fspath(self.path))
        self._sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._sock is not None:
            self._sock.close()

    def lines(self) -> list[str]:
        return [line for _, message in list(self.messages) for line in message.split("\n")]

    def wait_for(self, predicate: object, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if predicate(self.lines()):  # type: ignore[operator]
                return
            time.sleep(0.05)
        pytest.fail(f"notification not received in time; got {self.lines()}")


@pytest.fixture
def notify_listener(socket_dir: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(socket_dir / "notify.sock")
    listener.start()
    yield listener
    listener.close()


@dataclass
class Activated:
    proc: subprocess.Popen[bytes]
    ingest: Path
    control: Path
    root: Path
    output: Path

    @property
    def stderr(self) -> str:
        return self.output.read_text(errors="replace")


def activate(
    socket_dir: Path,
    root: Path,
    *,
    listen: list[str] | None = None,
    fdnames: str | None = "ingest:control",
    extra_env: dict[str, str] | None = None,
) -> Activated:
    """systemd-socket-activate binds the sockets, then execs logd on the first
    connection, passing them as fds 3.. like systemd's socket units do.

    ``listen`` defaults to the Unix ingest and control sockets in ``socket_dir``.
    """
    tool = need("systemd-socket-activate")
    ingest, control = socket_dir / "logd.sock", socket_dir / "ctl.sock"
    if listen is None:
        listen = [os.fspath(ingest), os.fspath(control)]
    config = socket_dir / "logd.toml"
    config.write_text("")
    # systemd-socket-activate passes only PATH and TERM on; the rest must be named. The
    # cache is the producers' (`produce()`): the spools the daemon delivers at start are
    # this test's, not whatever the user running the suite left in ~/.cache.
    env = {
        "HOME": os.environ.get("HOME", "/"),
        "XDG_RUNTIME_DIR": os.fspath(socket_dir),
        "XDG_CACHE_HOME": os.fspath(root.parent / "cache"),
    }
    for name in ("PYTHONPATH", "COVERAGE_PROCESS_START", "VIRTUAL_ENV"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(extra_env or {})
    command = [tool]
    for address in listen:
        command += ["-l", address]
    if fdnames:
        command.append(f"--fdname={fdnames}")
    command += [f"--setenv={key}={value}" for key, value in env.items()]
    command += [sys.executable, "-m", "logd", "serve", "--root", os.fspath(root)]
    command += ["--config", os.fspath(config)]
    # The same paths a unit would configure: were logd to bind instead of using the
    # inherited sockets, it would find them taken and refuse to start.
    command += ["--socket", os.fspath(ingest), "--control", os.fspath(control)]
    output = socket_dir / "output.txt"
    with output.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    activated = Activated(proc, ingest, control, root, output)
    deadline = time.monotonic() + 20
    while activated.stderr.count("Listening on ") < len(listen):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(activated)
            pytest.fail(f"systemd-socket-activate did not listen: {activated.stderr}")
        time.sleep(0.02)
    return activated


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def stop(activated: Activated) -> None:
    if activated.proc.poll() is None:
        activated.proc.kill()
        activated.proc.wait()


def produce(activated: Activated, count: int, address: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGD_")}
    env["LOGD_ADDRESS"] = address or f"unix:{activated.ingest}"
    env["XDG_CACHE_HOME"] = os.fspath(activated.root.parent / "cache")
    result = subprocess.run(
        [sys.executable, "-c", PRODUCER, str(count)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr + activated.stderr
    return result.stdout.strip()


def assert_records_landed(root: Path, run_id: str, count: int) -> None:
    main = root / "activated" / "runs" / run_id / "main.log"
    ours = [line for line in read_lines(main) if " - activated.worker - " in line]
    assert [line.rsplit(" - ", 1)[1] for line in ours] == [f"record {i}" for i in range(count)]


def test_socket_activation_with_notify_and_watchdog(
    socket_dir: Path, log_root: Path, notify_listener: NotifyListener
) -> None:
    activated = activate(
        socket_dir,
        log_root,
        extra_env={"NOTIFY_SOCKET": os.fspath(notify_listener.path), "WATCHDOG_USEC": "200000"},
    )
    try:
        assert notify_listener.lines() == []  # nothing runs before the first connection
        run_id = produce(activated, 200)
        notify_listener.wait_for(lambda lines: "READY=1" in lines)
        # The ticker's live summary, once it has seen the producer's records (and the
        # client's own app:start / app:end).
        notify_listener.wait_for(lambda lines: any(map(WRITTEN_200.fullmatch, lines)))
        # Half of WATCHDOG_USEC: about every 0.1 s from the event loop.
        notify_listener.wait_for(lambda lines: lines.count("WATCHDOG=1") >= 10)
        activated.proc.send_signal(signal.SIGTERM)
        assert activated.proc.wait(timeout=30) == 0, activated.stderr
    finally:
        stop(activated)
    notify_listener.wait_for(lambda lines: "STOPPING=1" in lines)
    lines = notify_listener.lines()
    assert lines.index("READY=1") < lines.index("STOPPING=1")
    assert not any(line.startswith("WATCHDOG=") for line in lines[lines.index("STOPPING=1") :])
    assert_records_landed(log_root, run_id, 200)
    # The sockets belong to whoever passed them: logd must not unlink them.
    assert activated.ingest.is_socket()
    assert activated.control.is_socket()
    stderr = activated.stderr
    assert f"listening on unix:{activated.ingest}" in stderr
    assert "Traceback" not in stderr


def test_sighup_sends_reloading_then_ready(
    socket_dir: Path, log_root: Path, notify_listener: NotifyListener
) -> None:
    activated = activate(
        socket_dir, log_root, extra_env={"NOTIFY_SOCKET": os.fspath(notify_listener.path)}
    )
    try:
        produce(activated, 1)
        notify_listener.wait_for(lambda lines: "READY=1" in lines)
        activated.proc.send_signal(signal.SIGHUP)
        notify_listener.wait_for(lambda lines: "RELOADING=1" in lines)
        notify_listener.wait_for(lambda lines: lines.count("READY=1") == 2)
        activated.proc.send_signal(signal.SIGTERM)
        assert activated.proc.wait(timeout=30) == 0, activated.stderr
    finally:
        stop(activated)
    lines = notify_listener.lines()
    reloading = lines.index("RELOADING=1")
    assert re.fullmatch(r"MONOTONIC_USEC=\d+", lines[reloading + 1])
    assert "WATCHDOG=1" not in lines  # no WATCHDOG_USEC, no watchdog


def test_unnamed_fds_without_notify_socket(socket_dir: Path, log_root: Path) -> None:
    """No LISTEN_FDNAMES: fd 3 is ingest, fd 4 control; no NOTIFY_SOCKET: no notifying."""
    activated = activate(socket_dir, log_root, fdnames=None)
    try:
        run_id = produce(activated, 20)
        activated.proc.send_signal(signal.SIGTERM)
        assert activated.proc.wait(timeout=30) == 0, activated.stderr
    finally:
        stop(activated)
    assert_records_landed(log_root, run_id, 20)
    assert activated.ingest.is_socket()
    assert "cannot notify" not in activated.stderr


def test_tcp_ingest_from_the_socket_unit(socket_dir: Path, log_root: Path) -> None:
    """A ListenStream=127.0.0.1:PORT in logd.socket: the TCP socket arrives as ingest."""
    port = free_port()
    control = os.fspath(socket_dir / "ctl.sock")
    activated = activate(
        socket_dir, log_root, listen=[f"127.0.0.1:{port}", control], fdnames="ingest:control"
    )
    try:
        run_id = produce(activated, 20, address=f"tcp://127.0.0.1:{port}")
        activated.proc.send_signal(signal.SIGTERM)
        assert activated.proc.wait(timeout=30) == 0, activated.stderr
    finally:
        stop(activated)
    assert_records_landed(log_root, run_id, 20)
    assert f"listening on tcp://127.0.0.1:{port}" in activated.stderr


def test_inherited_tcp_off_loopback_needs_a_shared_key(socket_dir: Path, log_root: Path) -> None:
    port = free_port()
    activated = activate(socket_dir, log_root, listen=[f"0.0.0.0:{port}"], fdnames="ingest")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass  # the first connection makes systemd-socket-activate exec logd
        assert activated.proc.wait(timeout=30) == 1, activated.stderr
    finally:
        stop(activated)
    assert "is off loopback; set [listen] shared_key" in activated.stderr
