"""Total CPU per record: producers + daemon, against each producer writing its own file.

`python -m tests.bench.bench_cpu [--quick] [--records N] [--rounds R]`

Producer CPU is `getrusage(RUSAGE_SELF)` (all threads) from "go" until `flush()`
returned; server CPU is utime+stime from /proc/<pid>/stat over the same span. The
FileHandler variant writes the same main.log line format to one file per producer.
The bare reference server is shown too. Variants alternate within each round.
"""

from __future__ import annotations

import sys
from collections import defaultdict

from tests.bench import common
from tests.bench.common import BareServer, Daemon, Producers, Server, X, emit

VARIANTS = ("logd", "bare", "FileHandler")


def run_once(variant: str, producers: int, total: int) -> tuple[float, float]:
    """One run; returns (client, server) CPU µs per record."""
    per = total // producers
    with common.scratch() as folder:
        if variant == "FileHandler":
            argvs = [
                ["--sink", "file", "--file", str(folder / f"p{i}.log"), "--count", str(per)]
                for i in range(producers)
            ]
            with Producers(argvs, common.child_env(folder=folder)) as procs:
                results = procs.run()
            lines = common.count_lines(folder.glob("p*.log"))
            server_s = 0.0
        else:
            server: Server = Daemon(folder) if variant == "logd" else BareServer(folder)
            with server:
                cpu: list[float] = []
                argvs = [["--sink", "logd", "--count", str(per)] for _ in range(producers)]
                with Producers(argvs, common.child_env(server.address, folder)) as procs:
                    results = procs.run(on_go=lambda: cpu.append(common.proc_cpu_s(server.pid)))
                cpu.append(common.proc_cpu_s(server.pid))
                server.stop()
                lines = common.count_lines(server.main_logs())
                server_s = cpu[1] - cpu[0]
        if lines != per * producers or any(r["dropped"] for r in results):
            raise RuntimeError(f"{variant}: {lines} of {per * producers} lines on disk")
    n = per * producers
    return sum(r["cpu_s"] for r in results) / n * 1e6, server_s / n * 1e6


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the table."""
    p = common.parser(__doc__ or "")
    p.add_argument("--records", type=int, help="records per run (default 200,000)")
    args = p.parse_args(argv)
    total = args.records or (10_000 if args.quick else 200_000)
    n_rounds = common.rounds(args, full=5)
    emit(common.header("bench_cpu: CPU per record, producers + server", args.quick))
    emit(f"{total:,} records per run, {n_rounds} round(s); CPU in µs per record")
    client: dict[tuple[int, str], list[float]] = defaultdict(list)
    server: dict[tuple[int, str], list[float]] = defaultdict(list)
    for r in range(n_rounds):
        for producers in (1, 4):
            order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
            for variant in order:
                c, s = run_once(variant, producers, total)
                client[producers, variant].append(c)
                server[producers, variant].append(s)
                emit(f"  round {r + 1}: {producers} x {variant}: client {c:.2f} + server {s:.2f}")
    rows: list[list[object]] = []
    goals = []
    for producers in (1, 4):
        totals = {
            v: common.median(
                [a + b for a, b in zip(client[producers, v], server[producers, v], strict=True)]
            )
            for v in VARIANTS
        }
        for v in VARIANTS:
            key = (producers, v)
            c, s = common.median(client[key]), common.median(server[key])
            rows.append([producers, v, c, s, totals[v], totals[v] / totals["FileHandler"]])
        ratio = totals["logd"] / totals["FileHandler"]
        goals.append(common.goal(f"logd/FileHandler, {producers} producer(s)", ratio, 1.0))
    emit()
    emit(common.table(["producers", "variant", "client", "server", "total", f"{X}File"], rows))
    emit("goals:")
    for line in goals:
        emit(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
