"""What a refused batch leaves on real files: nothing it created, no temp file."""

from __future__ import annotations

from pathlib import Path

import pytest

from logd.config import Rotation, RotationPolicy
from logd.write.atomic import point_current, write_json_atomic
from logd.write.routing import Kind, Write
from logd.write.sinks import Sinks


def test_rollback_removes_the_files_and_folders_the_batch_created(tmp_path: Path) -> None:
    sinks = Sinks(tmp_path)
    sinks.write_many([Write(Kind.RUN, "a/runs/old/main.log", "kept\n")])
    sinks.commit()
    sinks.write_many(
        [
            Write(Kind.RUN, "a/runs/old/main.log", "undone\n"),
            Write(Kind.RUN, "a/runs/new/main.log", "undone\n"),
            Write(Kind.EVENTS, "b/events.log", "undone\n"),
        ]
    )
    sinks.rollback()
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "a",
        "a/runs",
        "a/runs/old",
        "a/runs/old/main.log",
    ]
    sinks.write_many([Write(Kind.RUN, "a/runs/new/main.log", "again\n")])
    sinks.close()
    assert (tmp_path / "a/runs/new/main.log").read_text() == "again\n"
    assert (tmp_path / "a/runs/old/main.log").read_text() == "kept\n"


def test_a_batch_that_rotated_is_cut_back_in_every_file_it_wrote(tmp_path: Path) -> None:
    """A rotation in the middle of a batch renames files: the files written after it are
    cut back as well, and the rotated copy loses what the batch appended to it."""
    small = RotationPolicy(max_bytes=30, backups=2, compress=False)
    sinks = Sinks(tmp_path, rotation=Rotation(run=small, session=small))
    kept = [("a/runs/r/main.log", "kept 1\n"), ("a/sessions/s.log", "kept 2\n")]
    sinks.write_many([Write(Kind.RUN, *kept[0]), Write(Kind.SESSION, *kept[1])])
    sinks.commit()
    sinks.write_many(
        [
            Write(Kind.SESSION, "a/sessions/s.log", "undone a\n"),
            *[Write(Kind.RUN, "a/runs/r/main.log", f"undone {n}\n") for n in range(6)],
            Write(Kind.SESSION, "a/sessions/s.log", "undone b\n"),
            Write(Kind.EVENTS, "a/events.log", "undone c\n"),
        ]
    )
    assert sinks.rotator.rotations >= 1
    sinks.rollback()
    sinks.close()
    # The rotation stays done; what the batch appended anywhere is gone.
    texts = {p.name: p.read_text() for p in (tmp_path / "a/runs/r").iterdir()}
    assert "".join(texts.values()) == "kept 1\n", texts
    assert (tmp_path / "a/sessions/s.log").read_text() == "kept 2\n"
    assert not (tmp_path / "a/events.log").exists()


def test_a_folder_that_got_other_files_stays(tmp_path: Path) -> None:
    sinks = Sinks(tmp_path)
    sinks.write_many([Write(Kind.RUN, "a/runs/r/main.log", "undone\n")])
    (tmp_path / "a/runs/r/notes.txt").write_text("someone else's\n")
    sinks.rollback()
    assert sorted(p.name for p in (tmp_path / "a/runs/r").iterdir()) == ["notes.txt"]


def test_a_failed_json_write_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "run" / "metadata.json"
    target.mkdir(parents=True)  # os.replace onto a folder fails, as ENOSPC would earlier
    with pytest.raises(IsADirectoryError):
        write_json_atomic(target, {"records": 1})
    assert sorted(p.name for p in target.parent.iterdir()) == ["metadata.json"]


def test_a_failed_current_pointer_leaves_no_temp_file(tmp_path: Path) -> None:
    runs = tmp_path / "app" / "runs"
    (runs / "current.txt").mkdir(parents=True)  # the last os.replace fails
    with pytest.raises(IsADirectoryError):
        point_current(runs, "r1")
    assert sorted(p.name for p in runs.iterdir()) == ["current", "current.txt"]
