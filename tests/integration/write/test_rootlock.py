"""The root's lock file on a real filesystem: exclusive, released, and naming its holder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logd.write.rootlock import LOCK_NAME, RootInUse, RootLock, RootUnavailable, lock_root


def test_second_lock_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    held = RootLock.acquire(tmp_path)
    # flock locks belong to an open file, so a second open in this process conflicts too.
    with pytest.raises(RootInUse) as refused:
        RootLock.acquire(tmp_path)
    assert refused.value.pid == os.getpid()
    assert str(refused.value) == (
        f"another daemon (pid {os.getpid()}) is already writing to {tmp_path}"
    )
    held.release()
    again = RootLock.acquire(tmp_path)
    assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    again.release()
    assert (tmp_path / LOCK_NAME).exists()


def test_a_stale_file_does_not_lock_and_an_unreadable_pid_is_unknown(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("999999999 and more\n", encoding="utf-8")
    held = RootLock.acquire(tmp_path)
    assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    (tmp_path / LOCK_NAME).write_text("not a pid", encoding="utf-8")
    with pytest.raises(RootInUse, match=r"\(pid unknown\)"):
        RootLock.acquire(tmp_path)
    held.release()


def test_lock_root_makes_the_root_and_names_one_it_cannot_write(tmp_path: Path) -> None:
    held = lock_root(tmp_path / "new" / "root")
    assert (tmp_path / "new/root" / LOCK_NAME).is_file()
    held.release()
    (tmp_path / "file").write_text("", encoding="utf-8")
    with pytest.raises(RootUnavailable) as refused:
        lock_root(tmp_path / "file")
    assert str(refused.value) == f"cannot write to {tmp_path / 'file'}: File exists"
