"""logd.systemd: LISTEN_FDS parsing, sd_notify messages, and the shipped unit files.

listen_fds() claims descriptors 3.., so those tests run it in a fresh interpreter
whose fds 3.. the test arranges; pytest's own descriptors are never touched.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from logd.config import default_config
from logd.systemd import ROLES, Notifier, listen_fds, status_text, watchdog_interval_s

UNITS = Path(__file__).resolve().parents[2] / "systemd"

# Runs in a child: make the requested sockets, move them to fds 3.. (as systemd
# passes them: inheritable, consecutive), call listen_fds, report what came back.
CHILD = r"""
import fcntl, json, os, socket, sys
from logd.systemd import listen_fds

spec = json.loads(sys.argv[1])
made = []
for kind in spec["fds"]:
    if kind.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(kind[5:])
        sock.listen()
    elif kind == "tcp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
    elif kind == "file":
        made.append(os.open(os.devnull, os.O_RDONLY))
        continue
    made.append(sock.detach())
# Park them high first, so placing one at 3.. cannot close another.
parked = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in made]
for fd in made:
    os.close(fd)
targets = list(range(3, 3 + len(parked)))
for target in targets:
    try:
        os.fstat(target)
    except OSError:
        continue
    sys.exit(f"fd {target} is already in use")
for fd, target in zip(parked, targets):
    os.dup2(fd, target)
    os.close(fd)
env = {k: v.replace("{pid}", str(os.getpid())) for k, v in spec["env"].items()}
try:
    found = listen_fds(env, unset=spec["unset"])
except ValueError as exc:
    print(json.dumps({"error": str(exc), "env": env}))
    sys.exit(0)
report = {
    name: [
        {
            "fd": s.fileno(),
            "family": s.family.name,
            "cloexec": not os.get_inheritable(s.fileno()),
            "listening": bool(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)),
        }
        for s in socks
    ]
    for name, socks in found.items()
}
untouched = [fd for fd in targets if os.get_inheritable(fd)]
print(json.dumps({"found": report, "env": env, "untouched": untouched}))
"""


def run_child(fds: list[str], env: dict[str, str], *, unset: bool = True) -> dict[str, Any]:
    spec = {"fds": fds, "env": env, "unset": unset}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def roles(report: dict[str, Any]) -> dict[str, list[tuple[int, str]]]:
    return {
        name: [(s["fd"], s["family"]) for s in socks] for name, socks in report["found"].items()
    }


def activation(count: int, names: str | None = None) -> dict[str, str]:
    env = {"LISTEN_PID": "{pid}", "LISTEN_FDS": str(count), "KEEP": "me"}
    if names is not None:
        env["LISTEN_FDNAMES"] = names
    return env


# --------------------------------------------------------------------- listen_fds


def test_named_sockets_are_claimed_marked_cloexec_and_env_unset(socket_dir: Path) -> None:
    report = run_child([f"unix:{socket_dir / 'in.sock'}", "tcp"], activation(2, "ingest:control"))
    assert roles(report) == {"ingest": [(3, "AF_UNIX")], "control": [(4, "AF_INET")]}
    assert all(s["cloexec"] and s["listening"] for socks in report["found"].values() for s in socks)
    assert report["env"] == {"KEEP": "me"}


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        pytest.param(None, {"ingest": [3], "control": [4]}, id="unnamed-in-order"),
        pytest.param("control:ingest", {"control": [3], "ingest": [4]}, id="names-win-order"),
        pytest.param("control:", {"control": [3], "ingest": [4]}, id="unnamed-takes-free-role"),
        pytest.param(
            "logd.socket:unknown", {"ingest": [3], "control": [4]}, id="unit-default-is-unnamed"
        ),
        pytest.param("control", {"control": [3], "ingest": [4]}, id="fewer-names-than-fds"),
    ],
)
def test_fd_names_map_to_roles(
    socket_dir: Path, names: str | None, expected: dict[str, list[int]]
) -> None:
    fds = [f"unix:{socket_dir / 'a.sock'}", f"unix:{socket_dir / 'b.sock'}"]
    report = run_child(fds, activation(2, names))
    assert {name: [fd for fd, _ in socks] for name, socks in roles(report).items()} == expected


def test_one_unit_with_unix_and_tcp_gives_two_ingest_sockets(socket_dir: Path) -> None:
    """A socket unit names all its fds alike: logd.socket with a TCP ListenStream too."""
    fds = [f"unix:{socket_dir / 'in.sock'}", "tcp", f"unix:{socket_dir / 'ctl.sock'}"]
    report = run_child(fds, activation(3, "ingest:ingest:control"))
    assert roles(report) == {
        "ingest": [(3, "AF_UNIX"), (4, "AF_INET")],
        "control": [(5, "AF_UNIX")],
    }


def test_fds_beyond_the_roles_keep_their_names(socket_dir: Path) -> None:
    fds = [f"unix:{socket_dir / n}.sock" for n in "abcd"]
    report = run_child(fds, activation(4, "ingest:control:metrics"))
    assert {name: [fd for fd, _ in s] for name, s in roles(report).items()} == {
        "ingest": [3],
        "control": [4],
        "metrics": [5],
        "unknown": [6],
    }


def test_fds_for_another_pid_are_left_alone(socket_dir: Path) -> None:
    """A parent's LISTEN_* leaked into our environment: not ours, but still unset."""
    env = activation(1, "ingest") | {"LISTEN_PID": "1"}
    report = run_child([f"unix:{socket_dir / 'in.sock'}"], env)
    assert report["found"] == {}
    assert report["untouched"] == [3]
    assert report["env"] == {"KEEP": "me"}


def test_unset_false_keeps_the_variables(socket_dir: Path) -> None:
    report = run_child([f"unix:{socket_dir / 'in.sock'}"], activation(1), unset=False)
    assert roles(report) == {"ingest": [(3, "AF_UNIX")]}
    assert report["env"]["LISTEN_FDS"] == "1"


def test_a_descriptor_that_is_not_a_socket_is_an_error() -> None:
    report = run_child(["file"], activation(1, "ingest"))
    assert report["error"] == "LISTEN_FDS: descriptor 3 is not a socket"


def test_a_descriptor_that_is_not_open_is_an_error(socket_dir: Path) -> None:
    report = run_child([f"unix:{socket_dir / 'in.sock'}"], activation(2, "ingest:control"))
    assert report["error"] == "LISTEN_FDS: descriptor 4 is not open"


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="nothing-passed"),
        pytest.param({"LISTEN_FDS": "2"}, id="no-pid"),
        pytest.param({"LISTEN_PID": str(os.getpid())}, id="no-count"),
        pytest.param({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "0"}, id="zero"),
    ],
)
def test_nothing_passed(env: dict[str, str]) -> None:
    """No descriptor is touched in these cases, so the pytest process itself is safe."""
    assert listen_fds(env) == {}
    assert "LISTEN_FDS" not in env


def test_bad_numbers_are_an_error_and_still_unset() -> None:
    env = {"LISTEN_PID": "me", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "ingest"}
    with pytest.raises(ValueError, match="not numbers"):
        listen_fds(env)
    assert env == {}


def test_a_read_only_environment_is_read_not_changed() -> None:
    env = MappingProxyType({"LISTEN_PID": "1", "LISTEN_FDS": "1"})
    assert listen_fds(env) == {}
    assert dict(env) == {"LISTEN_PID": "1", "LISTEN_FDS": "1"}


# ------------------------------------------------------------------------- notify


@pytest.fixture
def receiver(socket_dir: Path) -> Iterator[tuple[str, socket.socket]]:
    path = socket_dir / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(os.fspath(path))
        sock.settimeout(5)
        yield os.fspath(path), sock


@pytest.fixture
def notifier(receiver: tuple[str, socket.socket]) -> Iterator[Notifier]:
    n = Notifier({"NOTIFY_SOCKET": receiver[0]})
    yield n
    n.close()


def received(receiver: tuple[str, socket.socket]) -> str:
    return receiver[1].recv(4096).decode()


def test_state_messages(notifier: Notifier, receiver: tuple[str, socket.socket]) -> None:
    assert notifier.enabled
    assert notifier.ready("2 connections")
    assert received(receiver) == "READY=1\nSTATUS=2 connections"
    assert notifier.ready()
    assert received(receiver) == "READY=1"
    assert notifier.watchdog()
    assert received(receiver) == "WATCHDOG=1"
    assert notifier.stopping()
    assert received(receiver) == "STOPPING=1"
    assert notifier.extend_timeout(1.5)
    assert received(receiver) == "EXTEND_TIMEOUT_USEC=1500000"
    assert notifier.notify("EXTEND_TIMEOUT_USEC=1000", STATUS="x")
    assert received(receiver) == "EXTEND_TIMEOUT_USEC=1000\nSTATUS=x"


def test_status_is_one_line(notifier: Notifier, receiver: tuple[str, socket.socket]) -> None:
    notifier.status("two\nlines")
    assert received(receiver) == "STATUS=two lines"


def test_reloading_carries_the_monotonic_time(
    notifier: Notifier, receiver: tuple[str, socket.socket]
) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = received(receiver).split("\n")
    assert lines[0] == "RELOADING=1"
    key, _, value = lines[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_abstract_socket() -> None:
    name = f"logd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": f"@{name}"})
        try:
            assert notifier.ready()
        finally:
            notifier.close()
        assert sock.recv(4096) == b"READY=1"


def test_unset_is_a_silent_no_op(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert not notifier.ready()
    assert notifier.watchdog_s is None
    assert caplog.records == []


def test_failure_is_logged_once_and_never_raised(
    socket_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": os.fspath(socket_dir / "gone.sock")})
    with caplog.at_level(logging.WARNING, logger="logd.systemd"):
        assert not notifier.ready()
        assert not notifier.watchdog()
    notifier.close()
    assert len(caplog.records) == 1
    assert "cannot notify the service manager" in caplog.text


def test_an_address_that_is_not_unix_disables_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="logd.systemd"):
        notifier = Notifier({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert not notifier.ready()
    assert "not a Unix socket address" in caplog.text


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, None, id="off"),
        pytest.param({"WATCHDOG_USEC": "200000"}, 0.1, id="half"),
        pytest.param({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "{pid}"}, 15.0, id="ours"),
        pytest.param({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None, id="not-ours"),
        pytest.param({"WATCHDOG_USEC": "0"}, None, id="zero"),
        pytest.param({"WATCHDOG_USEC": "soon"}, None, id="garbage"),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    env = {k: v.replace("{pid}", str(os.getpid())) for k, v in env.items()}
    assert watchdog_interval_s(env) == expected


def test_status_text() -> None:
    stats = {"connections": 2, "records_written": 10, "errors": {"a": 1, "b": 2}}
    assert status_text(stats) == "2 connections, 10 records written, 3 errors"
    assert status_text({"connections": 0, "records_written": 0, "errors": {}}) == (
        "0 connections, 0 records written"
    )


# -------------------------------------------------------------------- unit files


def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values; systemd allows a key more than once, so keep them all."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if section := re.fullmatch(r"\[(.+)\]", line):
            current = sections.setdefault(section.group(1), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


@pytest.mark.parametrize("folder", ["", "user"])
def test_socket_units_name_their_fds_and_match_the_default_paths(folder: str) -> None:
    run_dir = Path("/run/logd") if not folder else Path("%t/logd")
    defaults = default_config({"RUNTIME_DIRECTORY": os.fspath(run_dir)}).listen
    expected = {
        "logd.socket": ("ingest", defaults.socket),
        "logd-control.socket": ("control", defaults.control),
    }
    service = unit_settings(UNITS / folder / "logd.service")["Service"]
    assert service["Sockets"] == [" ".join(expected)]
    for unit, (role, path) in expected.items():
        socket_unit = unit_settings(UNITS / folder / unit)["Socket"]
        assert socket_unit["FileDescriptorName"] == [role]
        assert role in ROLES
        assert socket_unit["ListenStream"] == [os.fspath(path)]
        assert socket_unit["Service"] == ["logd.service"]


@pytest.mark.parametrize("folder", ["", "user"])
def test_service_keeps_the_promises(folder: str) -> None:
    """Type=notify with a watchdog; peer uids visible; the socket folder outlives a restart."""
    service = unit_settings(UNITS / folder / "logd.service")["Service"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert "WatchdogSec" in service
    assert "PrivateUsers" not in service
    assert service["RuntimeDirectory"] == ["logd"]
    assert service["RuntimeDirectoryPreserve"] == ["yes"]


def test_system_socket_modes() -> None:
    ingest = unit_settings(UNITS / "logd.socket")["Socket"]
    control = unit_settings(UNITS / "logd-control.socket")["Socket"]
    assert (ingest["SocketMode"], ingest["SocketGroup"]) == (["0660"], ["logd"])
    assert control["SocketMode"] == ["0600"]
    users = (UNITS / "logd.sysusers").read_text()
    assert re.search(r"^u logd ", users, re.MULTILINE)
