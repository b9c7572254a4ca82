"""logd under a real systemd, installed as the README says, in a booted Debian container.

A minimal Debian rootfs (``nspawn_rootfs.sh``: debootstrap, Debian's packages, a venv at
/opt/logd with logd's dependencies) is built once and cached in /var/tmp; each run boots
it with ``systemd-nspawn --boot --volatile=overlay`` (the cache stays untouched), installs
this checkout's logd into /opt/logd, copies the units to /etc/systemd/system, creates
the user with systemd-sysusers and enables the sockets. Commands get in through
``nsenter`` into the container's PID 1; producers run as a user in group logd.

Skipped, with the reason, where nspawn cannot boot: not root, no systemd-nspawn or
debootstrap (Debian packages systemd-container, debootstrap), no rootfs (debootstrap
failed, e.g. offline), or the container did not come up.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
SCRIPT = Path(__file__).with_name("nspawn_rootfs.sh")
CACHE = Path(os.environ.get("LOGD_NSPAWN_CACHE", "/var/tmp"))
CACHE_PREFIX = "logd-nspawn-rootfs-"
STALE_S = 2 * 86400
MAX_EXPOSURE = 2.0
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PRODUCER_PATH = "/usr/local/lib/logd-test/producer.py"
SYSTEM_ADDRESS = "LOGD_ADDRESS=unix:/run/logd/logd.sock"
STATUS = re.compile(r'Status: "(\d+) connections, (\d+) records written')

# Logs `count` numbered records, or (with a stop file) until that file exists; prints
# the run id first and the number of records last.
PRODUCER = r"""
import logging, os, sys, time
import logd_client as logd

app, count, stop_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
logd.install(app=app)
log = logging.getLogger(app + ".worker")
print(logd.run_id(), flush=True)
i = 0
while i < count or (stop_file and not os.path.exists(stop_file)):
    log.info("n=%d", i)
    i += 1
    if stop_file:
        time.sleep(0.002)
ok = logd.flush(60)
print(i, flush=True)
sys.exit(0 if ok else 3)
"""


def requirements() -> list[str]:
    """What the rootfs's venv needs: logd's and logd-client's dependencies and the build
    backend, from the pyproject files (logd-client itself is built from the checkout)."""
    found: set[str] = set()
    for path in (REPO / "pyproject.toml", REPO / "client" / "pyproject.toml"):
        data = tomllib.loads(path.read_text())
        found.update(data["build-system"]["requires"])
        found.update(d for d in data["project"]["dependencies"] if not d.startswith("logd"))
    return sorted(found)


def cached_rootfs(log_dir: Path) -> Path:
    """The rootfs for this script and these requirements, built on first use (the
    script takes a lock, so concurrent runs build it once)."""
    reqs = requirements()
    key = hashlib.sha256(SCRIPT.read_bytes() + "\n".join(reqs).encode()).hexdigest()[:16]
    dest = CACHE / f"{CACHE_PREFIX}{key}"
    if not dest.is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        log = log_dir / "rootfs-build.log"
        env = dict(os.environ, PYTHON=sys.executable)
        with log.open("wb") as out:
            result = subprocess.run(
                ["bash", os.fspath(SCRIPT), os.fspath(dest), *reqs],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=1200,
                check=False,
            )
        if not dest.is_dir():
            tail = log.read_text(errors="replace").strip().splitlines()[-8:]
            pytest.skip(
                f"could not build the Debian rootfs (exit {result.returncode}; offline?): "
                + " | ".join(tail)
            )
    os.utime(dest)  # marks it used, for the pruning below
    # Another inputs' rootfs unused for two days would only take space.
    for old in CACHE.iterdir():
        if (
            re.fullmatch(rf"{CACHE_PREFIX}[0-9a-f]{{16}}", old.name)
            and old != dest
            and time.time() - old.stat().st_mtime > STALE_S
        ):
            shutil.rmtree(old, ignore_errors=True)
            Path(f"{old}.lock").unlink(missing_ok=True)
    return dest


def build_wheels(rootfs: Path, out: Path) -> list[Path]:
    """Wheels of this checkout's logd-client and logd, built offline on the host (the
    build backend comes from the rootfs's wheel folder) from a copy of the sources."""
    src = out / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    shutil.copytree(REPO / "logd", src / "logd", ignore=ignore)
    shutil.copytree(REPO / "client", src / "client", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    wheels = out / "wheels"
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"]
    command += ["--no-deps", "--no-index", "--find-links", os.fspath(rootfs / "opt" / "wheels")]
    command += ["--wheel-dir", os.fspath(wheels), os.fspath(src / "client"), os.fspath(src)]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    built = sorted(wheels.glob("*.whl"))
    assert len(built) == 2, built
    return built


def wait_until(predicate: Callable[[], object], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@dataclass
class Container:
    """A booted container and the ways in: commands through nsenter, files through
    /proc/<pid 1>/root."""

    nspawn: subprocess.Popen[bytes]
    pid1: int
    console: Path

    @property
    def root(self) -> Path:
        return Path(f"/proc/{self.pid1}/root")

    def command(self, *argv: str, user: str | None = None, env: tuple[str, ...] = ()) -> list[str]:
        prefix = ["nsenter", "--target", str(self.pid1), "--all", "env", "-i", PATH]
        prefix += ["LANG=C.UTF-8", "HOME=/root"]
        if user is not None:
            # runuser sets HOME, USER and LOGNAME to the user's.
            prefix += ["runuser", "-u", user, "--", "env"]
        return [*prefix, *env, *argv]

    def run(
        self,
        *argv: str,
        user: str | None = None,
        env: tuple[str, ...] = (),
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(*argv, user=user, env=env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
                f"\n--- the container's journal:\n{self.journal_tail()}"
            )
        return result

    def journal_tail(self, lines: int = 40) -> str:
        result = subprocess.run(
            self.command("journalctl", "--no-pager", "-n", str(lines)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return result.stdout + result.stderr

    def out(self, *argv: str, user: str | None = None, env: tuple[str, ...] = ()) -> str:
        return self.run(*argv, user=user, env=env).stdout.strip()

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def write(self, inside: str, text: str) -> None:
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def copy_in(self, source: Path, inside: str) -> None:
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)

    def show(self, unit: str, prop: str) -> str:
        return self.out("systemctl", "show", "-P", prop, unit)

    def uid(self, user: str) -> int:
        return int(self.out("id", "-u", user))

    def produce(
        self, user: str, app: str, count: int, env: tuple[str, ...] = (SYSTEM_ADDRESS,)
    ) -> str:
        """Runs the producer to its end; returns its run id."""
        result = self.run(
            "/opt/logd/bin/python", PRODUCER_PATH, app, str(count), "", user=user, env=env
        )
        run_id, written = result.stdout.split()
        assert int(written) == count
        return run_id

    def stop(self) -> None:
        # SIGTERM makes nspawn ask the container's systemd to power off.
        if self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait()


def find_pid1(nspawn: subprocess.Popen[bytes]) -> int | None:
    """The container's systemd: the child of systemd-nspawn running as "systemd"."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid ...; comm may hold spaces, so split after ")".
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        if comm == "systemd" and int(text[text.rindex(")") + 2 :].split()[1]) == nspawn.pid:
            pids.append(int(stat.parent.name))
    return pids[0] if len(pids) == 1 else None


def boot(rootfs: Path, run_dir: Path) -> Container:
    console = run_dir / "console.log"
    name = f"logd-test-{os.getpid()}"
    command = ["systemd-nspawn", "--quiet", "--directory", os.fspath(rootfs), "--boot"]
    # No system bus on the host: no registration, and the caller's own unit.
    command += ["--register=no", "--keep-unit", "--console=read-only"]
    # The cached rootfs stays read-only under a tmpfs overlay; the container gets only
    # loopback, which is all logd's sockets need.
    command += ["--volatile=overlay", "--private-network", f"--machine={name}"]
    with console.open("wb") as out:
        nspawn = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    container: Container | None = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and nspawn.poll() is None:
        pid1 = find_pid1(nspawn)
        if pid1 is not None:
            candidate = Container(nspawn, pid1, console)
            state = subprocess.run(
                candidate.command("systemctl", "is-system-running", "--wait"),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            ).stdout.strip()
            if state in ("running", "degraded"):
                container = candidate
                break
        time.sleep(0.2)
    if container is None:
        if nspawn.poll() is None:
            nspawn.kill()
            nspawn.wait()
        tail = console.read_text(errors="replace").strip().splitlines()[-8:]
        pytest.skip(f"systemd-nspawn --boot did not come up here: {' | '.join(tail)}")
    return container


def install_logd(container: Container, wheels: list[Path]) -> None:
    """As the README says: logd in a venv at /opt/logd, the ExecStart override, the
    units in /etc/systemd/system, the user from systemd-sysusers, the sockets enabled."""
    staged = [f"/var/tmp/wheels/{wheel.name}" for wheel in wheels]
    for wheel, inside in zip(wheels, staged, strict=True):
        container.copy_in(wheel, inside)
    container.run("/opt/logd/bin/pip", "install", "--quiet", "--no-index", "--no-deps", *staged)
    for name in ("logd.service", "logd.socket", "logd-control.socket"):
        container.copy_in(UNITS / name, f"/etc/systemd/system/{name}")
    container.write(
        "/etc/systemd/system/logd.service.d/override.conf",
        "[Service]\nExecStart=\nExecStart=/opt/logd/bin/logd serve\n",
    )
    container.copy_in(UNITS / "logd.sysusers", "/usr/lib/sysusers.d/logd.conf")
    container.run("systemd-sysusers")
    container.run("systemctl", "daemon-reload")
    container.run("systemctl", "enable", "--now", "logd.socket", "logd-control.socket")
    container.write(PRODUCER_PATH, PRODUCER)
    # alice logs to the system daemon (group logd); mallory is not in the group.
    container.run("useradd", "--create-home", "--groups", "logd", "alice")
    container.run("useradd", "--create-home", "mallory")


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    if not sys.platform.startswith("linux"):
        pytest.skip("systemd-nspawn needs Linux")
    if os.geteuid() != 0:
        pytest.skip("systemd-nspawn --boot and debootstrap need root")
    for tool, package in (
        ("systemd-nspawn", "systemd-container"),
        ("debootstrap", "debootstrap"),
        ("nsenter", "util-linux"),
    ):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed here (Debian package {package})")
    run_dir = tmp_path_factory.mktemp("nspawn")
    started = time.monotonic()
    rootfs = cached_rootfs(run_dir)
    print(f"rootfs {rootfs} ready in {time.monotonic() - started:.1f}s")
    wheels = build_wheels(rootfs, run_dir)
    started = time.monotonic()
    box = boot(rootfs, run_dir)
    print(f"booted in {time.monotonic() - started:.1f}s")
    try:
        install_logd(box, wheels)
        yield box
        journal = box.run("journalctl", "--no-pager", "-o", "cat", "-u", "logd.service")
        assert "Traceback" not in journal.stdout, journal.stdout
    finally:
        box.stop()


# ----------------------------------------------------------------------------- helpers


def run_dir(box: Container, app: str, run_id: str, root: str = "/var/log/logd") -> Path:
    return box.path(f"{root}/{app}/runs/{run_id}")


def numbers(main_log: Path, app: str) -> list[int]:
    text = main_log.read_text(encoding="utf-8") if main_log.exists() else ""
    return [
        int(m) for m in re.findall(rf" - {re.escape(app)}\.worker - INFO - n=(\d+)$", text, re.M)
    ]


def status_records(status: str) -> int:
    """The records count in `systemctl status`'s Status: line, -1 without one."""
    match = STATUS.search(status)
    return int(match.group(2)) if match else -1


def reload_count(box: Container) -> int:
    journal = box.out("journalctl", "--no-pager", "-o", "cat", "-u", "logd.service")
    return journal.count("configuration reloaded")


# ------------------------------------------------------------------------------- tests


def test_first_connection_starts_the_service(container: Container) -> None:
    box = container
    for unit in ("logd.socket", "logd-control.socket"):
        assert box.out("systemctl", "is-enabled", unit) == "enabled"
        assert box.out("systemctl", "is-active", unit) == "active"
    box.run("systemctl", "stop", "logd.service")
    assert (
        box.run("systemctl", "is-active", "logd.service", check=False).stdout.strip() == "inactive"
    )
    # systemd's sockets, with the units' owners and modes, wait for the first client.
    assert box.out("stat", "-c", "%U:%G %a %F", "/run/logd/logd.sock") == "logd:logd 660 socket"
    assert box.out("stat", "-c", "%U:%G %a %F", "/run/logd/ctl.sock") == "logd:logd 600 socket"

    run_id = box.produce("alice", "first", 50)

    assert box.out("systemctl", "is-active", "logd.service") == "active"
    assert numbers(run_dir(box, "first", run_id) / "main.log", "first") == list(range(50))
    # STATUS= from the daemon's ticker, once it has counted the records (and the
    # client's own app:start / app:shutdown).
    status = ""

    def counted() -> bool:
        nonlocal status
        status = box.run("systemctl", "status", "--no-pager", "logd", check=False).stdout
        return status_records(status) >= 52

    wait_until(counted, "systemctl status to show the records")
    assert "Active: active (running)" in status
    assert "/opt/logd/bin/logd serve" in status
    # The control socket answers logd-ctl (root; the socket is 0600 logd).
    ctl = box.out("/opt/logd/bin/logd-ctl", "--control", "/run/logd/ctl.sock", "status")
    assert "running" in ctl


def test_group_and_modes_keep_others_out(container: Container) -> None:
    box = container
    probe = "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])"
    for user, path, allowed in (
        ("alice", "/run/logd/logd.sock", True),
        ("alice", "/run/logd/ctl.sock", False),
        ("mallory", "/run/logd/logd.sock", False),
    ):
        result = box.run("/opt/logd/bin/python", "-c", probe, path, user=user, check=False)
        assert (result.returncode == 0) is allowed, (user, path, result.stderr)
        if not allowed:
            assert "PermissionError" in result.stderr


def test_reload_applies_a_changed_config(container: Container) -> None:
    box = container
    box.run("systemctl", "start", "logd.service")
    pid = box.show("logd.service", "MainPID")
    before = box.produce("alice", "reload", 5)
    assert (run_dir(box, "reload", before) / "reload.worker.log").exists()

    box.write("/etc/logd/logd.toml", "[layout]\ncomponent_files = false\n")
    try:
        reloads = reload_count(box)
        box.run("systemctl", "reload", "logd")
        # ExecReload only sends SIGHUP; the daemon logs once it has applied the file.
        wait_until(lambda: reload_count(box) > reloads, "logd to log the reload")
        after = box.produce("alice", "reload", 5)
        assert box.show("logd.service", "MainPID") == pid
        files = sorted(p.name for p in run_dir(box, "reload", after).iterdir())
        assert files == ["main.log", "metadata.json"]
        assert numbers(run_dir(box, "reload", after) / "main.log", "reload") == list(range(5))
    finally:
        box.path("/etc/logd/logd.toml").unlink()
        reloads = reload_count(box)
        box.run("systemctl", "reload", "logd")
        wait_until(lambda: reload_count(box) > reloads, "logd to log the reload")


def test_restart_loses_no_record(container: Container) -> None:
    box = container
    box.run("systemctl", "start", "logd.service")
    old_pid = box.show("logd.service", "MainPID")
    sock_inode = box.path("/run/logd/logd.sock").stat().st_ino
    stop_file = "/var/tmp/restart.stop"
    producer = subprocess.Popen(
        box.command(
            "/opt/logd/bin/python",
            PRODUCER_PATH,
            "restart",
            "0",
            stop_file,
            user="alice",
            env=(SYSTEM_ADDRESS,),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert producer.stdout is not None
        run_id = producer.stdout.readline().strip()
        main_log = run_dir(box, "restart", run_id) / "main.log"
        wait_until(lambda: len(numbers(main_log, "restart")) >= 200, "records before the restart")

        started = time.monotonic()
        box.run("systemctl", "restart", "logd.service")
        took = time.monotonic() - started
        new_pid = box.show("logd.service", "MainPID")
        assert new_pid not in (old_pid, "0")
        # Records written by the new daemon: the producer is still at it.
        landed = len(numbers(main_log, "restart"))
        wait_until(
            lambda: len(numbers(main_log, "restart")) >= landed + 200, "records after the restart"
        )
        box.path(stop_file).touch()
        out, err = producer.communicate(timeout=90)
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.communicate()
    assert producer.returncode == 0, err
    count = int(out.split()[-1])
    seen = numbers(main_log, "restart")
    missing = sorted(set(range(count)) - set(seen))
    assert not missing, f"{len(missing)} of {count} records lost, first {missing[:5]}"
    print(f"restart took {took:.1f}s; {count} records, {len(seen) - count} duplicates")
    # The socket stayed systemd's: same file, never unlinked by the stop.
    assert box.path("/run/logd/logd.sock").stat().st_ino == sock_inode
    assert box.show("logd.service", "NRestarts") == "0"


def test_hardened_daemon_writes_logs_and_sees_peer_uids(container: Container) -> None:
    box = container
    box.run("systemctl", "start", "logd.service")
    pid = box.show("logd.service", "MainPID")
    logd_uid, alice_uid = box.uid("logd"), box.uid("alice")
    status = dict(
        line.split(":\t", 1)
        for line in box.path(f"/proc/{pid}/status").read_text().splitlines()
        if ":\t" in line
    )
    assert status["Uid"].split() == [str(logd_uid)] * 4
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    assert int(status["CapEff"], 16) == 0
    assert int(status["CapBnd"], 16) == 0
    # The sandbox as systemd applies it, not just as the file reads.
    analysis = box.run("systemd-analyze", "security", "--no-pager", "logd.service").stdout
    match = re.search(r"Overall exposure level for logd\.service: (\d+\.\d+)", analysis)
    assert match, analysis
    assert float(match.group(1)) <= MAX_EXPOSURE, analysis

    run_id = box.produce("alice", "hardened", 10)
    folder = run_dir(box, "hardened", run_id)
    meta = json.loads((folder / "metadata.json").read_text())
    # SO_PEERCRED through the sandbox: alice's real uid, not nobody (no PrivateUsers=).
    assert [peer["uid"] for peer in meta["peers"]] == [alice_uid]
    assert box.out("stat", "-c", "%U %a", "/var/log/logd") == "logd 700"
    assert box.out("find", "/var/log/logd", "!", "-user", "logd") == ""
    assert numbers(folder / "main.log", "hardened") == list(range(10))


def test_user_units_under_systemd_user(container: Container) -> None:
    box = container
    user = "bob"
    box.run("useradd", "--create-home", user)
    uid = box.uid(user)
    home = f"/home/{user}"
    for name in ("logd.service", "logd.socket", "logd-control.socket"):
        box.copy_in(UNITS / "user" / name, f"{home}/.config/systemd/user/{name}")
    # Where `pipx install` (or pip --user) puts the script the unit runs.
    box.path(f"{home}/.local/bin").mkdir(parents=True)
    box.path(f"{home}/.local/bin/logd").symlink_to("/opt/logd/bin/logd")
    box.run("chown", "-R", f"{user}:{user}", home)
    # Lingering starts the user's systemd without a login session.
    box.run("loginctl", "enable-linger", user)
    box.run("systemctl", "start", f"user@{uid}.service")
    env = (f"XDG_RUNTIME_DIR=/run/user/{uid}",)

    def user_ctl(*args: str, check: bool = True) -> str:
        return box.run("systemctl", "--user", *args, user=user, env=env, check=check).stdout.strip()

    user_ctl("daemon-reload")
    user_ctl("enable", "--now", "logd.socket", "logd-control.socket")
    assert user_ctl("is-active", "logd.service", check=False) == "inactive"
    sock = f"/run/user/{uid}/logd/logd.sock"
    assert box.out("stat", "-c", "%U %a %F", sock) == f"{user} 600 socket"

    # No LOGD_ADDRESS: the client finds $XDG_RUNTIME_DIR/logd/logd.sock by itself.
    run_id = box.produce(user, "peruser", 20, env=env)

    assert user_ctl("is-active", "logd.service") == "active"
    root = f"{home}/.local/state/logd/log"
    folder = run_dir(box, "peruser", run_id, root=root)
    assert numbers(folder / "main.log", "peruser") == list(range(20))
    meta = json.loads((folder / "metadata.json").read_text())
    assert [peer["uid"] for peer in meta["peers"]] == [uid]
    wait_until(
        lambda: status_records(user_ctl("status", "--no-pager", "logd", check=False)) >= 22,
        "systemctl --user status to show the records",
    )

    def user_journal() -> str:
        return box.out("journalctl", "--no-pager", "-o", "cat", f"_UID={uid}", "-t", "logd")

    pid = user_ctl("show", "-P", "MainPID", "logd.service")
    user_ctl("reload", "logd.service")
    wait_until(lambda: "configuration reloaded" in user_journal(), "the user's logd to reload")
    assert user_ctl("show", "-P", "MainPID", "logd.service") == pid
    user_ctl("restart", "logd.service")
    assert user_ctl("show", "-P", "MainPID", "logd.service") not in (pid, "0")
    assert box.path(sock).is_socket()
    run_id = box.produce(user, "peruser", 5, env=env)
    main_log = run_dir(box, "peruser", run_id, root=root) / "main.log"
    assert numbers(main_log, "peruser") == list(range(5))
    assert "Traceback" not in user_journal()
