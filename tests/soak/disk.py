"""Disk-full episodes for the fault campaign: a small tmpfs filled up, or RLIMIT_FSIZE.

As root, the daemon's root lives on a tmpfs of its own: an episode fills the free space
with a filler file and ends by deleting it, so the daemon meets a real ENOSPC on every
file (logs, metadata, index). Where mounting is not permitted, an episode lowers the
daemon's RLIMIT_FSIZE to one byte instead (EFBIG on every write past the first byte, as
tests/e2e/test_faults.py does), and a daemon started during an episode starts under it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

_CHUNK = 1 << 20
_INFINITY = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)


class Disk:
    """Where the daemon's root lives, and how to make that place full.

    Args:
        base: a folder for the mount point (tmpfs mode) or the root itself (rlimit mode).
        size_mib: the tmpfs's size; it grows when the logs fill half of it.
        allow_mount: try a tmpfs at all (False: RLIMIT_FSIZE at once).
    """

    def __init__(self, base: Path, *, size_mib: int, allow_mount: bool = True) -> None:
        self.mount_point = base / "disk"
        self.mount_point.mkdir(parents=True, exist_ok=True)
        self.root = self.mount_point / "root"
        self._filler = self.mount_point / "filler"
        self._size = size_mib << 20
        self.mode = "tmpfs" if allow_mount and self._mount() else "rlimit"
        self.full = False
        self._daemon_pid: int | None = None
        self.peak_used = 0

    def _mount(self) -> bool:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            return False
        options = f"size={self._size},mode=0755"
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(self.mount_point)],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def preexec(self) -> Callable[[], None] | None:
        """What a daemon started now runs before exec: the file-size limit during an
        episode in rlimit mode (a full disk stays full across a restart)."""
        if self.mode == "rlimit" and self.full:
            return _limit_file_size
        return None

    def daemon_started(self, pid: int) -> None:
        self._daemon_pid = pid

    def fill(self) -> None:
        """Start an episode: from now on the daemon cannot write."""
        self.full = True
        if self.mode == "rlimit":
            if self._daemon_pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    resource.prlimit(self._daemon_pid, resource.RLIMIT_FSIZE, (1, _INFINITY[1]))
            return
        self.make_room()
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            chunk = _CHUNK
            block = bytes(chunk)
            while chunk >= 512:  # tmpfs allocates pages: fill down to the last one
                try:
                    os.write(fd, block[:chunk])
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    chunk //= 2
        finally:
            os.close(fd)

    def recover(self) -> None:
        """End the episode: space (or the file-size limit) is back."""
        self.full = False
        if self.mode == "rlimit":
            if self._daemon_pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    resource.prlimit(self._daemon_pid, resource.RLIMIT_FSIZE, _INFINITY)
            return
        with contextlib.suppress(FileNotFoundError):
            self._filler.unlink()

    def make_room(self) -> None:
        """Keep the logs at under half the tmpfs: grow it rather than fill it by accident."""
        if self.mode != "tmpfs":
            return
        filler = self._filler.stat().st_size if self._filler.exists() else 0
        stats = os.statvfs(self.mount_point)
        used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize - filler
        self.peak_used = max(self.peak_used, used)
        if used * 2 > self._size:
            self._size *= 2
            subprocess.run(
                ["mount", "-o", f"remount,size={self._size}", str(self.mount_point)],
                capture_output=True,
                check=True,
            )

    def close(self, keep_copy: Path | None = None) -> None:
        """End any episode and unmount; `keep_copy` receives the tree first."""
        self.recover()
        if keep_copy is not None and self.root.exists():
            shutil.copytree(self.root, keep_copy, symlinks=True)
        if self.mode == "tmpfs":
            subprocess.run(["umount", str(self.mount_point)], capture_output=True, check=False)


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
