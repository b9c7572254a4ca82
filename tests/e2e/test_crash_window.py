"""A daemon killed in the middle of a batch: after the restart and the producer's resend,
every record is in every one of its files, the event index and the registry exactly once.

The crash is a real SIGKILL of a real writer process, delivered at the exact point under
test: the writer runs `Engine` in a child process whose next step (inserting the event
rows, or committing the registry) kills it. A real `logd serve` then starts on that root,
and a real Forward client sends both messages again, as logd's client would.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from logd_client import wire

from tests.e2e.procs import start_daemon

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
RUN = "20251105_143052_a1b2c3d4"
PRODUCER = "ab" * 8
PER_BATCH = 300

WRITER = r"""
import dataclasses, os, signal, sys
from pathlib import Path

from logd.index.states import Peer
from logd.write.engine import Engine
from logd.write.jobs import Ingest
from tests.e2e.test_crash_window import message_entries
from tests.helpers import make_config
from logd_client import wire

root, sockets, point = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
config = make_config(root, sockets)
small = dataclasses.replace(config.rotation.run, max_bytes=20000, backups=20)
config = dataclasses.replace(config, rotation=dataclasses.replace(config.rotation, run=small))
engine = Engine(config)
peer = Peer(1, "unix", pid=os.getpid())

def ingest(seq):
    tag, entries, option = message_entries(seq)
    return Ingest(peer, [wire.Entries(tag, entries, option, [])])

engine.process([ingest(0)])
engine.process([ingest(1)])
crash = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
if point == "before-events":
    engine.index.insert_many = crash
elif point == "before-commit":
    engine.store.write_prepared = crash
engine.process([ingest(2)])
print("not reached", flush=True)
"""


def message_entries(seq: int) -> tuple[str, list[tuple[int, dict[str, Any]]], dict[str, Any]]:
    """Message `seq` of the producer: the same bytes whenever it is (re)sent."""
    base = 1_764_000_000_000_000_000 + seq * PER_BATCH * 1_000_000
    entries = []
    for i in range(PER_BATCH):
        n = seq * PER_BATCH + i
        record: dict[str, Any] = {
            "msg": f"record {n:05d} " + "x" * 40,
            "app": "shop",
            "run_id": RUN,
            "logger": "shop.agent",
            "level": "INFO",
            "session_id": "s1",
            "pid": 4242,
        }
        if n % 10 == 0:
            record.update(event_type="llm:request", kv={"n": n})
        entries.append((base + i * 1_000_000, record))
    return "shop", entries, {"chunk": f"{PRODUCER}:{seq}"}


def send_all(path: Path, seqs: range) -> None:
    """A Forward client resending its unacknowledged messages, each waiting for its ack."""
    decoder = wire.ResponseDecoder()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(os.fspath(path))
        for seq in seqs:
            tag, entries, option = message_entries(seq)
            sock.sendall(wire.encode_forward(tag, entries, chunk=option["chunk"]))
            event = decoder.next_event()
            while event is None:
                decoder.receive_data(sock.recv(65536))
                event = decoder.next_event()
            assert event == wire.Ack(option["chunk"])


def family_lines(folder: Path, name: str) -> list[str]:
    lines = []
    for path in folder.iterdir():
        if path.name == name or path.name.startswith(name + "."):
            data = path.read_bytes()
            lines += (gzip.decompress(data) if path.suffix == ".gz" else data).decode().splitlines()
    return lines


def numbers(lines: list[str]) -> list[int]:
    found = []
    for line in lines:
        at = line.find("record ")
        if at >= 0:
            found.append(int(line[at + 7 : at + 12]))
    return sorted(found)


@pytest.mark.parametrize("point", ["before-events", "before-commit"])
def test_a_batch_cut_short_by_sigkill_is_written_once_after_the_resend(
    log_root: Path, socket_dir: Path, point: str
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    writer = subprocess.run(
        [sys.executable, "-c", WRITER, str(log_root), str(socket_dir), point],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert writer.returncode == -9, writer.stderr
    run_dir = log_root / "shop" / "runs" / RUN
    assert len(numbers(family_lines(run_dir, "main.log"))) > 2 * PER_BATCH, "batch 3 was written"
    config = socket_dir / "logd.toml"
    config.write_text("[rotation.run]\nmax_bytes = 20000\nbackups = 20\n")
    daemon = start_daemon(log_root, socket_dir, args=("--config", str(config)))
    try:
        send_all(daemon.socket, range(3))  # the first two are recognised, not rewritten
    finally:
        assert daemon.stop() == 0
    assert_written_once(log_root, 3 * PER_BATCH)
    big = [p for p in run_dir.iterdir() if p.stat().st_size > 20000 and p.suffix != ".gz"]
    assert big == [], "rotation kept its limit through the cut-back"
    assert "back to the last committed batch" in daemon.stderr


def assert_written_once(log_root: Path, total: int) -> None:
    """Records 0 .. total-1 are each once in every file they go to, in the event index,
    and counted so in the registry rows and the run's metadata."""
    run_dir = log_root / "shop" / "runs" / RUN
    everything = list(range(total))
    assert numbers(family_lines(run_dir, "main.log")) == everything
    assert numbers(family_lines(run_dir, "shop.agent.log")) == everything
    sessions = log_root / "shop" / "sessions"
    assert numbers(family_lines(sessions, "session_s1.jsonl")) == everything
    events = [n for n in everything if n % 10 == 0]
    assert numbers(family_lines(log_root / "shop", "events.log")) == events
    with sqlite3.connect(log_root / "index.sqlite3") as db:
        messages = [r[0] for r in db.execute("SELECT message FROM events WHERE app = 'shop'")]
        (run_records,) = db.execute("SELECT records FROM runs WHERE run_id = ?", [RUN]).fetchone()
        (session_records,) = db.execute("SELECT records FROM sessions").fetchone()
    assert numbers(messages) == events
    assert run_records == session_records == total
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["records"] == total
