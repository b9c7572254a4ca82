"""Forwarding upstream with real peers: rsyslog over TCP, and a second logd as aggregator.

Each test runs real daemons (`python -m logd serve`), sends records through the ingest
socket the way any Forward client does, breaks the upstream mid-stream, and counts what
arrived. Duplicates are allowed where the protocol cannot avoid them, and reported.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from logd_client import wire
from logd_client.control.connection import ControlConnection

from logd.control.requests import request
from logd.forward.buffer import DiskBuffer
from tests.e2e.procs import DaemonProcess, start_daemon, wait_for

pytestmark = pytest.mark.e2e

RUN = "20251105_143052_a1b2c3d4"
REC_RE = re.compile(r"rec-(\d{5})")


# --- helpers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Logd:
    process: DaemonProcess
    control: Path

    def status(self) -> dict[str, Any]:
        with ControlConnection(os.fspath(self.control)) as conn:
            result: dict[str, Any] = conn.call(request("status"))
            return result

    def output(self) -> dict[str, Any]:
        (out,) = self.status()["outputs"]
        assert isinstance(out, dict)
        return out

    def stop(self) -> None:
        assert self.process.stop() == 0, self.process.stderr


class Fleet:
    """Daemons of one test, each with short socket folders; all killed at teardown."""

    def __init__(self) -> None:
        self.folders: list[Path] = []
        self.daemons: list[Logd] = []

    def folder(self) -> Path:
        path = Path(tempfile.mkdtemp(prefix="logd-fw-", dir="/tmp"))
        self.folders.append(path)
        return path

    def start(self, root: Path, sockets: Path, config: str, *args: str) -> Logd:
        path = sockets / "logd.toml"
        path.write_text(config, encoding="utf-8")
        process = start_daemon(root, sockets, args=("--config", str(path), *args))
        self.daemons.append(Logd(process, sockets / "ctl.sock"))
        return self.daemons[-1]

    def close(self) -> None:
        for daemon in self.daemons:
            if daemon.process.proc.poll() is None:
                daemon.process.proc.kill()
                daemon.process.proc.wait()
        for path in self.folders:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    daemons = Fleet()
    yield daemons
    daemons.close()


def forward_config(state: Path, body: str) -> str:
    return f'state_dir = "{state}"\n[[forward]]\nhost = "127.0.0.1"\nretry_max_s = 0.3\n{body}\n'


class Producer:
    """A bare Forward client on the ingest socket: each message waits for its ack."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(20)
        self.sock.connect(os.fspath(path))
        self.decoder = wire.ResponseDecoder()
        # A fresh producer id per sequence stream, as logd_client does: the daemon
        # remembers the highest sequence written per producer, across restarts too.
        self.producer = secrets.token_hex(8)
        self.seq = 0

    def send(self, first: int, count: int, **fields: Any) -> None:
        entries = [
            (time.time_ns(), {"msg": f"rec-{i:05d}", "run_id": RUN, **fields})
            for i in range(first, first + count)
        ]
        self.seq += 1
        chunk = f"{self.producer}:{self.seq}"
        self.sock.sendall(wire.encode_forward("fleet", entries, chunk=chunk))
        while True:
            event = self.decoder.next_event()
            if event is not None:
                assert event == wire.Ack(chunk)
                return
            data = self.sock.recv(65536)
            if data:
                self.decoder.receive_data(data)
            else:
                self.decoder.receive_eof()

    def close(self) -> None:
        self.sock.close()


def counts(text: str) -> Counter[int]:
    return Counter(int(m) for m in REC_RE.findall(text))


def read_all(paths: list[Path]) -> str:
    return "".join(p.read_text(encoding="utf-8", errors="replace") for p in paths if p.exists())


def report(record_property: Any, name: str, seen: Counter[int]) -> int:
    duplicates = sum(n - 1 for n in seen.values())
    record_property(f"{name}_duplicates", duplicates)
    print(f"{name}: {len(seen)} distinct records, {duplicates} duplicates")
    return duplicates


# --- rsyslog -----------------------------------------------------------------------------

RSYSLOG_CONF = """\
global(workDirectory="{work}" maxMessageSize="64k")
module(load="imtcp")
template(name="raw" type="string"
         string="%app-name% %procid% %msgid% %structured-data% %msg%\\n")
input(type="imtcp" address="127.0.0.1" port="{port}")
action(type="omfile" file="{out}" template="raw")
"""


class Rsyslog:
    """rsyslogd in the foreground with imtcp on a loopback port and omfile to `out`."""

    def __init__(self, folder: Path, port: int) -> None:
        self.binary = shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin")
        if self.binary is None:
            pytest.skip("rsyslogd is not installed (.ci/run installs Debian's rsyslog)")
        self.folder, self.port = folder, port
        self.out = folder / "out.log"
        self.conf = folder / "rsyslog.conf"
        self.conf.write_text(
            RSYSLOG_CONF.format(work=folder, port=port, out=self.out), encoding="utf-8"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.binary is not None
        pidfile = self.folder / "rsyslogd.pid"
        pidfile.unlink(missing_ok=True)
        with open(self.folder / "rsyslogd.stderr", "ab") as stderr:
            self.proc = subprocess.Popen(
                [self.binary, "-n", "-f", str(self.conf), "-i", str(pidfile)],
                stdout=stderr,
                stderr=stderr,
            )
        wait_for(self._listening, 10)

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            errors = (self.folder / "rsyslogd.stderr").read_text(errors="replace")
            pytest.fail(f"rsyslogd exited: {errors}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)
        self.proc.wait(timeout=15)

    def text(self) -> str:
        return read_all([self.out])


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    server = Rsyslog(tmp_path, free_port())
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_rsyslog_gets_every_record_across_its_restart(
    rsyslog: Rsyslog, tmp_path: Path, fleet: Fleet, signum: int, record_property: Any
) -> None:
    rsyslog.start()
    config = forward_config(
        tmp_path / "state", f'type = "syslog"\nport = {rsyslog.port}\nconfirm_s = 0.5'
    )
    logd = fleet.start(tmp_path / "root", fleet.folder(), config)
    producer = Producer(logd.process.socket)
    total, step = 1500, 50
    ids = {"session_id": 'se"ss]1', "call_id": "call-7", "app": "fleet"}
    for first in range(0, 500, step):
        producer.send(first, step, **ids)
        time.sleep(0.02)
    wait_for(lambda: len(counts(rsyslog.text())) >= 300, 10)
    rsyslog.stop(signum)
    for first in range(500, 1000, step):  # down for ~2 s: logd keeps accepting
        producer.send(first, step, **ids)
        time.sleep(0.2)
    wait_for(lambda: not logd.output()["connected"], 10)
    assert logd.output()["buffered_records"] >= 500
    rsyslog.start()
    for first in range(1000, total, step):
        producer.send(first, step, **ids)
        time.sleep(0.02)
    producer.close()
    wait_for(lambda: len(counts(rsyslog.text())) == total, 30)
    wait_for(lambda: logd.output()["acked"] == total, 10)

    seen = counts(rsyslog.text())
    assert sorted(seen) == list(range(total))
    report(record_property, "rsyslog", seen)
    line = next(x for x in rsyslog.text().splitlines() if "rec-00007" in x)
    assert line.startswith("fleet ")
    assert f'run_id="{RUN}"' in line
    assert 'session_id="se\\"ss\\]1"' in line  # escaped as RFC 5424 asks, kept by rsyslog
    assert 'call_id="call-7"' in line
    out = logd.output()
    assert out["acked"] == out["sent"] == total
    assert out["retried"] >= 0
    assert out["dropped"] == {}
    assert out["last_error"]  # it saw the outage
    logd.stop()


# --- a second logd as Fluent Forward aggregator -----------------------------------------


def aggregator_config(key: str) -> str:
    return f'[listen]\nshared_key = "{key}"\n'


def aggregated(root: Path) -> Counter[int]:
    folder = root / "fleet" / "runs" / RUN
    return counts(read_all(sorted(folder.glob("main.log*"))))


def fluent_output(tmp_path: Path, port: int, key: str) -> str:
    return forward_config(
        tmp_path / "state", f'type = "fluent"\nname = "agg"\nport = {port}\nshared_key = "{key}"'
    )


def test_logd_aggregator_killed_mid_stream_gets_every_record(
    tmp_path: Path, fleet: Fleet, record_property: Any
) -> None:
    port = free_port()
    agg_root, agg_dir = tmp_path / "agg", fleet.folder()
    aggregator = fleet.start(
        agg_root, agg_dir, aggregator_config("fleet-key"), "--tcp", f"127.0.0.1:{port}"
    )
    edge = fleet.start(
        tmp_path / "edge", fleet.folder(), fluent_output(tmp_path, port, "fleet-key")
    )
    producer = Producer(edge.process.socket)
    total, step = 2000, 50
    for first in range(0, 800, step):
        producer.send(first, step, app="fleet")
        time.sleep(0.01)
    aggregator.process.proc.kill()  # SIGKILL: whatever it had not acked is resent
    aggregator.process.proc.wait()
    for first in range(800, 1400, step):  # down for ~2 s
        producer.send(first, step, app="fleet")
        time.sleep(0.15)
    wait_for(lambda: not edge.output()["connected"], 10)
    assert edge.output()["buffered_records"] >= 600
    aggregator = fleet.start(
        agg_root, agg_dir, aggregator_config("fleet-key"), "--tcp", f"127.0.0.1:{port}"
    )
    for first in range(1400, total, step):
        producer.send(first, step, app="fleet")
        time.sleep(0.01)
    producer.close()
    wait_for(lambda: len(aggregated(agg_root)) == total, 30)
    wait_for(lambda: edge.output()["acked"] == total, 10)

    seen = aggregated(agg_root)
    assert sorted(seen) == list(range(total))
    duplicates = report(record_property, "aggregator", seen)
    # Resends the aggregator already wrote are recognised by their chunk id; only a
    # batch it wrote and was killed before acking can come twice: at most one window.
    assert duplicates <= 8 * step
    out = edge.output()
    assert out["acked"] == total
    assert out["dropped"] == {}
    edge.stop()
    aggregator.stop()


def test_resent_batches_are_written_once_by_a_live_aggregator(tmp_path: Path, fleet: Fleet) -> None:
    """Chunk ids are `<buffer producer id>:<seq>`, stable across the edge's restarts,
    so batches resent after lost acks are recognised by the aggregator and not rewritten."""
    port = free_port()
    agg_root = tmp_path / "agg"
    aggregator = fleet.start(
        agg_root, fleet.folder(), aggregator_config("k"), "--tcp", f"127.0.0.1:{port}"
    )
    edge_dir, config = fleet.folder(), fluent_output(tmp_path, port, "k")
    edge = fleet.start(tmp_path / "edge", edge_dir, config)
    producer = Producer(edge.process.socket)
    for first in range(0, 500, 50):
        producer.send(first, 50, app="fleet")
    producer.close()
    wait_for(lambda: len(aggregated(agg_root)) == 500, 20)
    wait_for(lambda: edge.output()["buffered_records"] == 0, 10)
    edge.stop()
    # As if every ack had been lost: the same batches, under the same seqs, are back in
    # the buffer when the edge starts again.
    folder = tmp_path / "state" / "forward" / "agg"
    high = int((folder / "acked").read_text())
    (folder / "acked").write_text("0\n")
    buffer = DiskBuffer(folder, max_bytes=1 << 20)
    now = time.time_ns()
    records = [(now, {"msg": f"rec-{i:05d}", "run_id": RUN, "app": "fleet"}) for i in range(500)]
    for n in range(high):
        buffer.append([("logd.fleet.record", records[n * 500 // high : (n + 1) * 500 // high])])
    buffer.close()
    edge = fleet.start(tmp_path / "edge", edge_dir, config)
    wait_for(lambda: edge.output()["acked"] == 500, 20)
    producer = Producer(edge.process.socket)
    producer.send(500, 50, app="fleet")
    producer.close()
    wait_for(lambda: len(aggregated(agg_root)) == 550, 20)
    assert set(aggregated(agg_root).values()) == {1}
    assert aggregator.status()["totals"]["duplicates"] == high
    edge.stop()
    aggregator.stop()


def test_wrong_key_is_reported_and_records_wait_in_the_buffer(tmp_path: Path, fleet: Fleet) -> None:
    port = free_port()
    agg_root = tmp_path / "agg"
    aggregator = fleet.start(
        agg_root, fleet.folder(), aggregator_config("right"), "--tcp", f"127.0.0.1:{port}"
    )
    edge_dir = fleet.folder()
    edge = fleet.start(tmp_path / "edge", edge_dir, fluent_output(tmp_path, port, "wrong"))
    producer = Producer(edge.process.socket)
    for first in range(0, 300, 50):
        producer.send(first, 50, app="fleet")
    producer.close()
    wait_for(lambda: "authentication failed" in (edge.output()["last_error"] or ""), 10)
    out = edge.output()
    assert "shared_key" in out["last_error"]
    assert (out["connected"], out["buffered_records"], out["acked"]) == (False, 300, 0)
    assert out["dropped"] == {}
    assert aggregated(agg_root) == Counter()
    assert "wrong shared_key" in aggregator.process.stderr
    edge.stop()
    # The operator fixes the key: what waited in the buffer goes out, none lost.
    edge = fleet.start(tmp_path / "edge", edge_dir, fluent_output(tmp_path, port, "right"))
    wait_for(lambda: len(aggregated(agg_root)) == 300, 20)
    # The aggregator writes a batch before its ack reaches the edge: the buffer empties
    # a moment after the lines appear.
    wait_for(lambda: edge.output()["buffered_records"] == 0, 20)
    assert edge.output()["acked"] == 300
    edge.stop()
    aggregator.stop()


# --- an upstream that is down --------------------------------------------------------------


def test_upstream_down_never_slows_local_writing_and_full_buffer_drops_oldest(
    tmp_path: Path, fleet: Fleet
) -> None:
    closed_port = free_port()  # nothing listens there
    config = forward_config(
        tmp_path / "state",
        f'type = "fluent"\nname = "down"\nport = {closed_port}\nbuffer_max_bytes = "64 KiB"',
    )
    edge = fleet.start(tmp_path / "edge", fleet.folder(), config)
    producer = Producer(edge.process.socket)
    total, step = 5000, 100
    started = time.monotonic()
    for first in range(0, total, step):
        producer.send(first, step, app="fleet", padding="x" * 100)
    elapsed = time.monotonic() - started
    producer.close()
    assert elapsed < 20, f"local ingest took {elapsed:.1f}s while upstream was down"
    local = counts(read_all([tmp_path / "edge" / "fleet" / "runs" / RUN / "main.log"]))
    assert len(local) == total
    out = edge.output()
    assert out["connected"] is False
    assert "Connection refused" in out["last_error"]
    assert 0 < out["buffered_bytes"] <= 64 * 1024
    assert out["dropped"]["buffer-full"] > 0
    assert out["buffered_records"] + out["dropped"]["buffer-full"] == total
    assert out["sent"] == 0
    buffered = sum(
        p.stat().st_size for p in (tmp_path / "state" / "forward" / "down").glob("*.seg")
    )
    assert buffered <= 2 * 64 * 1024
    print(f"local ingest of {total} records with upstream down: {elapsed:.2f}s")
    edge.stop()
