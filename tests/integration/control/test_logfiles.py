"""Reading a file family backwards across its live file, plain and gzip backups, with
and without a size taken earlier."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from logd.control.logfiles import Limit, limit_of, parts, records_back


def head(line: str) -> bool:
    return line.startswith("[")


def write(path: Path, text: str, *, gz: bool = False) -> None:
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)


def family(tmp_path: Path) -> Path:
    live = tmp_path / "main.log"
    write(tmp_path / "main.log.3.gz", "[1]\n[2]\n  trace of 2\n", gz=True)
    write(tmp_path / "main.log.2.gz", "[3]\n", gz=True)
    write(tmp_path / "main.log.1", "[4]\n[5]\n")
    write(tmp_path / "main.log.1.gz", "[4]\n", gz=True)  # being compressed: the plain one wins
    write(live, "[6]\n  trace of 6\n  more\n[7]\n[8 half writ")
    write(tmp_path / "main.log.bak", "not a part\n")
    write(tmp_path / "other.log.1", "[x]\n")
    return live


def test_parts_newest_first(tmp_path: Path) -> None:
    live = family(tmp_path)
    assert [p.name for p in parts(live)] == [
        "main.log",
        "main.log.1",
        "main.log.2.gz",
        "main.log.3.gz",
    ]
    os.unlink(live)
    assert next(p.name for p in parts(live)) == "main.log.1"


def test_records_come_back_newest_first_with_their_continuations(tmp_path: Path) -> None:
    live = family(tmp_path)
    assert list(records_back(live, head)) == [
        ["[7]"],
        ["[6]", "  trace of 6", "  more"],
        ["[5]"],
        ["[4]"],
        ["[3]"],
        ["[2]", "  trace of 2"],
        ["[1]"],
    ]
    assert list(records_back(live, None))[:2] == [["[7]"], ["  more"]]


def test_long_lines_across_read_blocks(tmp_path: Path) -> None:
    live = tmp_path / "s.jsonl"
    rows = [f"[{i}] " + "x" * (i * 997 % 150_000) for i in range(40)]
    write(live, "\n".join(rows) + "\n")
    assert [r[0] for r in records_back(live, None)] == rows[::-1]


def test_a_limit_reads_what_was_there_then(tmp_path: Path) -> None:
    live = family(tmp_path)
    then = limit_of(live)
    with open(live, "a") as handle:
        handle.write("tten]\n[9]\n")
    assert [r[0] for r in records_back(live, head, then)][:2] == ["[7]", "[6]"]
    assert [r[0] for r in records_back(live, head)][:2] == ["[9]", "[8 half writtten]"]
    # Rotated since: the old live file is main.log.1 now (same inode), a new one began.
    for number in (3, 2):
        os.replace(tmp_path / f"main.log.{number}.gz", tmp_path / f"main.log.{number + 1}.gz")
    os.replace(tmp_path / "main.log.1", tmp_path / "main.log.2")
    os.unlink(tmp_path / "main.log.1.gz")
    os.replace(live, tmp_path / "main.log.1")
    write(live, "[10]\n")
    assert [r[0] for r in records_back(live, head, then)][:3] == ["[7]", "[6]", "[5]"]
    # ... and compressed: its first compressed copy stands for it.
    data = (tmp_path / "main.log.1").read_bytes()
    write(tmp_path / "main.log.1.gz", data.decode(), gz=True)
    os.unlink(tmp_path / "main.log.1")
    assert [r[0] for r in records_back(live, head, then)][:2] == ["[7]", "[6]"]


def test_a_family_that_did_not_exist_then_reads_as_empty(tmp_path: Path) -> None:
    live = tmp_path / "session.jsonl"
    then = limit_of(live)
    assert then == Limit(None, 0)
    write(live, "{}\n")
    assert list(records_back(live, None, then)) == []
    assert list(records_back(live, None)) == [["{}"]]
