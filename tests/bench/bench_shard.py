"""Sharding writers across processes (issue 18's last "likely way"), measured.

`python -m tests.bench.bench_shard [--quick] [--records N] [--sessions K] [--rounds R]`

The job of bench_sweep and bench_peers: 4 producers x N records, round-robin over K
sessions (K split evenly between the producers), every record to its run log and its
session's file, with `fsync = "none"` and `"batch"`. Two apps share the work: producers
0 and 1 log as app `shard-a`, 2 and 3 as `shard-b`. Two shapes of the same job:

- `1 daemon`: today's logd, one process taking all four producers;
- `2 shards`: one daemon per app (own root, socket and control socket), i.e. writers
  sharded by app.

Acked records/s from "go" until every producer's flush is acknowledged, daemon CPU per
record summed over the daemons, and how that CPU splits between the trio loop (the main
thread) and the other threads (the writer's trio worker threads, gzip): the split tells
whether cutting one daemon into a loop process and a writer process would help, against
sharding whole daemons. Shapes and modes alternate within each round; ratios (2 shards / 1
daemon) are taken within each round, then their median. Every record is checked once in
its app's run log and once in its session file.

`busy cores` is what the daemons and producers used per second of the run, `others` what
the rest of the machine used meanwhile (the load of other programs; approximate, as the
daemons' CPU is read over a slightly wider span than the producers' wall clock stamps):
on a shared machine it says which runs were disturbed.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.bench import common
from tests.bench.common import Daemon, Producers, X, emit
from tests.bench.peerjob import LOGD_CONFIG, TOKEN

PRODUCERS = 4
APPS = ("shard-a", "shard-b")  # producer n logs as APPS[n * len(APPS) // PRODUCERS]
SHAPES = ("1 daemon", "2 shards")
MODES = ("none", "batch")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Result:
    """One verified run of one shape."""

    rate: float  # acked records/s, "go" to the last flush acknowledged
    daemon_us: float  # CPU µs per record, summed over the daemons
    loop_us: float  # of which the daemons' main threads (the trio loops)
    producer_us: float  # the producers' CPU µs per record (whole processes)
    daemon_cores: float  # the daemons' CPU / wall: under 1 per daemon, no thread is the wall
    busy_cores: float  # (daemons' + producers' CPU) / wall: how full the machine was
    other_cores: float  # the rest of the machine's CPU / wall: others' load disturbing us


def thread_cpu_s(pid: int, tid: int) -> float:
    """utime + stime of one thread, in seconds, from /proc/<pid>/task/<tid>/stat."""
    text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds all cores spent on anything but idle and iowait, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


class MachineSampler:
    """Samples `machine_busy_s()` every 20 ms in a thread, to read the busy CPU of a span.

    The producers time their work with wall clock stamps, and exit (which takes CPU)
    before `Producers.run` returns, so the machine's CPU over exactly that span is
    interpolated from samples rather than read before and after.
    """

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append((time.time(), machine_busy_s()))
            if self._stop.wait(0.02):
                self.samples.append((time.time(), machine_busy_s()))
                return

    def at(self, when: float) -> float:
        """The machine's busy CPU seconds at wall time `when`, linearly interpolated."""
        times = [t for t, _ in self.samples]
        i = min(max(1, bisect.bisect_left(times, when)), len(times) - 1)
        (t0, v0), (t1, v1) = self.samples[i - 1], self.samples[i]
        return v0 + (v1 - v0) * (when - t0) / (t1 - t0) if t1 > t0 else v1

    def __enter__(self) -> MachineSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def app_of(n: int) -> int:
    """The app (and, sharded, the daemon) of producer `n`: 0,1 -> 0; 2,3 -> 1."""
    return n * len(APPS) // PRODUCERS


def run_once(shape: str, fsync: str, per: int, sessions: int) -> Result:
    """Run the job once in `shape`; raise if a record is missing, doubled or misplaced."""
    total = PRODUCERS * per
    share = max(1, sessions // PRODUCERS)
    with common.scratch() as folder, contextlib.ExitStack() as stack:
        count = len(APPS) if shape == "2 shards" else 1
        daemons: list[Daemon] = []
        for i in range(count):
            (folder / f"d{i}").mkdir()
            daemon = Daemon(folder / f"d{i}", fsync=fsync, config_text=LOGD_CONFIG)
            daemons.append(stack.enter_context(daemon))
        argvs = []
        for n in range(PRODUCERS):
            target = daemons[app_of(n) % count]
            argv = ["--sink", "logd", "--count", str(per), "--tag", f"p{n}-"]
            argv += ["--app", APPS[app_of(n)], "--address", target.address]
            argv += ["--sessions", str(share), "--id-base", str(n * share)]
            argvs.append(argv)

        def readings() -> list[tuple[float, float]]:
            return [(common.proc_cpu_s(d.pid), thread_cpu_s(d.pid, d.pid)) for d in daemons]

        before: list[list[tuple[float, float]]] = []
        env = common.child_env(folder=folder)
        with MachineSampler() as machine, Producers(argvs, env) as procs:
            results = procs.run(on_go=lambda: before.append(readings()))
            after = readings()
        for d in daemons:
            d.stop()
        if not all(r["flushed"] for r in results) or any(r["dropped"] for r in results):
            raise RuntimeError(f"{shape} {fsync}: a flush timed out or records were dropped")
        verify(f"{shape} {fsync}", daemons, per, share)
    start, end = min(r["start"] for r in results), max(r["end"] for r in results)
    wall = end - start
    daemon_s = sum(a[0] - b[0] for a, b in zip(after, before[0], strict=True))
    loop_s = sum(a[1] - b[1] for a, b in zip(after, before[0], strict=True))
    producer_s = sum(r["cpu_s"] for r in results)
    return Result(
        rate=total / wall,
        daemon_us=daemon_s / total * 1e6,
        loop_us=loop_s / total * 1e6,
        producer_us=producer_s / total * 1e6,
        daemon_cores=daemon_s / wall,
        busy_cores=(daemon_s + producer_s) / wall,
        other_cores=(machine.at(end) - machine.at(start) - daemon_s - producer_s) / wall,
    )


def verify(label: str, daemons: list[Daemon], per: int, share: int) -> None:
    """Every record once in its app's run log and once in its own session's file."""
    expected = {f"p{n}-{i}" for n in range(PRODUCERS) for i in range(per)}
    problems: list[str] = []
    for what, found in (
        ("run logs", _run_log_tokens(daemons)),
        ("sessions", _session_tokens(daemons)),
    ):
        counts = Counter(token for token, _ in found)
        misplaced = sum(1 for token, where in found if where != _home(token, share, what))
        missing = sum(1 for t in expected if t not in counts)
        extra = sum(1 for t in counts if t not in expected)
        doubled = sum(1 for n in counts.values() if n > 1)
        if missing or extra or doubled or misplaced:
            problems.append(
                f"{what}: {missing:,} missing, {extra:,} unexpected, {doubled:,} twice, "
                f"{misplaced:,} in the wrong app or session"
            )
    if problems:
        raise RuntimeError(f"{label}: " + "; ".join(problems))


def _home(token: str, share: int, what: str) -> str:
    """Where record `pN-i` belongs: its app, and with sessions its session id too."""
    n, i = (int(x) for x in token[1:].split("-"))
    app = APPS[app_of(n)]
    return app if what == "run logs" else f"{app}/s{n * share + i % share}"


def _run_log_tokens(daemons: list[Daemon]) -> list[tuple[str, str]]:
    found = []
    for d in daemons:
        for app in APPS:
            for path in sorted((d.root / app).glob("runs/*/main.log")):
                if not path.parent.is_symlink():
                    found += [(t, app) for t in _tokens(path)]
    return found


def _session_tokens(daemons: list[Daemon]) -> list[tuple[str, str]]:
    found = []
    for d in daemons:
        for app in APPS:
            for path in sorted((d.root / app).glob("sessions/session_*.jsonl*")):
                session = path.name.removeprefix("session_").split(".jsonl")[0]
                found += [(t, f"{app}/{session}") for t in _tokens(path)]
    return found


def _tokens(path: Path) -> Iterator[str]:
    with open(path, "rb") as f:
        for line in f:
            if (found := TOKEN.search(line)) is not None:
                yield found.group(1).decode()


def main(argv: list[str] | None = None) -> int:
    """Run the rounds; print every run, the table, the per-round ratios and the thread split."""
    p = common.parser(__doc__ or "")
    p.add_argument("--records", type=int, help="records per producer (default 50,000)")
    p.add_argument("--sessions", type=int, default=100, help="sessions in all (default 100)")
    args = p.parse_args(argv)
    per = args.records or (500 if args.quick else 50_000)
    n_rounds = common.rounds(args, full=3)
    emit(common.header("bench_shard: 1 daemon against 2 daemons sharded by app", args.quick))
    emit(
        f"{PRODUCERS} producers {X} {per:,} records, {args.sessions:,} sessions split between "
        f"them, apps {APPS[0]} (producers 0,1) and {APPS[1]} (2,3), {n_rounds} round(s); "
        "every run verified record by record"
    )
    runs: dict[tuple[str, str], list[Result]] = defaultdict(list)
    cases = [(shape, fsync) for fsync in MODES for shape in SHAPES]
    for r in range(n_rounds):
        for shape, fsync in cases if r % 2 == 0 else cases[::-1]:
            res = run_once(shape, fsync, per, args.sessions)
            runs[shape, fsync].append(res)
            emit(
                f"  round {r + 1}: {shape:<8} fsync={fsync:<5} {res.rate:>9,.0f} rec/s  "
                f"daemons {res.daemon_us:5.1f} µs/rec (loop {res.loop_us:4.1f}, "
                f"{res.daemon_cores:.2f} cores)  "
                f"producers {res.producer_us:5.1f} µs/rec  busy {res.busy_cores:.2f} cores "
                f"(others {res.other_cores:.2f})"
            )
    emit()
    rows = []
    for fsync in MODES:
        for shape in SHAPES:
            got = runs[shape, fsync]
            daemon = common.median([x.daemon_us for x in got])
            loop = common.median([x.loop_us for x in got])
            rows.append(
                [
                    fsync,
                    shape,
                    common.median([x.rate for x in got]),
                    min(x.rate for x in got),
                    max(x.rate for x in got),
                    daemon,
                    loop / daemon if daemon else float("nan"),
                    common.median([x.daemon_cores for x in got]),
                    common.median([x.producer_us for x in got]),
                    common.median([x.busy_cores for x in got]),
                    common.median([x.other_cores for x in got]),
                ]
            )
    emit(
        common.table(
            [
                "fsync",
                "shape",
                "rec/s med",
                "min",
                "max",
                "daemons µs/rec",
                "loop share",
                "daemon cores",
                "producers µs/rec",
                "busy cores",
                "others",
            ],
            rows,
        )
    )
    emit()
    emit("2 shards / 1 daemon, per round (median; rounds in brackets):")
    for fsync in MODES:
        pairs = list(zip(runs["2 shards", fsync], runs["1 daemon", fsync], strict=True))
        rate = [a.rate / b.rate for a, b in pairs]
        cpu = [a.daemon_us / b.daemon_us for a, b in pairs]
        emit(
            f"  fsync={fsync:<5} rec/s {common.median(rate):.2f}{X} "
            f"[{', '.join(f'{x:.2f}' for x in rate)}]  daemon µs/rec "
            f"{common.median(cpu):.2f}{X} [{', '.join(f'{x:.2f}' for x in cpu)}]"
        )
    emit("goals: none set (issue 18 asks for a measured sketch); see the ratios above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
