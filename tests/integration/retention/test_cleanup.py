"""Cleanup on a real tree: scan, decide, delete, prune; dry runs; symlinks; gzip."""

from __future__ import annotations

import calendar
import gzip
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from logd.config import Retention
from logd.retention.cleanup import CleanupReport, apply, compress_file, run_cleanup
from logd.retention.policy import Deletion, Listing, Reason, UnitKind
from logd.retention.scan import scan
from tests.helpers import tree

DAY = 86400.0
NOW = float(calendar.timegm((2025, 7, 1, 12, 0, 0)))  # 2025-07-01T12:00:00Z
POLICY = Retention(runs_days=30, runs_keep=2, calls_days=30, sessions_days=7, events_days=90)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


def put(root: Path, rel: str, text: str = "x\n", *, age: float = 0.0) -> Path:
    """A file under root, last modified `age` seconds before NOW."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.utime(path, (NOW - age, NOW - age))
    return path


def put_run(root: Path, app: str, run_id: str, *, started: float, ended: float | None) -> None:
    meta = {
        "run_id": run_id,
        "app": app,
        "start_time": iso(NOW - started),
        "end_time": None if ended is None else iso(NOW - ended),
        "end_reason": None if ended is None else "shutdown",
    }
    age = started if ended is None else ended
    put(root, f"{app}/runs/{run_id}/metadata.json", json.dumps(meta), age=age)
    put(root, f"{app}/runs/{run_id}/main.log", "line\n", age=age)


def build_log_tree(root: Path) -> None:
    """One app with every kind of unit, old and new, active and ended."""
    put_run(root, "app", "r_old1", started=100 * DAY, ended=99 * DAY)
    put_run(root, "app", "r_old2", started=90 * DAY, ended=89 * DAY)
    put_run(root, "app", "r_old3", started=80 * DAY, ended=79 * DAY)
    put_run(root, "app", "r_live", started=70 * DAY, ended=None)
    (root / "app/runs/current").symlink_to("r_live")
    put(root, "app/runs/current.txt", "r_live\n")
    put(root, "app/sessions/session_old.jsonl", "{}\n", age=10 * DAY)
    put(root, "app/sessions/session_old.jsonl.1.gz", "{}\n", age=11 * DAY)
    put(root, "app/sessions/session_live.jsonl", "{}\n", age=20 * DAY)
    put(root, "app/sessions/session_new.jsonl", "{}\n", age=DAY)
    put(root, "app/calls/2025-05-01/bot_1/call_c1.log", age=60 * DAY)
    put(root, "app/calls/2025-05-01/bot_2/call_c2.log.1.gz", age=60 * DAY)
    put(root, "app/calls/2025-05-02/bot_1/call_busy.log", age=60 * DAY)
    put(root, "app/calls/2025-06-30/bot_1/call_c3.log", age=DAY)
    put(root, "app/events.log", "e\n")
    put(root, "app/events.log.2025-03-01.gz", age=120 * DAY)
    put(root, "app/events.log.2025-06-30", age=DAY)
    put(root, "_rejected/2025-03-01.jsonl", age=120 * DAY)
    put(root, "_rejected/2025-07-01.jsonl")
    put(root, "index.sqlite3", "db")
    put(root, "logd.log", "log\n")
    # Temp files a SIGKILL left: mid metadata.json, mid runs/current, mid a gzip.
    put(root, "app/runs/r_live/.metadata.json.tmp", "{")
    (root / "app/runs/.current.tmp").symlink_to("r_old3")
    put(root, "app/sessions/.session_live.jsonl.1.gz.tmp", "gz")


TEMPS = {
    "app/runs/r_live/.metadata.json.tmp",
    "app/runs/.current.tmp",
    "app/sessions/.session_live.jsonl.1.gz.tmp",
}
EXPECTED = TEMPS | {
    "app/runs/r_old1",
    "app/runs/r_old2",
    "app/sessions/session_old.jsonl",
    "app/sessions/session_old.jsonl.1.gz",
    "app/calls/2025-05-01",
    "app/events.log.2025-03-01.gz",
    "_rejected/2025-03-01.jsonl",
}

ACTIVE_CALLS = {("app", "2025-05-02", "busy")}


def listing_of(root: Path) -> Listing:
    """The tree of `build_log_tree` as the daemon would scan it, with its live units."""
    return scan(root, active_sessions={("app", "live")}, active_calls=ACTIVE_CALLS, utc=True)


def cleanup(root: Path, *, dry_run: bool = False) -> CleanupReport:
    return run_cleanup(
        root,
        POLICY,
        NOW,
        active_sessions={("app", "live")},
        active_calls=ACTIVE_CALLS,
        utc=True,
        dry_run=dry_run,
    )


@pytest.fixture
def log_tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    build_log_tree(root)
    return root


def test_scan_describes_the_tree(log_tree: Path) -> None:
    listing = listing_of(log_tree)
    runs = {r.run_id: r for r in listing.runs}
    assert set(runs) == {"r_old1", "r_old2", "r_old3", "r_live"}
    assert runs["r_live"].end_ts is None
    assert runs["r_old1"].end_ts == pytest.approx(NOW - 99 * DAY, abs=0.01)
    assert {(s.session_id, s.active, len(s.files)) for s in listing.sessions} == {
        ("old", False, 2),
        ("live", True, 1),
        ("new", False, 1),
    }
    assert {(c.day, c.active) for c in listing.call_days} == {
        ("2025-05-01", False),
        ("2025-05-02", True),
        ("2025-06-30", False),
    }
    assert {a.path for a in listing.archives} == {
        "app/events.log.2025-03-01.gz",
        "app/events.log.2025-06-30",
    }
    assert {r.day for r in listing.rejected} == {"2025-03-01", "2025-07-01"}
    # events.log (2) + current link (6) + current.txt (7) + index (2) + logd.log (4),
    # and two temp files: .current.tmp (6) and a gzip's (2); r_live's counts with it
    assert listing.other_bytes == 2 + 6 + 7 + 2 + 4 + 6 + 2
    assert dict(listing.temps) == {
        "app/runs/r_live/.metadata.json.tmp": 1,
        "app/runs/.current.tmp": 6,
        "app/sessions/.session_live.jsonl.1.gz.tmp": 2,
    }
    on_disk = sum((log_tree / p).lstat().st_size for p in tree(log_tree))
    assert listing.total_bytes == on_disk


def test_cleanup_deletes_exactly_and_prunes(log_tree: Path) -> None:
    before = set(tree(log_tree))
    report = cleanup(log_tree)
    assert not report.errors
    assert set(report.deleted) == EXPECTED
    gone = {p for p in before if any(p == e or p.startswith(e + "/") for e in EXPECTED)}
    assert set(tree(log_tree)) == before - gone
    assert report.freed_bytes == sum(d.bytes for d in report.deletions) > 0
    assert {d.kind for d in report.deletions} == set(UnitKind)
    assert {d.path for d in report.deletions if d.reason is Reason.LEFTOVER} == TEMPS
    assert (log_tree / "app/runs/r_live/metadata.json").exists()  # only the temp went
    assert not (log_tree / "app/calls/2025-05-01").exists()
    assert (log_tree / "app/runs/current").is_symlink()
    assert report.as_dict() == {
        "dry_run": False,
        "deleted": report.deleted,
        "freed_bytes": report.freed_bytes,
    }


def test_dry_run_deletes_nothing_but_reports_the_same(log_tree: Path) -> None:
    before = tree(log_tree)
    dry = cleanup(log_tree, dry_run=True)
    assert tree(log_tree) == before
    assert dry.dry_run
    real = cleanup(log_tree)
    assert (dry.deleted, dry.freed_bytes) == (real.deleted, real.freed_bytes)


def test_empty_folders_pruned_up_to_the_app(tmp_path: Path) -> None:
    root = tmp_path / "root"
    put(root, "app/calls/2025-05-01/bot_1/call_c1.log", age=60 * DAY)
    put(root, "app/sessions/session_s.jsonl", age=60 * DAY)
    put(root, "_rejected/2025-03-01.jsonl", age=120 * DAY)
    report = run_cleanup(root, POLICY, NOW, utc=True)
    assert len(report.deleted) == 3
    assert sorted(p.name for p in root.iterdir()) == ["app"]
    assert list((root / "app").iterdir()) == []


def test_active_and_newest_runs_stay_and_current_follows(tmp_path: Path) -> None:
    root = tmp_path / "root"
    put_run(root, "app", "r1", started=50 * DAY, ended=49 * DAY)
    put_run(root, "app", "r2", started=40 * DAY, ended=39 * DAY)
    put_run(root, "app", "r3", started=30 * DAY, ended=None)  # active by its metadata
    put_run(root, "app", "r4", started=35 * DAY, ended=None)
    (root / "app/runs/current").symlink_to("r2/")
    put(root, "app/runs/current.txt", "r2\n")
    policy = Retention(runs_days=1, runs_keep=0)
    report = run_cleanup(root, policy, NOW, active_runs={("app", "r4")})
    assert set(report.deleted) == {
        "app/runs/r1",
        "app/runs/r2",
        "app/runs/current",
        "app/runs/current.txt",
    }
    assert sorted(p.name for p in (root / "app/runs").iterdir()) == ["r3", "r4"]


def test_run_without_metadata_ends_at_its_last_change(tmp_path: Path) -> None:
    root = tmp_path / "root"
    put(root, "app/runs/broken_old/main.log", age=40 * DAY)
    os.utime(root / "app/runs/broken_old", (NOW - 40 * DAY, NOW - 40 * DAY))
    put(root, "app/runs/broken_new/main.log", age=2 * DAY)
    put(root, "app/runs/bad_meta/metadata.json", "{not json", age=40 * DAY)
    os.utime(root / "app/runs/bad_meta", (NOW - 40 * DAY, NOW - 40 * DAY))
    listing = scan(root)
    assert all(r.end_ts is not None for r in listing.runs)
    report = run_cleanup(root, Retention(runs_days=30, runs_keep=0), NOW)
    assert set(report.deleted) == {"app/runs/broken_old", "app/runs/bad_meta"}


def test_symlinks_are_removed_never_followed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    put(outside, "keep/precious.txt", "precious\n")
    put(outside, "file.txt", "precious\n")
    put_run(root, "app", "r1", started=50 * DAY, ended=49 * DAY)
    (root / "app/runs/r1/escape").symlink_to(outside / "keep")
    (root / "app/runs/r1/escape.log").symlink_to(outside / "file.txt")
    (root / "app/sessions").mkdir(parents=True)
    (root / "app/sessions/session_s.jsonl").symlink_to(outside / "file.txt")
    os.utime(root / "app/sessions/session_s.jsonl", (NOW - 60 * DAY,) * 2, follow_symlinks=False)
    report = run_cleanup(root, Retention(runs_days=1, runs_keep=0, sessions_days=1), NOW)
    assert set(report.deleted) == {"app/runs/r1", "app/sessions/session_s.jsonl"}
    assert not os.path.lexists(root / "app/sessions/session_s.jsonl")
    assert tree(outside) == ["file.txt", "keep/precious.txt"]
    assert (outside / "file.txt").read_text() == "precious\n"


def test_apply_refuses_paths_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    put(tmp_path, "victim/file.txt")
    put(root, "app/x.txt")
    (root / "app/link").symlink_to(tmp_path / "victim")

    def gone(path: str) -> Deletion:
        return Deletion(path, Reason.AGE, 1, UnitKind.RUN, "app", "x")

    paths = ["../victim", str(tmp_path / "victim"), "app/link/file.txt", "app/../../victim", ""]
    report = apply(root, [gone(p) for p in paths], dry_run=False)
    assert report.deleted == []
    assert len(report.errors) == len(paths)
    assert (tmp_path / "victim/file.txt").exists()
    # The link itself is inside the root: it goes, its target stays.
    report = apply(root, [gone("app/link"), gone("app/missing")], dry_run=False)
    assert report.deleted == ["app/link"]
    assert not report.errors
    assert (tmp_path / "victim/file.txt").exists()


def test_compress_file_round_trip(tmp_path: Path) -> None:
    data = "".join(f"line {i}\n" for i in range(5000))
    path = put(tmp_path, "main.log.1", data, age=3 * DAY)
    path.chmod(0o640)
    packed = compress_file(path)
    assert packed == tmp_path / "main.log.1.gz"
    assert not path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["main.log.1.gz"]
    assert gzip.decompress(packed.read_bytes()).decode() == data
    assert packed.stat().st_mtime == pytest.approx(NOW - 3 * DAY, abs=0.01)
    assert packed.stat().st_mode & 0o777 == 0o640


def test_compress_file_missing_leaves_no_temp(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        compress_file(tmp_path / "nope.log.1")
    assert list(tmp_path.iterdir()) == []


def test_active_ids_are_raw_and_calls_found_by_file(tmp_path: Path) -> None:
    """Active ids come as producers send them; a call keeps any folder holding its file."""
    root = tmp_path / "root"
    put(root, "app/sessions/session_a%2Fb.jsonl", age=60 * DAY)
    put(root, "app/calls/2025-05-01/bot_1/call_c%201.log.2.gz", age=60 * DAY)
    put(root, "app/calls/2025-05-02/bot_1/call_c2.log", age=60 * DAY)
    report = run_cleanup(
        root,
        Retention(sessions_days=1, calls_days=1),
        NOW,
        active_sessions={("app", "a/b")},
        active_calls={("app", "2025-07-01", "c 1")},
        utc=True,
    )
    assert report.deleted == ["app/calls/2025-05-02"]


def test_compress_file_replaces_a_gz_left_by_a_crash(tmp_path: Path) -> None:
    # A crash between the rename and the unlink left both; the next run replaces the .gz.
    path = put(tmp_path, "main.log.1", "new\n", age=DAY)
    (tmp_path / "main.log.1.gz").write_bytes(gzip.compress(b"old\n"))
    packed = compress_file(path)
    assert gzip.decompress(packed.read_bytes()) == b"new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["main.log.1.gz"]


def test_compress_file_without_unnamed_files_renames_a_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # File systems without O_TMPFILE take the hidden temp file and rename it.
    from logd.retention import cleanup

    monkeypatch.setattr(cleanup, "_unnamed_file", lambda folder: None)
    data = "".join(f"line {i}\n" for i in range(5000))
    path = put(tmp_path, "main.log.1", data, age=DAY)
    packed = compress_file(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["main.log.1.gz"]
    assert gzip.decompress(packed.read_bytes()).decode() == data


_COMPRESS_CHILD = """
import sys
from pathlib import Path
from logd.retention.cleanup import compress_file
print("go", flush=True)
compress_file(Path(sys.argv[1]))
"""


def test_compress_file_killed_midway_leaves_no_temp_file(tmp_path: Path) -> None:
    # SIGKILL while the .gz is being written: the original stays, and nothing else.
    import os
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "main.log.1"
    with open(path, "wb") as out:
        for _ in range(16):
            out.write(os.urandom(1 << 20).hex().encode())  # 32 MiB: about a second to gzip
    child = subprocess.Popen(
        [sys.executable, "-c", _COMPRESS_CHILD, str(path)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"go\n"
        deadline = time.monotonic() + 30
        fds = Path(f"/proc/{child.pid}/fd")
        # Until the file being written is open in the child (then the kill lands midway).
        while not any(
            str(tmp_path) in os.readlink(fd) and "main.log.1" not in os.readlink(fd)
            for fd in fds.iterdir()
        ):
            assert child.poll() is None, "the child finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["main.log.1"]
