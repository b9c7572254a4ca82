"""Retention's I/O edge: delete what `policy` decided about the `scan` listing, and
gzip rotated files.

Synchronous and blocking: the daemon calls it in a worker thread, never on the event
loop. It never follows a symlink and refuses any path that would leave the root; the
decisions themselves live in `policy`, which sees only the `Listing` `scan` builds.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from logd.config import Retention
from logd.retention.policy import Deletion, UnitKind, decide_cleanup
from logd.retention.scan import REJECTED_DIR, scan

__all__ = ["CleanupReport", "apply", "compress_file", "run_cleanup"]

# gzip(1)'s own default: twice as fast as level 9 on log text, for files 5% larger.
COMPRESS_LEVEL = 6

_COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CleanupReport:
    """What one cleanup did (or, with `dry_run`, would do); `deleted` is relative to root.

    `deletions` are the policy's units actually removed (or planned), so the caller can
    drop the index rows that describe them; `errors` are one line per failed path.
    """

    dry_run: bool
    deleted: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    errors: list[str] = field(default_factory=list)
    deletions: list[Deletion] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The `logd-ctl cleanup --json` object of SPEC §9."""
        return {"dry_run": self.dry_run, "deleted": self.deleted, "freed_bytes": self.freed_bytes}


# --------------------------------------------------------------------------- apply


def _inside(root_real: Path, rel: str) -> Path | None:
    """The full path for `rel` if it cannot leave the root, else None. The last part may
    be a symlink (it is unlinked, not followed); every folder above it must resolve
    inside the root."""
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or any(p in ("", ".", "..") for p in parts):
        return None
    full = root_real.joinpath(*parts)
    if not full.parent.resolve().is_relative_to(root_real):
        return None
    return full


def _current_links(full: Path) -> list[Path]:
    """`runs/current` and `current.txt` when they name the run folder `full`: a link
    left dangling would point the next reader at nothing."""
    link = full.parent / "current"
    try:
        target = os.readlink(link)
    except OSError:
        return []
    if PurePosixPath(target.rstrip("/")).name != full.name:
        return []
    text = full.parent / "current.txt"
    return [link, text] if os.path.lexists(text) else [link]


def _remove(full: Path) -> None:
    st = os.lstat(full)
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(full)  # fd-based on Linux: links inside are unlinked, not followed
    else:
        os.unlink(full)


def _prune(root_real: Path, full: Path) -> None:
    """Remove folders left empty above `full`, keeping `<root>/<app>` itself."""
    rel = full.relative_to(root_real)
    keep_depth = 0 if rel.parts[0] == REJECTED_DIR else 1
    parent = full.parent
    while len(parent.relative_to(root_real).parts) > keep_depth:
        try:
            os.rmdir(parent)
        except OSError:  # not empty (or the writer just used it): stop here
            return
        parent = parent.parent


def apply(root: Path, deletions: Iterable[Deletion], *, dry_run: bool) -> CleanupReport:
    """Delete what `deletions` name (folders whole), then prune empty folders.

    With `dry_run` nothing is touched, and the report lists the same paths a real run
    would delete. Deleting the run `runs/current` points at also removes `current` and
    `current.txt`.

    Error handling: a path that cannot be deleted, or would leave the root, is reported
    in `errors` and skipped; one that is already gone is skipped silently.
    """
    root_real = root.resolve()
    deleted: list[str] = []
    done: list[Deletion] = []
    errors: list[str] = []
    freed = 0
    for deletion in deletions:
        full = _inside(root_real, deletion.path)
        if full is None:
            errors.append(f"{deletion.path}: refused, outside the root")
            continue
        if not os.path.lexists(full):
            continue
        extra = _current_links(full) if deletion.kind is UnitKind.RUN else []
        try:
            if not dry_run:
                _remove(full)
        except OSError as exc:
            errors.append(f"{deletion.path}: {exc.strerror or exc}")
            continue
        deleted.append(deletion.path)
        done.append(deletion)
        freed += deletion.bytes
        if not dry_run and extra and _current_links(full) != extra:
            extra = []  # the writer pointed `current` at a new run meanwhile
        for path in extra:
            with contextlib.suppress(FileNotFoundError):
                freed += os.lstat(path).st_size if path.name == "current.txt" else 0
                if not dry_run:
                    os.unlink(path)
            deleted.append(path.relative_to(root_real).as_posix())
        if not dry_run:
            _prune(root_real, full)
    return CleanupReport(dry_run, deleted, freed, errors, done)


def run_cleanup(
    root: Path,
    policy: Retention,
    now: float,
    *,
    active_runs: Iterable[tuple[str, str]] = (),
    active_sessions: Iterable[tuple[str, str]] = (),
    active_calls: Iterable[tuple[str, str, str]] = (),
    utc: bool = False,
    dry_run: bool = False,
) -> CleanupReport:
    """One cleanup pass: `scan`, `policy.decide_cleanup`, `apply`. Blocking."""
    listing = scan(
        root,
        active_runs=active_runs,
        active_sessions=active_sessions,
        active_calls=active_calls,
        utc=utc,
    )
    return apply(root, decide_cleanup(policy, listing, now), dry_run=dry_run)


# --------------------------------------------------------------------------- compression


def compress_file(path: Path) -> Path:
    """Gzip a rotated file to `path.gz` and remove the original; returns the new path.

    Written to a file with no name yet (O_TMPFILE), synced, then linked into place, so a
    crash, SIGKILL included, leaves either the original or a complete `.gz` (then both,
    which `policy.backup_renames` resolves) and never a temp file: an unnamed file goes
    with its descriptor. Where the file system has no O_TMPFILE, a hidden temp file is
    renamed instead. The `.gz` keeps the original's mtime and mode, since retention ages
    sessions by mtime. Safe in a worker thread, provided the caller does not rotate this
    file's family again until it returns; if the original was replaced meanwhile, it is
    left alone and `path` is returned.
    """
    target = path.with_name(path.name + ".gz")
    with open(path, "rb") as source:
        before = os.fstat(source.fileno())
        fd = _unnamed_file(path.parent)
        if fd is None:
            return _compress_via_temp(path, source, before)
        try:
            _pack(source, fd, path.name, before)
            if _replaced(path, before):
                return path
            _link_into_place(fd, target)
        finally:
            os.close(fd)
    os.unlink(path)
    return target


def _unnamed_file(folder: Path) -> int | None:
    """A new file in `folder` that has no name until linked; None where unsupported."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(folder, flag | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except OSError:
        return None  # EOPNOTSUPP, EISDIR on old kernels: the named temp file it is


def _pack(source: Any, fd: int, name: str, before: os.stat_result) -> None:
    """Gzip `source` into `fd`, sync it, and give it the original's mode and times."""
    with open(fd, "wb", closefd=False) as raw:
        with gzip.GzipFile(
            filename=name,
            mode="wb",
            fileobj=raw,
            mtime=int(before.st_mtime),
            compresslevel=COMPRESS_LEVEL,
        ) as packed:
            shutil.copyfileobj(source, packed, _COPY_CHUNK)
        raw.flush()
        os.fsync(fd)
    os.chmod(fd, stat.S_IMODE(before.st_mode))
    os.utime(fd, ns=(before.st_atime_ns, before.st_mtime_ns))


def _replaced(path: Path, before: os.stat_result) -> bool:
    now = os.lstat(path)
    return (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino)


def _link_into_place(fd: int, target: Path) -> None:
    """Give the unnamed file `fd` the name `target`, replacing a `.gz` already there.

    `linkat(2)` with AT_SYMLINK_FOLLOW on the descriptor's /proc link; a directory
    descriptor for the target is what makes `os.link` call linkat rather than link(2).
    """
    source = f"/proc/self/fd/{fd}"
    folder = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            os.link(source, target.name, dst_dir_fd=folder, follow_symlinks=True)
            return
        except FileExistsError:
            pass
        # A complete `.gz` left by a crash between its rename and the original's unlink:
        # replaced through a hidden name that exists only between these two calls.
        tmp = f".{target.name}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=folder)
        os.link(source, tmp, dst_dir_fd=folder, follow_symlinks=True)
        os.replace(tmp, target.name, src_dir_fd=folder, dst_dir_fd=folder)
    finally:
        os.close(folder)


def _compress_via_temp(path: Path, source: Any, before: os.stat_result) -> Path:
    """`compress_file()` through a hidden temp file, renamed into place."""
    target = path.with_name(path.name + ".gz")
    tmp = path.with_name(f".{path.name}.gz.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            _pack(source, fd, path.name, before)
        finally:
            os.close(fd)
        if _replaced(path, before):
            os.unlink(tmp)
            return path
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.unlink(path)
    return target
