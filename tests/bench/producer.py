"""A producer process for the benchmarks: logs N records, through logd or a FileHandler.

`python -m tests.bench.producer --sink logd|file|syslog|batched [--file F] --count N [--rate R]
[--app A] [--address unix:/path]`

`--sessions K` (or `--calls K`) spreads the records round-robin over K sessions (calls),
each with its own `contextvars.Context` entered once, as a server would run each
conversation in its own task; `syslog` and `batched` send RFC 5424 lines to `--file`, a
Unix stream socket (`tests.bench.rfc5424`) and do not wait for anything at the end.

Protocol with the parent (`common.Producers`): after a warm-up it prints `ready`, waits
for `go` on stdin, logs, waits for every acknowledgement (logd), then prints one JSON line:
start/end wall times, CPU seconds of the whole process (all threads) over that span,
dropped and acknowledged record counts.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import logging
import resource
import sys
import time

from tests.bench import rfc5424
from tests.bench.common import APP

LINE_FORMAT = "[in-progress] - %(asctime)s - %(name)s - %(levelname)s - %(message)s"


def cpu_s() -> float:
    """User + system CPU of this process (every thread), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def transport_stats() -> tuple[int, int, int]:
    """(held, dropped, acked) summed over the process's logd transports."""
    from logd_client.shared import shared_transports

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
    p.add_argument("--sink", choices=("logd", "file", "syslog", "batched"), required=True)
    p.add_argument("--file", help="the FileHandler's file, or the peer's socket")
    p.add_argument("--tag", default="", help="messages read `processing request TAG-i`")
    p.add_argument("--sessions", type=int, default=0, help="round-robin over K sessions")
    p.add_argument("--calls", type=int, default=0, help="round-robin over K calls (logd)")
    p.add_argument("--id-base", type=int, default=0, help="ids start at s<BASE> (c<BASE>)")
    p.add_argument("--count", type=int, required=True)
    p.add_argument(
        "--warm",
        action="store_true",
        help="one line in each session before `ready`: time live sessions, not their start",
    )
    p.add_argument("--logger", default=f"{APP}.worker")
    p.add_argument("--app", default=APP, help="logd sink: the app name (default %(default)s)")
    p.add_argument("--address", help="logd sink: the daemon's address (default: LOGD_ADDRESS)")
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

        logd.install(app=args.app, address=args.address)
    elif args.sink in ("syslog", "batched"):
        make = rfc5424.syslog_handler if args.sink == "syslog" else rfc5424.BatchedHandler
        root = logging.getLogger()
        root.addHandler(make(args.file, APP))
        root.setLevel(logging.INFO)
    else:
        handler = logging.FileHandler(args.file, encoding="utf-8")
        handler.setFormatter(logging.Formatter(LINE_FORMAT))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    contexts = contexts_for(args)
    if args.sink not in ("syslog", "batched"):  # no warm-up line in the peers' files
        log.info("warm-up")
        if args.warm:
            for context in contexts:
                context.run(log.info, "warm-up")
    if args.sink == "logd" and not logd.flush(30):
        print("warm-up not acknowledged", file=sys.stderr)
        return 2
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 2
    start, cpu0 = time.time(), cpu_s()
    if args.rate > 0:
        paced(log, args.count, args.rate)
    elif contexts:
        spread(log, args, contexts)
    elif args.sink == "logd":
        for i in range(0, args.count, CHECK_EVERY):
            for j in range(i, min(args.count, i + CHECK_EVERY)):
                log.info("processing request %s%d", args.tag, j)
            hold_back(args.high_water)
    else:
        for i in range(args.count):
            log.info("processing request %s%d", args.tag, i)
    flushed = True
    if args.sink == "logd":
        flushed = logd.flush(600)
    else:
        logging.shutdown()  # the batched handler sends its last buffer
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


CHECK_EVERY = 1024
NAP_S = 0.01


def hold_back(high_water: int) -> None:
    """Wait while the client holds more than `high_water` records, down to half of it.

    One look per 1,024 records and 10 ms naps: polling `statistics()` every 0.5 ms took
    enough CPU from the daemon on 2 shared cores to halve what it could take in.
    """
    if transport_stats()[0] <= high_water:
        return
    while transport_stats()[0] > high_water // 2:
        time.sleep(NAP_S)


def contexts_for(args: argparse.Namespace) -> list[contextvars.Context]:
    """One context per session (call), entered once, or none without --sessions/--calls."""
    count = args.calls or args.sessions
    contexts = [contextvars.copy_context() for _ in range(count)]
    for k, context in enumerate(contexts):
        context.run(enter, args, args.id_base + k)
    return contexts


def enter(args: argparse.Namespace, k: int) -> None:
    """Enter session (call) `k` in the current context."""
    if args.sink in ("syslog", "batched"):
        rfc5424.SESSION.set(f"s{k}")
        return
    import logd_client as logd

    if args.calls:  # left open: its call:end would add one event per call to the run
        logd.call(f"c{k}", bot_id="bench").__enter__()
    else:
        logd.session(f"s{k}").__enter__()


def spread(
    log: logging.Logger, args: argparse.Namespace, contexts: list[contextvars.Context]
) -> None:
    """Log `count` records round-robin over the contexts, holding back like the plain loop."""
    k = len(contexts)
    logd_sink = args.sink == "logd"
    for i in range(0, args.count, CHECK_EVERY):
        for j in range(i, min(args.count, i + CHECK_EVERY)):
            contexts[j % k].run(log.info, "processing request %s%d", args.tag, j)
        if logd_sink:
            hold_back(args.high_water)


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
