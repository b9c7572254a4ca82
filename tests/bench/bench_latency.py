"""Latency from `emit` to the line being in the file, at a steady rate.

`python -m tests.bench.bench_latency [--quick] [--rate R] [--seconds S] [--rounds R]`

One producer logs `latency <time_ns>` at a steady rate; a reader thread in this process
tails the file (reads new bytes, sleeps 0.5 ms when there are none) and records
`now - embedded` for each line. The FileHandler variant (the producer writes the file
itself) shows the floor of this method: polling and scheduling, not delivery; logd
with `fsync = "none"` shows what the default per-batch fsync adds.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from tests.bench import common
from tests.bench.common import BareServer, Daemon, Producers, Server, X, emit

VARIANTS = ("logd", "logd fsync=none", "bare", "FileHandler")
POLL_S = 0.0005


class Tail(threading.Thread):
    """Reads a growing file and collects the latency of every `latency <ns>` line, in ms."""

    def __init__(self, path: Path, expected: int, timeout: float) -> None:
        super().__init__(daemon=True)
        self.path, self.expected, self.timeout = path, expected, timeout
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        """Poll until every expected line was seen, stopped, or timed out."""
        deadline = time.monotonic() + self.timeout
        while not self.path.exists():
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            time.sleep(POLL_S)
        buffer = b""
        with open(self.path, "rb") as f:
            while len(self.latencies) < self.expected and not self.stop.is_set():
                data = f.read()
                if not data:
                    if time.monotonic() > deadline:
                        return
                    time.sleep(POLL_S)
                    continue
                now = time.time_ns()
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    _, sep, stamp = line.rpartition(b" latency ")
                    if sep:
                        self.latencies.append((now - int(stamp)) / 1e6)


def run_once(variant: str, rate: float, seconds: float) -> list[float]:
    """One producer at `rate` for `seconds`; returns the latencies in ms."""
    count = int(rate * seconds)
    with common.scratch() as folder:
        server: Server | None = None
        if variant == "logd":
            server = Daemon(folder).start()
        elif variant == "logd fsync=none":
            server = Daemon(folder, fsync="none").start()
        elif variant == "bare":
            server = BareServer(folder).start()
        tail: Tail | None = None
        try:
            if server is None:
                path = folder / "file.log"
                argv = ["--sink", "file", "--file", str(path)]
                env = common.child_env(folder=folder)
            else:
                argv = ["--sink", "logd"]
                env = common.child_env(server.address, folder)
            argv += ["--count", str(count), "--rate", str(rate)]

            def start_tail() -> None:
                nonlocal tail
                target = path if server is None else server.main_logs()[0]
                tail = Tail(target, count, timeout=seconds + 60)
                tail.start()

            with Producers([argv], env) as procs:
                procs.run(on_go=start_tail)
            assert tail is not None
            tail.join(timeout=30)
            tail.stop.set()
        finally:
            if server is not None:
                server.stop()
                server.kill()
        if len(tail.latencies) != count:
            raise RuntimeError(f"{variant}: saw {len(tail.latencies)} of {count} lines")
        return tail.latencies


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the table."""
    p = common.parser(__doc__ or "")
    p.add_argument("--rate", type=float, help="records/s (default 10,000; quick 1,000)")
    p.add_argument("--seconds", type=float, help="seconds per run (default 5; quick 0.5)")
    args = p.parse_args(argv)
    rate = args.rate or (1_000.0 if args.quick else 10_000.0)
    seconds = args.seconds or (0.5 if args.quick else 5.0)
    n_rounds = common.rounds(args, full=3)
    emit(common.header("bench_latency: emit -> line in the file", args.quick))
    emit(f"{rate:,.0f} records/s for {seconds:g} s per run, {n_rounds} round(s); ms")
    p50: dict[str, list[float]] = defaultdict(list)
    p99: dict[str, list[float]] = defaultdict(list)
    worst: dict[str, float] = defaultdict(float)
    for r in range(n_rounds):
        order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
        for variant in order:
            lat = run_once(variant, rate, seconds)
            p50[variant].append(common.percentile(lat, 50))
            p99[variant].append(common.percentile(lat, 99))
            worst[variant] = max(worst[variant], max(lat))
            emit(
                f"  round {r + 1}: {variant}: p50 {p50[variant][-1]:.2f}"
                f" p99 {p99[variant][-1]:.2f} max {max(lat):.2f}"
            )
    rows = [
        [
            v,
            common.median(p50[v]),
            common.median(p99[v]),
            worst[v],
            common.median(p99[v]) / common.median(p99["bare"]),
        ]
        for v in VARIANTS
    ]
    emit()
    emit(common.table(["variant", "p50 ms", "p99 ms", "max ms", f"p99 {X}bare"], rows))
    emit("goals:")
    emit(common.goal("logd p99", common.median(p99["logd"]), 20.0, unit=" ms"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
