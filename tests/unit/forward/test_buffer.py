"""The per-output disk buffer: append, read, ack, bounds, and recovery after a crash."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from logd.forward import buffer as buffer_module
from logd.forward import frames
from logd.forward.buffer import DiskBuffer
from logd.forward.frames import Batch

T = 1_762_353_052_000_000_000


def entries(n: int, start: int = 0, size: int = 10) -> list[tuple[int, dict[str, Any]]]:
    return [(T + i, {"msg": f"r{i:05d}" + "x" * size, "n": i}) for i in range(start, start + n)]


def msgs(batches: list[Batch]) -> list[str]:
    return [str(r["msg"])[:6] for b in batches for _, r in b.entries]


def segments(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.seg"))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "forward" / "out"


def test_append_read_ack_remove(folder: Path) -> None:
    buf = DiskBuffer(folder, max_bytes=1 << 20)
    assert buf.append([("a", entries(2)), ("b", entries(1, 2))]) == 2
    assert buf.append([("a", entries(3, 3))]) == 1
    assert (buf.records, buf.last_seq, buf.acked_seq) == (6, 3, 0)
    batches = buf.read(0, 10)
    assert [(b.seq, b.tag, len(b.entries)) for b in batches] == [
        (1, "a", 2),
        (2, "b", 1),
        (3, "a", 3),
    ]
    assert batches[0].entries == entries(2)
    assert [b.seq for b in buf.read(1, 1)] == [2]
    buf.ack(2)
    assert (buf.records, buf.acked_seq) == (3, 2)
    assert [b.seq for b in buf.read(0, 10)] == [3]
    buf.ack(1)  # an old ack changes nothing
    assert buf.records == 3
    buf.ack(3)
    assert (buf.records, buf.bytes) == (0, 0)
    assert segments(folder) == []
    assert (folder / "acked").read_text() == "3\n"
    assert buf.append([("a", entries(1))]) == 1
    assert [b.seq for b in buf.read(0, 10)] == [4]
    buf.close()


def test_empty_groups_append_nothing(folder: Path) -> None:
    buf = DiskBuffer(folder, max_bytes=1 << 20)
    assert buf.append([("a", [])]) == 0
    assert buf.last_seq == 0
    assert segments(folder) == []


def test_reopen_keeps_unacked_batches_and_producer_id(folder: Path) -> None:
    buf = DiskBuffer(folder, max_bytes=1 << 20)
    producer = buf.producer_id
    buf.append([("a", entries(2))])
    buf.append([("a", entries(2, 2))])
    buf.ack(1)
    buf.close()  # or a crash: every append was fsynced
    again = DiskBuffer(folder, max_bytes=1 << 20)
    assert again.producer_id == producer
    assert len(producer) == 16
    assert (again.acked_seq, again.last_seq, again.records) == (1, 2, 2)
    assert msgs(again.read(0, 10)) == ["r00002", "r00003"]
    again.append([("a", entries(1, 4))])
    assert [b.seq for b in again.read(0, 10)] == [2, 3]


def test_seq_survives_a_fully_acked_restart(folder: Path) -> None:
    """Chunk ids never repeat: after everything was acked, numbering goes on."""
    buf = DiskBuffer(folder, max_bytes=1 << 20)
    buf.append([("a", entries(1))])
    buf.ack(1)
    buf.close()
    again = DiskBuffer(folder, max_bytes=1 << 20)
    again.append([("a", entries(1))])
    assert [b.seq for b in again.read(0, 10)] == [2]


def test_full_buffer_drops_oldest_batches_and_counts_them(folder: Path) -> None:
    buf = DiskBuffer(folder, max_bytes=20_000, segment_bytes=4096)
    for i in range(40):
        buf.append([("a", entries(5, i * 5, size=100))])
    assert buf.bytes <= 20_000
    assert buf.dropped["buffer-full"] == 200 - buf.records
    kept = buf.read(0, 1000)
    assert kept[-1].seq == 40  # the newest stay
    assert kept[0].seq == buf.acked_seq + 1
    on_disk = sum(p.stat().st_size for p in folder.glob("*.seg"))
    assert on_disk <= 20_000 + 4096 + 1000  # dropped segments were deleted
    buf.close()
    assert DiskBuffer(folder, max_bytes=20_000).records == buf.records


def test_one_batch_bigger_than_the_bound_is_dropped_whole(folder: Path) -> None:
    buf = DiskBuffer(folder, max_bytes=4096)
    buf.append([("a", entries(100, size=100))])
    assert (buf.records, buf.dropped) == (0, {"buffer-full": 100})


def test_torn_tail_is_cut_off(folder: Path) -> None:
    buf = DiskBuffer(folder, max_bytes=1 << 20)
    buf.append([("a", entries(2))])
    buf.append([("a", entries(2, 2))])
    buf.close()
    (seg,) = folder.glob("*.seg")
    size = seg.stat().st_size
    os.truncate(seg, size - 7)  # the crash came in the middle of the second append
    again = DiskBuffer(folder, max_bytes=1 << 20)
    assert msgs(again.read(0, 10)) == ["r00000", "r00001"]
    assert again.last_seq == 1
    again.append([("a", entries(1, 9))])
    again.close()
    third = DiskBuffer(folder, max_bytes=1 << 20)
    assert msgs(third.read(0, 10)) == ["r00000", "r00001", "r00009"]
    assert third.dropped == {}


def test_garbage_after_the_last_frame_is_cut_off(folder: Path) -> None:
    buf = DiskBuffer(folder, max_bytes=1 << 20)
    buf.append([("a", entries(1))])
    buf.close()
    (seg,) = folder.glob("*.seg")
    good = seg.stat().st_size
    with open(seg, "ab") as handle:
        handle.write(b"\x00" * 100)
    again = DiskBuffer(folder, max_bytes=1 << 20)
    assert again.records == 1
    assert seg.stat().st_size == good


def test_damaged_batch_in_the_middle_is_skipped_and_counted(folder: Path) -> None:
    buf = DiskBuffer(folder, max_bytes=1 << 20)
    for i in range(3):
        buf.append([("a", entries(2, i * 2))])
    buf.close()
    (seg,) = folder.glob("*.seg")
    data = bytearray(seg.read_bytes())
    first_frame = len(data) // 3
    data[first_frame + 30] ^= 0xFF  # inside the second frame's payload
    seg.write_bytes(bytes(data))
    again = DiskBuffer(folder, max_bytes=1 << 20)
    assert msgs(again.read(0, 10)) == ["r00000", "r00001", "r00004", "r00005"]
    assert again.dropped == {"corrupt": 2}


def test_damage_found_while_reading_drops_that_batch(folder: Path) -> None:
    buf = DiskBuffer(folder, max_bytes=1 << 20)
    buf.append([("a", entries(1))])
    buf.append([("a", entries(1, 1))])
    (seg,) = folder.glob("*.seg")
    data = bytearray(seg.read_bytes())
    data[30] ^= 0xFF
    seg.write_bytes(bytes(data))
    assert msgs(buf.read(0, 10)) == ["r00001"]
    assert (buf.dropped, buf.records) == ({"corrupt": 1}, 1)


def test_failed_write_leaves_no_half_frame(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buf = DiskBuffer(folder, max_bytes=1 << 20)
    buf.append([("a", entries(1))])
    real = buffer_module._write_all

    def half_then_enospc(fd: int, data: bytes) -> None:
        real(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(buffer_module, "_write_all", half_then_enospc)
    with pytest.raises(OSError, match="No space"):
        buf.append([("a", entries(3, 1))])
    assert (buf.records, buf.last_seq) == (1, 1)
    monkeypatch.setattr(buffer_module, "_write_all", real)
    buf.append([("a", entries(1, 7))])
    buf.close()
    again = DiskBuffer(folder, max_bytes=1 << 20)
    assert msgs(again.read(0, 10)) == ["r00000", "r00007"]
    assert [b.seq for b in again.read(0, 10)] == [1, 2]


def test_segments_rotate_and_go_when_acked(folder: Path) -> None:
    buf = DiskBuffer(folder, max_bytes=1 << 20, segment_bytes=2048)
    for i in range(20):
        buf.append([("a", entries(3, i * 3, size=50))])
    before = segments(folder)
    assert len(before) >= 3
    buf.ack(10)
    assert segments(folder) == before[1:]  # the oldest held only acknowledged batches
    assert msgs(buf.read(0, 1))[0] == "r00030"
    buf.close()
    again = DiskBuffer(folder, max_bytes=1 << 20, segment_bytes=2048)
    assert (again.records, again.last_seq) == (30, 20)


def test_big_batches_are_split_into_frames_under_the_limit(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frames, "SPLIT_PAYLOAD_BYTES", 2000)
    buf = DiskBuffer(folder, max_bytes=1 << 20)
    assert buf.append([("a", entries(40, size=100))]) > 1
    batches = buf.read(0, 100)
    assert msgs(batches) == [f"r{i:05d}" for i in range(40)]
    assert all(b.tag == "a" for b in batches)


def test_take_reports_how_far_it_got(folder: Path) -> None:
    """A sender skips what is gone (acked, dropped, damaged) without reading it again."""
    buf = DiskBuffer(folder, max_bytes=1 << 20)
    for i in range(4):
        buf.append([("a", entries(1, i))])
    batches, through = buf.take(0, 2)
    assert ([b.seq for b in batches], through) == ([1, 2], 2)
    buf.discard(3, "unencodable")
    batches, through = buf.take(2, 10)
    assert ([b.seq for b in batches], through) == ([4], 4)
    buf.discard(4, "unencodable")
    assert buf.take(2, 10) == ([], 4)
    assert (buf.records, buf.dropped) == (2, {"unencodable": 2})
    buf.ack(4)
    assert segments(folder) == []
