"""A producer process for the benchmarks: logs N records, through logd or a FileHandler.

`python -m tests.bench.producer --sink logd|file [--file F] --count N [--rate R]`

Protocol with the parent (`common.Producers`): after a warm-up it prints `ready`, waits
for `go` on stdin, logs, waits for every acknowledgement (logd), then prints one JSON line:
start/end wall times, CPU seconds of the whole process (all threads) over that span,
dropped and acknowledged record counts.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time

from tests.bench.common import APP

LINE_FORMAT = "[in-progress] - %(asctime)s - %(name)s - %(levelname)s - %(message)s"


def cpu_s() -> float:
    """User + system CPU of this process (every thread), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def transport_stats() -> tuple[int, int, int]:
    """(held, dropped, acked) summed over the process's logd transports."""
    from logd_client.transport import shared_transports

    held = dropped = acked = 0
    for transport in shared_transports():
        s = transport.statistics()
        held += s.queued_records + s.inflight_records
        dropped += s.dropped_records
        acked += s.acked_records
    return held, dropped, acked


def main() -> int:
    """Parse the arguments, warm up, wait for `go`, log, report."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sink", choices=("logd", "file"), required=True)
    p.add_argument("--file", help="the FileHandler's file (sink file)")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--logger", default=f"{APP}.worker")
    p.add_argument("--rate", type=float, default=0.0, help="records/s, embedding time_ns")
    p.add_argument(
        "--high-water",
        type=int,
        default=50_000,
        help="logd sink: pause while this many records are held (keeps the queue from dropping)",
    )
    args = p.parse_args()
    log = logging.getLogger(args.logger)
    if args.sink == "logd":
        import logd_client as logd

        logd.install(app=APP)
    else:
        handler = logging.FileHandler(args.file, encoding="utf-8")
        handler.setFormatter(logging.Formatter(LINE_FORMAT))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    log.info("warm-up")
    if args.sink == "logd" and not logd.flush(30):
        print("warm-up not acknowledged", file=sys.stderr)
        return 2
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 2
    start, cpu0 = time.time(), cpu_s()
    if args.rate > 0:
        paced(log, args.count, args.rate)
    elif args.sink == "logd":
        check = 1024
        for i in range(args.count):
            log.info("processing request %d", i)
            if i % check == 0:
                while transport_stats()[0] > args.high_water:
                    time.sleep(0.0005)
    else:
        for i in range(args.count):
            log.info("processing request %d", i)
    flushed = True
    if args.sink == "logd":
        flushed = logd.flush(600)
    end, cpu1 = time.time(), cpu_s()
    _, dropped, acked = transport_stats() if args.sink == "logd" else (0, 0, 0)
    result = {
        "start": start,
        "end": end,
        "cpu_s": cpu1 - cpu0,
        "flushed": flushed,
        "dropped": dropped,
        "acked": acked,
    }
    print(json.dumps(result), flush=True)
    return 0 if flushed else 3


def paced(log: logging.Logger, count: int, rate: float) -> None:
    """Log `count` records at `rate`/s, each message carrying its emit time in ns."""
    t0 = time.perf_counter()
    sent = 0
    while sent < count:
        due = min(count, int((time.perf_counter() - t0) * rate) + 1)
        while sent < due:
            log.info("latency %d", time.time_ns())
            sent += 1
        time.sleep(0.0002)


if __name__ == "__main__":
    sys.exit(main())
