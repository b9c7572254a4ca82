"""The spool directory and its claim protocol: who may deliver, and then delete, which file.

Names, creates, locks and deletes spool files; what is inside them belongs to `frames`. No
sockets, threads, clock, trio or msgpack.

Protocol:

* Directory: `default_directory()`, that is `$LOGD_SPOOL_DIR`, else platformdirs'
  `user_cache_dir("logd")`; one per user, mode 0700. Files are created 0600.
* Files: `spool-<producer_id>-<pid>.msgpack`, appended to by one producer only. Whoever
  uses a file holds `flock(LOCK_EX)` on it for as long as it does: the producer while it
  lives, then whoever claims it. A file nobody holds a lock on is an *orphan*: its
  producer exited (or crashed) before everything in it was acknowledged.
* Creating (`Claim.create`): the producer creates the file under a hidden name, locks it,
  and only then renames it into place, so nobody ever sees an unlocked file in use.
* Claiming (`Claim(path)`, `claim_orphans()`): open, `flock(LOCK_EX | LOCK_NB)`, then check
  that the name still leads to the opened inode (its owner may have deleted it between our
  open and our lock). The lock makes a claim exclusive: one process delivers a file.
* Delivering: send the message of every frame not marked acked, in file order; each is a
  complete Forward message carrying its `chunk` option. When the daemon acks a frame, mark
  it (`mark_acked()` rewrites one byte in place). Once every frame is acked, `delete()` the
  file while still holding the lock. A claimant that dies half-way leaves the file to the
  next one, which skips the marked frames; a frame acked but not yet marked is sent again,
  and the daemon recognises it by its chunk id (within the daemon's lifetime).
* fork(): a flock lock belongs to the open file description, which a child shares with its
  parent. The child closes inherited descriptors with `Claim.abandon()` (a plain close),
  never `flock(LOCK_UN)`, which would unlock the parent's file as well.
* The daemon at start (or any other deliverer)::

      report = spool.ReadReport()
      for claim in spool.claim_orphans(spool.default_directory()):
          with claim:
              for frame in claim.frames(report):
                  handle(frame.message)        # as if received on a socket
                  claim.mark_acked(frame)      # once its records are written
              claim.delete()                   # only when every frame was handled
      # report.damaged_records / damaged_frames: lost to a cut or corrupt tail; log them.

  `orphans()` and `Claim(path)` do the same in two steps (Claim raises SpoolBusy when
  someone claimed the file in between); `read_messages()` reads a file without claiming it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

from .frames import Frame, ReadReport, iter_frames, read_first_seq, read_frame, write_acked

__all__ = [
    "DEFAULT_MAX_SPOOL_BYTES",
    "SPOOL_DIR_ENV",
    "Claim",
    "SpoolBusy",
    "claim_orphans",
    "default_directory",
    "orphans",
    "prepare_directory",
    "spool_name",
    "total_bytes",
]

SPOOL_DIR_ENV: Final = "LOGD_SPOOL_DIR"
DEFAULT_MAX_SPOOL_BYTES: Final = 256 << 20
_NAME_RE: Final = re.compile(r"spool-[0-9A-Za-z_]+-[0-9]+\.msgpack")


class SpoolBusy(BlockingIOError):
    """Another live process holds the spool file's lock: it is not an orphan."""


def default_directory() -> Path:
    """The user's spool directory: `$LOGD_SPOOL_DIR`, else `user_cache_dir("logd")`."""
    configured = os.environ.get(SPOOL_DIR_ENV)
    if configured:
        return Path(configured)
    import platformdirs  # only needed once a spool is used: keeps `import logd_client` light

    return Path(platformdirs.user_cache_dir("logd"))


def prepare_directory(directory: Path) -> None:
    """Create `directory` with mode 0700, or check an existing one is ours and make it 0700.

    Raises:
        PermissionError: it belongs to another user (their files could be read or forged).
        OSError: it cannot be created or changed.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_uid != os.geteuid():
        raise PermissionError(errno.EPERM, "spool directory belongs to another user", directory)
    if info.st_mode & 0o077:
        directory.chmod(0o700)


def spool_name(producer_id: str, pid: int) -> str:
    """The file name of a producer's spool."""
    return f"spool-{producer_id}-{pid}.msgpack"


def _spool_files(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return [e for e in entries if _NAME_RE.fullmatch(e.name) and e.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def total_bytes(directory: Path) -> int:
    """Bytes held by the spool files in `directory`, all producers together."""
    total = 0
    for entry in _spool_files(directory):
        with contextlib.suppress(FileNotFoundError):  # delivered meanwhile
            total += entry.stat().st_size
    return total


def _oldest_first(directory: Path) -> list[Path]:
    dated: list[tuple[float, str]] = []
    for entry in _spool_files(directory):
        with contextlib.suppress(FileNotFoundError):
            dated.append((entry.stat().st_mtime, entry.name))
    return [directory / name for _, name in sorted(dated)]


def orphans(directory: Path) -> Iterator[Path]:
    """Yield the spool files in `directory` no live process holds, oldest first.

    Each is checked by taking and releasing its lock, so it may be claimed by someone else
    by the time the caller tries: `Claim()` then raises SpoolBusy. `claim_orphans()` has
    no such gap.
    """
    for path in _oldest_first(directory):
        try:
            Claim(path).close()
        except OSError:  # SpoolBusy, or gone
            continue
        yield path


def claim_orphans(directory: Path, limit: int | None = None) -> Iterator[Claim]:
    """Claim the orphaned spool files in `directory`, oldest first, skipping busy ones.

    Args:
        directory: the spool directory; a missing one has no orphans.
        limit: stop after this many claims.

    Resource handling:
        Each Claim yielded is the caller's to `delete()` or `close()`.
    """
    claimed = 0
    for path in _oldest_first(directory):
        if limit is not None and claimed >= limit:
            return
        try:
            claim = Claim(path)
        except OSError:
            continue
        claimed += 1
        yield claim


class Claim:
    """Exclusive use of one spool file, held through an flock lock while this is open.

    Args:
        path: an existing spool file to claim.

    Raises:
        SpoolBusy: a live process holds it.
        FileNotFoundError: it is gone, or was replaced while we opened it.

    Resource handling:
        Owns one descriptor and the lock on it. `close()` releases both and leaves the file
        to the next claimant; `delete()` removes the file first. After fork() a child must
        call `abandon()`, not `close()`-then-unlock: see the module docstring.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise SpoolBusy(errno.EWOULDBLOCK, "spool file in use", str(path)) from exc
            opened, named = os.fstat(fd), os.stat(self.path, follow_symlinks=False)
            if (opened.st_dev, opened.st_ino) != (named.st_dev, named.st_ino):
                raise FileNotFoundError(errno.ENOENT, "spool file replaced", str(path))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    @classmethod
    def create(cls, directory: Path, producer_id: str, pid: int | None = None) -> Claim:
        """Create and claim a new, empty spool file for `producer_id`.

        Args:
            directory: a directory `prepare_directory()` accepted.
            producer_id: the producer's id (letters, digits, `_`).
            pid: the producer's process id; default: this process.

        Raises:
            OSError: the file cannot be created (it exists already: FileExistsError).
        """
        name = spool_name(producer_id, os.getpid() if pid is None else pid)
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"bad producer id {producer_id!r}")
        final = directory / name
        if final.exists():
            raise FileExistsError(errno.EEXIST, "spool file exists", str(final))
        hidden = directory / f".{name}.new"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(hidden, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else knows the name yet
            os.rename(hidden, final)
            with contextlib.suppress(OSError):  # the entry should survive a power cut
                dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(hidden)
            os.close(fd)
            raise
        claim = cls.__new__(cls)
        claim.path = final
        claim._fd = fd
        return claim

    @property
    def closed(self) -> bool:
        """Whether the claim was released (closed, deleted or abandoned)."""
        return self._fd < 0

    def size(self) -> int:
        """The file's current length in bytes."""
        return os.fstat(self._fd).st_size

    def append(self, frames: Sequence[bytes], at: int) -> int:
        """Write `frames` (from `encode_frame()`) at offset `at`, the file's end.

        Returns:
            The new end of the file.

        Raises:
            OSError: writing failed (ENOSPC, EFBIG...). The file is cut back to `at`, so
                it never holds a partial frame that would hide the frames after it.
        """
        offset = at
        try:
            for frame in frames:
                view = memoryview(frame)
                while view:
                    written = os.pwrite(self._fd, view, offset)
                    view = view[written:]
                    offset += written
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, at)
            raise
        return offset

    def sync(self) -> None:
        """fsync the file: what was appended survives a crash of the machine."""
        os.fsync(self._fd)

    def read_frame(self, offset: int) -> Frame | None:
        """The frame at `offset`, None at the end (see `read_frame()`)."""
        return read_frame(self._fd, offset)

    def first_seq_at(self, offset: int) -> int | None:
        """The writer's number of the frame at `offset` (its header only), None if unreadable."""
        return read_first_seq(self._fd, offset)

    def frames(self, report: ReadReport | None = None, *, start: int = 0) -> Iterator[Frame]:
        """Yield the frames not acked yet, from `start`, in order (see `iter_frames()`)."""
        return iter_frames(self._fd, report, start=start)

    def mark_acked(self, frame: Frame | int) -> None:
        """Mark a frame (or the frame at an offset) acknowledged, so no claimant resends it.

        Not synced: losing the mark in a crash only costs a resend the daemon recognises.
        """
        offset = frame.offset if isinstance(frame, Frame) else frame
        write_acked(self._fd, offset)

    def delete(self) -> None:
        """Remove the file, then release the claim; for when every frame was acked."""
        if self._fd < 0:
            return
        try:
            opened, named = os.fstat(self._fd), os.stat(self.path, follow_symlinks=False)
            if (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino):
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Release the claim and leave the file to the next claimant; idempotent."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def abandon(self) -> None:
        """Close a descriptor inherited through fork() without touching the parent's lock.

        Closing never unlocks while the parent's descriptor stays open (the lock belongs to
        the shared open file description); this is `close()` under a name that says so.
        """
        self.close()

    def __enter__(self) -> Claim:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Claim {self.path}{' closed' if self._fd < 0 else ''}>"
