"""Rotation by size and by day, on real files, through Sinks and through the daemon."""

from __future__ import annotations

import dataclasses
import gzip
import re
import threading
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from logd.config import Config, RotationPolicy
from logd.retention.cleanup import compress_file
from logd.server import LogdServer, serve_logd
from logd.write.routing import Kind, Write
from logd.write.sinks import Sinks
from tests.helpers import make_config
from tests.integration.test_server import RUN, Producer, rec

DAY = 86400.0


def read_family(folder: Path, name: str) -> list[str]:
    """Lines of a file and its backups, oldest first (`name.N` … `name.1`, then `name`)."""
    backups = {}
    for path in folder.iterdir():
        match = re.fullmatch(re.escape(name) + r"\.(\d+)(\.gz)?", path.name)
        if match:
            backups[int(match[1])] = path
    lines: list[str] = []
    for index in sorted(backups, reverse=True):
        path = backups[index]
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        lines += data.decode().splitlines()
    live = folder / name  # absent when a refused batch rotated it and was cut back
    return lines + (live.read_text().splitlines() if live.exists() else [])


def small_rotation(config: Config, **policy: Any) -> Config:
    run = dataclasses.replace(config.rotation.run, **policy)
    return dataclasses.replace(config, rotation=dataclasses.replace(config.rotation, run=run))


async def test_concurrent_producers_across_rotations(log_root: Path, socket_dir: Path) -> None:
    config = small_rotation(make_config(log_root, socket_dir), max_bytes=4096, backups=1000)
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        await nursery.start(partial(serve_logd, config, server=server))

        async def produce(n: int) -> None:
            producer = await Producer.unix(config.listen.socket)
            for batch in range(20):
                records = [rec(f"p{n} {batch * 5 + i}") for i in range(5)]
                await producer.log(records, chunk=f"{n:08x}:{batch}")
            await producer.aclose()

        async with trio.open_nursery() as producers:
            for n in range(4):
                producers.start_soon(produce, n)
        server.request_stop()
    run_dir = log_root / "cyc" / "runs" / RUN
    assert (run_dir / "main.log.1.gz").exists(), "rotated copies are compressed"
    assert len(list(run_dir.glob("main.log.*"))) > 3
    lines = read_family(run_dir, "main.log")
    assert all(re.search(r" - INFO - p\d \d+$", line) for line in lines), "no split lines"
    for n in range(4):
        mine = [int(line.rsplit(" ", 1)[1]) for line in lines if f" - p{n} " in line]
        assert mine == list(range(100)), "each record once, in order"
    for path in run_dir.glob("main.log*"):
        size = (
            len(gzip.decompress(path.read_bytes())) if path.suffix == ".gz" else path.stat().st_size
        )
        assert size <= 4096


def test_backups_are_bounded(tmp_path: Path) -> None:
    policy = RotationPolicy(max_bytes=100, backups=2, compress=False)
    rotation = make_config(tmp_path / "r", tmp_path).rotation
    sinks = Sinks(tmp_path, rotation=dataclasses.replace(rotation, call=policy))
    for i in range(10):
        sinks.write_many([Write(Kind.CALL, "a/calls/d/bot_1/call_x.log", f"{i:059d}\n")])
        sinks.commit()
    sinks.close()
    folder = tmp_path / "a/calls/d/bot_1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "call_x.log",
        "call_x.log.1",
        "call_x.log.2",
    ]
    assert read_family(folder, "call_x.log")[-1] == f"{9:059d}"


def test_events_log_rotates_at_midnight_utc(tmp_path: Path) -> None:
    now = [1_762_387_199.0]  # 2025-11-05 23:59:59 UTC
    rotation = make_config(tmp_path / "r", tmp_path).rotation
    sinks = Sinks(tmp_path, rotation=rotation, clock=lambda: now[0])
    sinks.write_many([Write(Kind.EVENTS, "app/events.log", "before midnight\n")])
    now[0] += 2
    sinks.write_many([Write(Kind.EVENTS, "app/events.log", "after midnight\n")])
    now[0] += DAY
    sinks.write_many([Write(Kind.EVENTS, "app/events.log", "next day\n")])
    sinks.close()
    folder = tmp_path / "app"
    assert sorted(p.name for p in folder.iterdir()) == [
        "events.log",
        "events.log.2025-11-05.gz",
        "events.log.2025-11-06.gz",
    ]
    assert (
        gzip.decompress((folder / "events.log.2025-11-05.gz").read_bytes()) == b"before midnight\n"
    )
    assert (folder / "events.log").read_text() == "next day\n"


def test_rollback_after_failure_leaves_no_partial_batch(tmp_path: Path) -> None:
    sinks = Sinks(tmp_path)
    sinks.write_many([Write(Kind.RUN, "a/runs/r/main.log", "kept\n")])
    sinks.commit()
    sinks.write_many([Write(Kind.RUN, "a/runs/r/main.log", "undone\n")])
    sinks.rollback()
    sinks.write_many([Write(Kind.RUN, "a/runs/r/main.log", "after\n")])
    sinks.close()
    assert (tmp_path / "a/runs/r/main.log").read_text() == "kept\nafter\n"


def _call_sinks(tmp_path: Path, backups: int = 3) -> Sinks:
    policy = RotationPolicy(max_bytes=100, backups=backups, compress=True)
    rotation = make_config(tmp_path / "r", tmp_path).rotation
    return Sinks(tmp_path, rotation=dataclasses.replace(rotation, call=policy))


CALL = "a/calls/d/bot_1/call_x.log"


def assert_three_lines_in(root: Path, names: list[str]) -> None:
    """The call file's family is these files and holds lines 0, 1, 2 in order."""
    folder = root / "a/calls/d/bot_1"
    assert sorted(p.name for p in folder.iterdir()) == names
    assert read_family(folder, "call_x.log") == [f"{i:059d}" for i in range(3)]


def test_a_rotation_waits_for_the_previous_copy_of_its_file_to_be_compressed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    started = threading.Event()

    def slow_compress(path: Path) -> Path:
        started.set()
        gate.wait(10)
        return compress_file(path)

    monkeypatch.setattr("logd.write.compressor.compress_file", slow_compress)
    sinks = _call_sinks(tmp_path)
    for i in range(2):  # the second batch rotates: call_x.log.1 is being compressed
        sinks.write_many([Write(Kind.CALL, CALL, f"{i:059d}\n")])
        sinks.commit()  # a rotated copy is compressed once its batch is committed
    assert started.wait(10)
    # The writer went on meanwhile; the next rotation of the same file has to wait.
    sinks.write_many([Write(Kind.CALL, "a/other.log", "another file\n")])
    third = threading.Thread(
        target=sinks.write_many, args=([Write(Kind.CALL, CALL, f"{2:059d}\n")],)
    )
    third.start()
    third.join(0.3)
    assert third.is_alive(), "rotated again while the last copy was being compressed"
    folder = tmp_path / "a/calls/d/bot_1"
    assert sorted(p.name for p in folder.iterdir()) == ["call_x.log", "call_x.log.1"]
    gate.set()
    third.join(10)
    sinks.close()
    assert_three_lines_in(tmp_path, ["call_x.log", "call_x.log.1.gz", "call_x.log.2.gz"])


def test_a_copy_that_cannot_be_compressed_stays_and_writing_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(path: Path) -> Path:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr("logd.write.compressor.compress_file", broken)
    sinks = _call_sinks(tmp_path)
    for i in range(3):
        sinks.write_many([Write(Kind.CALL, CALL, f"{i:059d}\n")])
        sinks.commit()
    sinks.close()
    assert_three_lines_in(tmp_path, ["call_x.log", "call_x.log.1", "call_x.log.2"])
    assert "could not compress a rotated file" in caplog.text


def family_sizes(folder: Path, name: str) -> dict[str, int]:
    """Each file of a family with its (uncompressed) size."""
    return {
        path.name: len(gzip.decompress(path.read_bytes()))
        if path.suffix == ".gz"
        else path.stat().st_size
        for path in folder.iterdir()
        if path.name == name or path.name.startswith(name + ".")
    }


async def test_a_batch_larger_than_max_bytes_is_rotated_between_its_lines(
    log_root: Path, socket_dir: Path
) -> None:
    """A message of 500 records (about 55 KB) against max_bytes = 20000: every file of the
    run log, its component log and its session file stays under the limit, and holds
    whole records, each once, in order."""
    config = make_config(log_root, socket_dir)
    policy = dataclasses.replace(config.rotation.run, max_bytes=20000, backups=50)
    config = dataclasses.replace(
        config,
        rotation=dataclasses.replace(config.rotation, run=policy, session=policy),
    )
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        await nursery.start(partial(serve_logd, config, server=server))
        producer = await Producer.unix(config.listen.socket)
        for batch in range(2):
            records = [
                rec(f"record {batch * 500 + i:05d} " + "x" * 40, session_id="s1")
                for i in range(500)
            ]
            await producer.log(records, chunk=f"{batch:08x}:{batch}")
        await producer.aclose()
        server.request_stop()
    run_dir = log_root / "cyc" / "runs" / RUN
    sessions = log_root / "cyc" / "sessions"
    for folder, name in (
        (run_dir, "main.log"),
        (run_dir, "agent.log"),
        (sessions, "session_s1.jsonl"),
    ):
        sizes = family_sizes(folder, name)
        assert len(sizes) >= 5, f"{name} was rotated within each batch: {sorted(sizes)}"
        assert max(sizes.values()) <= 20000, f"{name}: {sizes}"
        lines = read_family(folder, name)
        numbers = [int(m[1]) for line in lines if (m := re.search(r"record (\d{5}) x{40}", line))]
        assert numbers == list(range(1000)), f"{name}: each record once, in order"


def test_a_failed_batch_that_rotated_midway_is_cut_back_exactly(tmp_path: Path) -> None:
    """The disk refuses a later file of a batch after the batch rotated a file in the
    middle: the rotated copy is cut back to what it held before, the live file emptied,
    and writing the batch again leaves every line once and no file over the limit."""
    import resource
    import signal

    policy = RotationPolicy(max_bytes=1000, backups=10, compress=True)
    rotation = make_config(tmp_path / "r", tmp_path).rotation
    sinks = Sinks(tmp_path, rotation=dataclasses.replace(rotation, call=policy))
    big = "b/calls/d/bot_1/call_big.log"  # no rotation policy for REJECTED: it grows
    sinks.write_many([Write(Kind.CALL, CALL, f"old {i:02d} " + "o" * 80 + "\n") for i in range(8)])
    sinks.write_many([Write(Kind.REJECTED, big, "z" * 5000 + "\n")])
    sinks.commit()
    batch = [Write(Kind.CALL, CALL, f"new {i:02d} " + "n" * 80 + "\n") for i in range(25)]
    batch.append(Write(Kind.REJECTED, big, "z" * 5000 + "\n"))
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8000, limits[1]))
    try:
        with pytest.raises(OSError, match="too large"):
            sinks.write_many(batch)  # call_x.log rotates twice, then the big file fails
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous)
    folder = tmp_path / "a/calls/d/bot_1"
    assert read_family(folder, "call_x.log") == [f"old {i:02d} " + "o" * 80 for i in range(8)]
    sinks.write_many(batch)
    sinks.commit()
    sinks.close()
    lines = read_family(folder, "call_x.log")
    assert lines == [f"old {i:02d} " + "o" * 80 for i in range(8)] + [
        f"new {i:02d} " + "n" * 80 for i in range(25)
    ]
    assert max(family_sizes(folder, "call_x.log").values()) <= 1000
    assert not list(folder.glob("*.1")), "rotated copies are compressed after the commit"


def test_a_copy_a_crash_kept_from_compression_is_compressed_at_the_next_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon dies after a rotation's batch committed and before its copy was gzipped:
    # `call_x.log.1` stays plain. The next start's first rotation of that file shifts it
    # to `.2` and compresses it too, rather than carrying a plain copy until it ages out.
    gate = threading.Event()

    def never(path: Path) -> Path:  # the crash: compression never finishes
        gate.wait(10)
        raise OSError("killed")

    monkeypatch.setattr("logd.write.compressor.compress_file", never)
    crashed = _call_sinks(tmp_path)
    for i in range(2):
        crashed.write_many([Write(Kind.CALL, CALL, f"{i:059d}\n")])
        crashed.commit()
    folder = tmp_path / "a/calls/d/bot_1"
    assert sorted(p.name for p in folder.iterdir()) == ["call_x.log", "call_x.log.1"]
    monkeypatch.setattr("logd.write.compressor.compress_file", compress_file)
    gate.set()
    crashed.rotator.compressor.close()  # its thread ends; the files are as the crash left them

    restarted = _call_sinks(tmp_path)
    restarted.write_many([Write(Kind.CALL, CALL, f"{2:059d}\n")])
    restarted.commit()
    restarted.close()
    assert_three_lines_in(tmp_path, ["call_x.log", "call_x.log.1.gz", "call_x.log.2.gz"])
