"""One run of the peer job on one system, verified line by line: the peer benchmarks' core.

The job (issue 18): producers log N records each, round-robin over K sessions; the
collector writes every record to one run log and to its session's file. A run starts a
fresh collector, times from "go" until every record is on disk (logd: every producer's
`flush()` acknowledged; rsyslog and syslog-ng, which ack nothing: the run log holds every
line), then stops it and checks both outputs record by record: every `TAG-i` exactly once
in the run log, and in the right session's file.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.bench import common
from tests.bench.common import APP, Daemon, Producers, Server
from tests.bench.peers import Peer, Rsyslog, SyslogNg

# Every record in one file per kind, and no per-logger file: the job is run log + session.
# No rotation inside a run: every record is counted in the live files afterwards.
LOGD_CONFIG = (
    '[rotation.session]\nmax_bytes = "64 GiB"\n[rotation.call]\nmax_bytes = "64 GiB"\n'
    "[layout]\ncomponent_files = false\n"
)
TOKEN = re.compile(rb"processing request (p\d+-\d+)")


@dataclass(frozen=True)
class System:
    """A collector set-up: its label, how to start it, and which producer sinks feed it."""

    label: str
    start: Callable[[Path, int], Server]
    sinks: tuple[str, ...]


def _logd(fsync: str) -> Callable[[Path, int], Server]:
    return lambda folder, _sessions: Daemon(folder, fsync=fsync, config_text=LOGD_CONFIG)


SYSTEMS = (
    System("logd none", _logd("none"), ("logd",)),
    System("logd batch", _logd("batch"), ("logd",)),
    System("rsyslog", lambda f, k: Rsyslog(f, sessions=k), ("syslog", "batched")),
    System("rsyslog sync", lambda f, k: Rsyslog(f, sync=True, sessions=k), ("syslog", "batched")),
    System("syslog-ng", lambda f, k: SyslogNg(f, sessions=k), ("syslog", "batched")),
    System(
        "syslog-ng fsync", lambda f, k: SyslogNg(f, sync=True, sessions=k), ("syslog", "batched")
    ),
)


@dataclass(frozen=True)
class Result:
    """One verified run."""

    rate: float  # records/s, "go" to all on disk
    server_us: float  # collector CPU µs per record
    client_us: float  # producers' CPU µs per record (their whole processes)


def run(system: System, sink: str, *, producers: int, per: int, sessions: int) -> Result:
    """Run the job once on `system` fed by `sink` producers; raise if anything is missing."""
    total = producers * per
    with common.scratch() as folder, system.start(folder, sessions) as server:
        argvs = []
        for n in range(producers):
            argv = ["--sink", sink, "--count", str(per), "--tag", f"p{n}-"]
            argv += ["--sessions", str(sessions)]
            if sink != "logd":
                argv += ["--file", str(server.socket)]
            argvs.append(argv)
        cpu: list[float] = []
        env = common.child_env(server.address, folder)
        with Producers(argvs, env) as procs:
            results = procs.run(on_go=lambda: cpu.append(common.proc_cpu_s(server.pid)))
        start = min(r["start"] for r in results)
        if isinstance(server, Peer):
            end = _wait_for_lines(server.run_log(), total, server)
        else:
            end = max(r["end"] for r in results)
            dropped = sum(r["dropped"] for r in results)
            if dropped or not all(r["flushed"] for r in results):
                raise RuntimeError(f"{system.label}: {dropped} dropped, or a flush timed out")
        cpu.append(common.proc_cpu_s(server.pid))
        server.stop()
        run_log, session_files = _outputs(server)
        verify(system.label, run_log, session_files, producers, per, sessions)
    client = sum(r["cpu_s"] for r in results)
    return Result(total / (end - start), (cpu[1] - cpu[0]) / total * 1e6, client / total * 1e6)


def _outputs(server: Server) -> tuple[list[Path], list[Path]]:
    if isinstance(server, Peer):
        return [server.run_log()], server.session_files()
    assert isinstance(server, Daemon)
    sessions = sorted((server.root / APP / "sessions").glob("session_*.jsonl*"))
    return server.main_logs(), sessions


def _wait_for_lines(path: Path, total: int, server: Server, timeout: float = 900.0) -> float:
    """Poll `path` (reading only what is new) until it has `total` lines; the time then."""
    deadline = time.monotonic() + timeout
    seen = offset = 0
    while True:
        if path.exists():
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            seen += chunk.count(b"\n")
            offset += len(chunk)
        if seen >= total:
            return time.time()
        if time.monotonic() > deadline or (server.proc and server.proc.poll() is not None):
            raise RuntimeError(f"{server.name}: {seen:,} of {total:,} lines\n{server.stderr()}")
        time.sleep(0.02)


def expected_session(token: str, sessions: int) -> str:
    """The session a record `pN-i` was logged in: `s<i mod K>`."""
    return f"s{int(token.rsplit('-', 1)[1]) % sessions}"


def verify(
    label: str,
    run_log: list[Path],
    session_files: list[Path],
    producers: int,
    per: int,
    sessions: int,
) -> None:
    """Every record exactly once in the run log and once in its own session's file."""
    expected = {f"p{n}-{i}" for n in range(producers) for i in range(per)}
    problems: list[str] = []
    counts = Counter(t.decode() for t in _tokens(run_log))
    _compare(problems, "run log", counts, expected)
    in_sessions: Counter[str] = Counter()
    wrong = 0
    for path in session_files:
        for line in _lines(path):
            item = json.loads(line)
            found = TOKEN.search(item["msg"].encode())
            if found is None:
                continue
            token = found.group(1).decode()
            in_sessions[token] += 1
            if item["session_id"] != expected_session(token, sessions):
                wrong += 1
    _compare(problems, "session files", in_sessions, expected)
    if wrong:
        problems.append(f"session files: {wrong:,} records in another session's file")
    names = {p.name.split(".jsonl")[0] for p in session_files}
    if len(names) != min(sessions, per):
        problems.append(f"{len(names):,} session files for {sessions:,} sessions")
    if problems:
        raise RuntimeError(f"{label}: " + "; ".join(problems))


def _compare(problems: list[str], what: str, counts: Counter[str], expected: set[str]) -> None:
    missing = [t for t in expected if t not in counts]
    extra = [t for t in counts if t not in expected]
    doubled = [t for t, n in counts.items() if n > 1]
    if missing or extra or doubled:
        problems.append(
            f"{what}: {len(missing):,} missing (e.g. {sorted(missing)[:3]}), "
            f"{len(extra):,} unexpected (e.g. {extra[:3]}), {len(doubled):,} twice "
            f"(e.g. {doubled[:3]})"
        )


def _lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from f


def _tokens(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        for line in _lines(path):
            found = TOKEN.search(line)
            if found is not None:
                yield found.group(1)
