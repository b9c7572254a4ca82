"""A daemon root on a small filesystem of its own, which a test fills and frees.

As root (CI), a tmpfs mounted for the test: full means no block left for anything the
daemon writes (its files, SQLite, its own log). Where mounting is refused, the daemon's
RLIMIT_FSIZE stands in (set `LOGD_TEST_DISK=rlimit` to use it anyway): every write past
a file's first byte fails with EFBIG, which the daemon takes for a full disk; its stderr
then reaches the test through a pipe, since the limit holds for every file it writes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import subprocess
from pathlib import Path

from tests.e2e.procs import DaemonProcess, start_daemon

SIZE = "2m"
_FULL = (1, resource.RLIM_INFINITY)
_ROOMY = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)


class SmallDisk:
    """Where the daemons it starts write; `fill()` and `free()` it."""

    def __init__(self, base: Path, socket_dir: Path) -> None:
        self.mount = base / "disk"
        self.mount.mkdir(parents=True, exist_ok=True)
        self.root = self.mount / "root"
        self.socket_dir = socket_dir
        self.full = False
        self.daemons: list[DaemonProcess] = []
        self.tmpfs = os.environ.get("LOGD_TEST_DISK") != "rlimit" and _mount(self.mount)

    def start_daemon(self) -> DaemonProcess:
        """A daemon on this disk, full or not (see `fill()`)."""
        preexec = None if self.tmpfs else (_limit_full if self.full else _ignore_sigxfsz)
        daemon = start_daemon(
            self.root, self.socket_dir, preexec_fn=preexec, stderr_pipe=not self.tmpfs
        )
        self.daemons.append(daemon)
        return daemon

    def fill(self) -> None:
        """Leave no room: a filler file takes every free block, and the daemon's own log
        its last partly used one (tmpfs hands out whole pages, so that log would
        otherwise take a few more lines)."""
        self.full = True
        if not self.tmpfs:
            for daemon in self._live():
                resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, _FULL)
            return
        _fill_up(self.mount / "filler")
        if (self.root / "logd.log").exists():
            _fill_up(self.root / "logd.log", b"\n")

    def free(self) -> None:
        self.full = False
        if not self.tmpfs:
            for daemon in self._live():
                resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, _ROOMY)
            return
        (self.mount / "filler").unlink()

    def close(self) -> None:
        for daemon in self._live():
            daemon.proc.kill()
            daemon.proc.wait()
        if self.tmpfs:
            subprocess.run(["umount", "-l", os.fspath(self.mount)], check=False)

    def _live(self) -> list[DaemonProcess]:
        return [d for d in self.daemons if d.proc.poll() is None]


def _mount(where: Path) -> bool:
    command = ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", os.fspath(where)]
    try:
        done = subprocess.run(command, capture_output=True, check=False)
    except FileNotFoundError:
        return False
    return done.returncode == 0


def _fill_up(path: Path, pattern: bytes = b"\0") -> None:
    chunk = pattern * 65536
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == len(pattern):
                    return
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)


def _ignore_sigxfsz() -> None:
    # SIG_IGN survives exec: past the limit a write then fails with EFBIG (as the daemon
    # arranges for itself once running) instead of the signal killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _limit_full() -> None:
    _ignore_sigxfsz()
    with contextlib.suppress(ValueError):
        resource.setrlimit(resource.RLIMIT_FSIZE, _FULL)
