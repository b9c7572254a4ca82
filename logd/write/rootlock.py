"""The root's lock file: one daemon writes a log tree at a time.

`flock(2)` on `<root>/.lock`, held for the daemon's life. The kernel drops it when the
process ends, even by SIGKILL, so a leftover file never blocks a restart; the file is
therefore never deleted. The holder's pid is written into it so that a refused daemon
can say who holds the root. Readers (`logd web`, `logd-ctl`, index rebuilds) never take
the lock, and retention never lists a dotfile at the root.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

__all__ = ["LOCK_NAME", "RootInUse", "RootLock", "RootUnavailable", "lock_root"]

LOCK_NAME = ".lock"
_PID_BYTES = 32


class RootUnavailable(Exception):
    """This daemon cannot write the root; the message is the one line to show."""


class RootInUse(RootUnavailable):
    """Another process holds the root's lock."""

    def __init__(self, root: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"another daemon ({holder}) is already writing to {root}")
        self.root = root
        self.pid = pid


def lock_root(root: Path) -> RootLock:
    """Create the root, check it is writable (so a bad root fails at start), and lock it.

    Raises:
        RootUnavailable: the root cannot be written (`RootInUse`: another daemon has it).
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return RootLock.acquire(root)
    except OSError as exc:
        raise RootUnavailable(f"cannot write to {root}: {exc.strerror}") from exc


class RootLock:
    """An exclusive lock on a log root, taken with `acquire` and dropped by `release`.

    Resource handling: the lock owns one file descriptor (close-on-exec, so no child
    process keeps the root locked); `release` closes it, and process exit does too.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, root: Path) -> RootLock:
        """Lock `root` (which must exist) without waiting.

        Raises:
            RootInUse: another process holds it.
            OSError: the lock file cannot be opened or locked.
        """
        path = root / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise RootInUse(root, pid) from None
        except BaseException:
            os.close(fd)
            raise
        # A full disk must not stop the daemon (it waits for space): the pid is only what
        # a refused second daemon prints.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Drop the lock; the file stays (deleting it would race with the next holder)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, _PID_BYTES, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
