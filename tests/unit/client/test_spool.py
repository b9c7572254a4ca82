"""The spool file format and the claim protocol of logd_client.spool (real files, no sockets)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import msgpack
import pytest
from logd_client import spool, wire


def message(i: int, producer: str = "ab" * 8) -> tuple[str, bytes]:
    chunk = f"{producer}:{i}"
    return chunk, wire.encode_forward("app", [(i, {"msg": f"m{i}"})], chunk=chunk)


def write_spool(directory: Path, n: int, producer: str = "ab" * 8) -> spool.Claim:
    spool.prepare_directory(directory)
    claim = spool.Claim.create(directory, producer, pid=4242)
    frames = [spool.encode_frame(*message(i, producer), count=1, first_seq=i) for i in range(n)]
    claim.append(frames, 0)
    return claim


def decode(data: bytes) -> list[wire.Entries]:
    decoder = wire.ForwardDecoder()
    decoder.receive_data(data)
    decoder.receive_eof()
    out = []
    while not isinstance(event := decoder.next_event(), wire.Closed):
        assert isinstance(event, wire.Entries)
        out.append(event)
    return out


def test_frames_round_trip_and_are_forward_messages(tmp_path: Path) -> None:
    claim = write_spool(tmp_path, 3)
    frames = list(claim.frames())
    claim.close()
    assert [(f.chunk, f.count, f.first_seq, f.acked) for f in frames] == [
        ("abababababababab:0", 1, 0, False),
        ("abababababababab:1", 1, 1, False),
        ("abababababababab:2", 1, 2, False),
    ]
    assert frames[1].offset == frames[0].end
    (entries,) = decode(frames[2].message)
    assert entries.chunk == "abababababababab:2"
    assert entries.entries[0][1] == {"msg": "m2"}
    path = tmp_path / spool.spool_name("ab" * 8, 4242)
    assert list(spool.read_messages(path)) == [f.message for f in frames]


def test_a_spool_file_is_a_valid_msgpack_stream(tmp_path: Path) -> None:
    claim = write_spool(tmp_path, 2)
    claim.close()
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed((tmp_path / spool.spool_name("ab" * 8, 4242)).read_bytes())
    objects = list(unpacker)
    assert [o[0] for o in objects] == [False, False]  # acked
    assert [o[4] for o in objects] == ["abababababababab:0", "abababababababab:1"]
    assert [decode(o[5])[0].chunk for o in objects] == [o[4] for o in objects]


def test_acked_frames_are_skipped_by_later_readers(tmp_path: Path) -> None:
    claim = write_spool(tmp_path, 3)
    first, second, _ = list(claim.frames())
    claim.mark_acked(first)
    claim.mark_acked(second.offset)
    claim.close()
    report = spool.ReadReport()
    path = tmp_path / spool.spool_name("ab" * 8, 4242)
    with spool.Claim(path) as again:
        assert [f.chunk for f in again.frames(report)] == ["abababababababab:2"]
    assert (report.frames, report.acked_frames, report.damaged_frames) == (1, 2, 0)


def test_a_truncated_last_frame_is_ignored_and_counted(tmp_path: Path) -> None:
    """Every cut inside the last frame leaves the complete frames readable."""
    claim = write_spool(tmp_path, 3)
    frames = list(claim.frames())
    claim.close()
    path = tmp_path / spool.spool_name("ab" * 8, 4242)
    data = path.read_bytes()
    for cut in range(frames[2].offset + 1, len(data)):
        path.write_bytes(data[:cut])
        report = spool.ReadReport()
        got = list(spool.read_messages(path, report))
        assert got == [frames[0].message, frames[1].message], cut
        assert report.damaged_frames == 1
        assert report.damaged_bytes == cut - frames[2].offset
        # Past the fixed header, the frame's record count is known.
        assert report.damaged_records == (1 if cut - frames[2].offset >= 24 else 0)


def test_a_corrupt_frame_ends_the_readable_part(tmp_path: Path) -> None:
    claim = write_spool(tmp_path, 3)
    frames = list(claim.frames())
    claim.close()
    path = tmp_path / spool.spool_name("ab" * 8, 4242)
    data = bytearray(path.read_bytes())
    data[frames[1].end - 1] ^= 0xFF  # the last byte of the second message
    path.write_bytes(bytes(data))
    report = spool.ReadReport()
    assert list(spool.read_messages(path, report)) == [frames[0].message]
    assert (report.damaged_frames, report.damaged_records) == (1, 1)
    assert report.damaged_bytes == len(data) - frames[1].offset


def test_encode_frame_refuses_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="too large"):
        spool.encode_frame("x" * 70000, b"", count=1)


def test_directory_and_files_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "spool"
    claim = write_spool(directory, 1)
    claim.close()
    assert directory.stat().st_mode & 0o777 == 0o700
    assert (directory / spool.spool_name("ab" * 8, 4242)).stat().st_mode & 0o777 == 0o600
    directory.chmod(0o755)
    spool.prepare_directory(directory)
    assert directory.stat().st_mode & 0o777 == 0o700
    assert os.listdir(directory) == [spool.spool_name("ab" * 8, 4242)]  # no hidden leftovers


def test_a_live_spool_is_busy_and_not_an_orphan(tmp_path: Path) -> None:
    owner = write_spool(tmp_path, 2)
    with pytest.raises(spool.SpoolBusy):
        spool.Claim(owner.path)
    assert list(spool.orphans(tmp_path)) == []
    assert list(spool.claim_orphans(tmp_path)) == []
    owner.close()  # the producer exited
    assert list(spool.orphans(tmp_path)) == [owner.path]
    (claim,) = spool.claim_orphans(tmp_path)
    with claim, pytest.raises(spool.SpoolBusy):
        spool.Claim(owner.path)  # claims are exclusive too


def test_delete_removes_the_file_and_releases_the_claim(tmp_path: Path) -> None:
    owner = write_spool(tmp_path, 1)
    owner.close()
    claim = spool.Claim(owner.path)
    claim.delete()
    assert claim.closed
    assert not owner.path.exists()
    with pytest.raises(FileNotFoundError):
        spool.Claim(owner.path)


def test_a_claim_on_a_file_replaced_before_the_lock_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner deletes and recreates its file between a claimant's open() and flock()."""
    owner = write_spool(tmp_path, 1)
    owner.close()
    real_flock = fcntl.flock
    replaced: list[spool.Claim] = []

    def flock_after_replacing(fd: int, operation: int) -> None:
        if armed:
            armed.clear()
            owner.path.unlink()
            replaced.append(write_spool(tmp_path, 1))
        real_flock(fd, operation)

    armed = [True]
    monkeypatch.setattr(fcntl, "flock", flock_after_replacing)
    with pytest.raises(FileNotFoundError):
        spool.Claim(owner.path)
    monkeypatch.undo()
    with pytest.raises(spool.SpoolBusy):  # the new file is its owner's, and locked
        spool.Claim(owner.path)
    replaced[0].close()


def test_total_bytes_counts_every_producer(tmp_path: Path) -> None:
    one = write_spool(tmp_path, 2, producer="aa" * 8)
    two = write_spool(tmp_path, 3, producer="bb" * 8)
    (tmp_path / "unrelated.txt").write_text("x" * 1000)
    assert spool.total_bytes(tmp_path) == one.size() + two.size()
    assert spool.total_bytes(tmp_path / "missing") == 0
    one.close()
    two.close()


def test_default_directory_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(spool.SPOOL_DIR_ENV, str(tmp_path))
    assert spool.default_directory() == tmp_path
    monkeypatch.delenv(spool.SPOOL_DIR_ENV)
    assert spool.default_directory().name == "logd"
