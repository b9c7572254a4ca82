"""Daemon throughput: 1 and 4 producers, real client, real daemon, until all is acked.

`python -m tests.bench.bench_throughput [--quick] [--records N] [--rounds R] [--profile F]`

Each run starts a fresh server (logd with default routing and fsync, or the bare
reference server), starts the producers, times from "go" until every producer's
`flush()` returned True, stops the server and counts the lines on disk. Servers are
alternated within each round; the table shows medians over the rounds.
"""

from __future__ import annotations

import pstats
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from tests.bench import common
from tests.bench.common import BareServer, Daemon, Producers, Server, X, emit

SERVERS: dict[str, Callable[[Path], Server]] = {
    "logd": lambda folder: Daemon(folder),
    "bare": lambda folder: BareServer(folder),
}


def run_once(kind: str, producers: int, total: int) -> tuple[float, float]:
    """One timed run; returns (records/s, server CPU µs per record)."""
    per = total // producers
    with common.scratch() as folder, SERVERS[kind](folder) as server:
        cpu: list[float] = []
        argvs = [["--sink", "logd", "--count", str(per)] for _ in range(producers)]
        with Producers(argvs, common.child_env(server.address, folder)) as procs:
            results = procs.run(on_go=lambda: cpu.append(common.proc_cpu_s(server.pid)))
        cpu.append(common.proc_cpu_s(server.pid))
        server.stop()
        wall = max(r["end"] for r in results) - min(r["start"] for r in results)
        dropped = sum(r["dropped"] for r in results)
        lines = common.count_lines(server.main_logs())
        if dropped or lines != per * producers:
            raise RuntimeError(f"{kind}: {lines} lines on disk, {dropped} dropped")
    return per * producers / wall, (cpu[1] - cpu[0]) / (per * producers) * 1e6


def profile(prefix: Path, total: int, producers: int = 4) -> None:
    """Run logd under cProfile (event loop and writer thread) and print the top functions."""
    per = total // producers
    with common.scratch() as folder, Daemon(folder, profile=prefix) as daemon:
        argvs = [["--sink", "logd", "--count", str(per)] for _ in range(producers)]
        with Producers(argvs, common.child_env(daemon.address, folder)) as procs:
            procs.run()
    emit(f"\ncProfile of logd, {total:,} records from {producers} producers ({prefix}.*.prof)")
    for part in ("loop", "writer"):
        stats = pstats.Stats(f"{prefix}.{part}.prof")
        emit(f"\n-- {part}: top 15 cumulative, functions of logd/ and logd_client/")
        stats.sort_stats("cumulative").print_stats(r"logd(_client)?/", 15)
        emit(f"-- {part}: top 15 by own time, any function")
        stats.sort_stats("tottime").print_stats(15)


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the table."""
    p = common.parser(__doc__ or "")
    p.add_argument("--records", type=int, help="records per run (default 1,000,000)")
    p.add_argument("--profile", type=Path, help="also profile logd (path prefix)")
    args = p.parse_args(argv)
    total = args.records or (20_000 if args.quick else 1_000_000)
    n_rounds = common.rounds(args, full=3)
    emit(common.header("bench_throughput: records/s into the daemon until acked", args.quick))
    emit(f"{total:,} records per run, {n_rounds} round(s), logd with fsync=batch (default)")
    rates: dict[tuple[int, str], list[float]] = defaultdict(list)
    cpus: dict[tuple[int, str], list[float]] = defaultdict(list)
    kinds = list(SERVERS)
    for r in range(n_rounds):
        for producers in (1, 4):
            order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]
            for kind in order:
                rate, cpu = run_once(kind, producers, total)
                rates[producers, kind].append(rate)
                cpus[producers, kind].append(cpu)
                emit(f"  round {r + 1}: {producers} producer(s) -> {kind}: {rate:,.0f} rec/s")
    rows = []
    goals = []
    for producers in (1, 4):
        bare = common.median(rates[producers, "bare"])
        for kind in kinds:
            rs = rates[producers, kind]
            med = common.median(rs)
            rows.append(
                [
                    producers,
                    kind,
                    med,
                    min(rs),
                    max(rs),
                    med / bare,
                    common.median(cpus[producers, kind]),
                ]
            )
        ratio = common.median(rates[producers, "logd"]) / bare
        goals.append(common.goal(f"logd/bare, {producers} producer(s)", ratio, 0.8, at_most=False))
    emit()
    emit(
        common.table(
            ["producers", "server", "rec/s med", "min", "max", f"{X}bare", "srv µs/rec"], rows
        )
    )
    emit("goals:")
    for line in goals:
        emit(line)
    if args.profile:
        profile(args.profile, total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
