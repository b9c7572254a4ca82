"""Durable batches: one syncfs per file system instead of one fsync per file, same data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logd.write.durable import Durability
from logd.write.routing import Kind, Write
from logd.write.sinks import Sinks


def _writes(count: int) -> list[Write]:
    return [
        Write(Kind.SESSION, f"app/sessions/session_s{i}.jsonl", f"line {i}\n") for i in range(count)
    ]


def test_a_batch_of_many_files_costs_one_sync_call(tmp_path: Path) -> None:
    sinks = Sinks(tmp_path, fsync="batch")
    if not sinks.durability.uses_syncfs:
        pytest.fail("syncfs(2) with error reporting (Linux >= 5.8) is expected on this machine")
    sinks.write_many(_writes(100))
    sinks.sync()
    sinks.commit()
    assert sinks.durability.calls == 1
    sinks.write_many(_writes(100))
    sinks.sync()
    assert sinks.durability.calls == 2
    sinks.close()
    texts = [(tmp_path / f"app/sessions/session_s{i}.jsonl").read_text() for i in range(100)]
    assert sum(t == f"line {i}\nline {i}\n" for i, t in enumerate(texts)) == 100


def test_one_dirty_file_gets_fsync_and_without_syncfs_each_file_does(tmp_path: Path) -> None:
    one = Sinks(tmp_path / "one", fsync="batch")
    one.write_many(_writes(1))
    one.sync()
    assert one.durability.calls == 1
    one.close()
    each = Sinks(tmp_path / "each", fsync="batch", durability=Durability(use_syncfs=False))
    each.write_many(_writes(7))
    each.sync()
    assert each.durability.calls == 7
    each.close()


def test_fsync_none_syncs_nothing(tmp_path: Path) -> None:
    sinks = Sinks(tmp_path, fsync="none")
    sinks.write_many(_writes(10))
    sinks.sync()
    assert sinks.durability.calls == 0
    sinks.close()
    assert len(list((tmp_path / "app/sessions").iterdir())) == 10


def test_files_evicted_for_handles_are_synced_by_the_batch_not_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More live files than handles: each batch closes most of them before it syncs. The
    # real fsync still runs; the spy only counts its calls.
    fsyncs = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    sinks = Sinks(tmp_path, fsync="batch", open_files=4)
    sinks.write_many(_writes(20))
    sinks.sync()
    assert (len(fsyncs), sinks.durability.calls) == (0, 1)
    sinks.close()
    assert sum(1 for _ in (tmp_path / "app/sessions").iterdir()) == 20
