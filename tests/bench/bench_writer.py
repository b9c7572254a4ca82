"""The writer alone: `Engine.process`'s CPU per record against live sessions.

`python -m tests.bench.bench_writer [--quick] [--rounds R] [--counts 1,100,...]`

No sockets and no producers: the messages the sweep's 4 producers would send (2,920
records each, round-robin over each producer's K/4 sessions), already decoded, two
producers' messages per batch, `fsync = "batch"`, every session live before the clock
starts. What the sweep's ratio is made of, without the producers' and the event loop's
share: how much each (file, batch) pair costs the writer. Thread CPU and wall time per
record, medians over the rounds.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

from logd_client import wire

from logd.index.states import Peer
from logd.write.engine import Engine
from logd.write.jobs import Ingest
from tests.bench import common
from tests.bench.common import X, emit
from tests.helpers import make_config

PRODUCERS = 4
PER_MESSAGE = 2920  # what logd's client puts in one message in the sweep (1 MiB estimated)


def _message(producer: int, first: int, share: int, t0: int) -> wire.Entries:
    base = {
        "level": "INFO",
        "logger": "bench.worker",
        "app": "bench",
        "run_id": f"run-p{producer}",
        "pid": 4242 + producer,
        "thread": 1402,
        "thread_name": "MainThread",
    }
    entries = [
        (
            t0 + n * 10_000,
            {
                **base,
                "session_id": f"s{producer}-{n % share}",
                "msg": f"processing request p{producer}-{n} token",
            },
        )
        for n in range(first, first + PER_MESSAGE)
    ]
    return wire.Entries("bench", entries, {}, [])


def run_once(k: int, batches: int, folder: Path) -> tuple[float, float, float]:
    """(CPU µs per record, wall µs per record, (file, batch) pairs per record)."""
    engine = Engine(make_config(folder / "root", folder))
    try:
        peers = [Peer(n + 1, "unix", pid=4242 + n) for n in range(PRODUCERS)]
        share = max(1, k // PRODUCERS)
        t0 = time.time_ns()
        # Every session live before the clock: one message from each producer.
        engine.process([Ingest(peers[p], [_message(p, 0, share, t0)]) for p in range(PRODUCERS)])
        pairs = 0
        cpu = wall = 0.0
        for b in range(batches):
            pair = (0, 1) if b % 2 == 0 else (2, 3)
            first = (b // 2 + 1) * PER_MESSAGE
            jobs = [Ingest(peers[p], [_message(p, first, share, t0)]) for p in pair]
            c0, w0 = time.thread_time(), time.perf_counter()
            engine.process(jobs)
            cpu += time.thread_time() - c0
            wall += time.perf_counter() - w0
            pairs += 2 * min(share, PER_MESSAGE) + 2  # session files and the two run logs
        records = batches * 2 * PER_MESSAGE
        return cpu / records * 1e6, wall / records * 1e6, pairs / records
    finally:
        engine.close()


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the table."""
    p = common.parser(__doc__ or "")
    p.add_argument("--counts", default=None, help="comma-separated K (default 1,100,1000)")
    args = p.parse_args(argv)
    counts = [int(c) for c in (args.counts or "1,100,1000").split(",")]
    batches = 6 if args.quick else 60
    n_rounds = common.rounds(args, full=3)
    title = "bench_writer: Engine.process CPU per record against live sessions"
    emit(common.header(title, args.quick))
    emit(
        f"{PRODUCERS} producers' messages of {PER_MESSAGE} records, 2 a batch, {batches} "
        f"batches, {n_rounds} round(s)"
    )
    cpus: dict[int, list[float]] = defaultdict(list)
    walls: dict[int, list[float]] = defaultdict(list)
    pairs: dict[int, float] = {}
    for r in range(n_rounds):
        for k in counts:
            with common.scratch() as folder:
                cpu, wall, per = run_once(k, batches, folder)
            cpus[k].append(cpu)
            walls[k].append(wall)
            pairs[k] = per
            emit(f"  round {r + 1}: {k:>6,} sessions  cpu {cpu:5.2f} µs/rec  wall {wall:5.2f}")
    base = common.median(cpus[counts[0]])
    rows = []
    for k in counts:
        cpu = common.median(cpus[k])
        extra = (cpu - base) / (pairs[k] - pairs[counts[0]]) if k != counts[0] else 0.0
        rows.append([k, cpu, common.median(walls[k]), pairs[k], cpu / base, extra])
    emit()
    emit(
        common.table(
            ["K", "cpu µs/rec", "wall µs/rec", "pairs/rec", f"cpu {X}K=1", "µs per extra pair"],
            rows,
        )
    )
    emit("goals: none here; the sweep's goal 3 is what this explains (README, Performance)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
