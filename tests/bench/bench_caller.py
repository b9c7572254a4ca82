"""Caller cost: µs per `logger.info("processing request %d", i)` on the calling thread.

`python -m tests.bench.bench_caller [--quick] [--calls N] [--rounds R]`

Every (variant, round) runs in a fresh process with its handler on the root logger and
a child logger propagating to it, as an app configured by `basicConfig` or
`logd.install()` would be. A warm-up of 1,000 calls (connection, threads, caches) is not
timed. The background work of QueueListener and of logd's sender thread shares the
GIL with the caller and shows up in its time, as it would in an app. The FluentHandler
and LogdHandler send to one running logd (TCP and Unix socket).
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import queue
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.bench import common
from tests.bench.common import APP, Daemon, X, emit

VARIANTS = (
    "NullHandler",
    "FileHandler",
    "QueueHandler",
    "FluentHandler",
    "LogdHandler",
    "LogdHandlerPaced",
)
LABELS = {"QueueHandler": "QueueHandler+Listener", "LogdHandlerPaced": "LogdHandler, paced"}
SHORT = {"QueueHandler": "Queue", "LogdHandlerPaced": "Paced"}
# The paced variant times the same calls in chunks and waits (untimed) for the daemon's
# acks between them: the emit path without the backpressure of an overloaded daemon.
CHUNK = 10_000
WARMUP = 1000
GOALS = (("NullHandler", 1.3), ("FileHandler", 0.6), ("FluentHandler", 0.2))


# --------------------------------------------------------------------------- worker


def _setup(args: argparse.Namespace) -> tuple[logging.Handler | None, Callable[[], dict[str, Any]]]:
    """Install the variant's handler on the root logger; return it and its finaliser."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    variant = args.worker
    if variant.startswith("LogdHandler"):
        import logd_client as logd
        from logd_client.shared import shared_transports

        logd.install(app=APP, address=args.address)

        def finish_logd() -> dict[str, Any]:
            flushed = logd.flush(300)
            stats = [t.statistics() for t in shared_transports()]
            return {
                "flushed": flushed,
                "dropped": sum(s.dropped_records for s in stats),
                "spooled": sum(getattr(s, "spooled_records", 0) for s in stats),
            }

        return None, finish_logd
    handler: logging.Handler
    listener: logging.handlers.QueueListener | None = None
    if variant == "NullHandler":
        handler = logging.NullHandler()
    elif variant == "FileHandler":
        handler = logging.FileHandler(args.file, encoding="utf-8")
    elif variant == "QueueHandler":
        target = logging.FileHandler(args.file, encoding="utf-8")
        q: queue.Queue[logging.LogRecord] = queue.Queue()
        handler = logging.handlers.QueueHandler(q)
        listener = logging.handlers.QueueListener(q, target)
        listener.start()
    elif variant == "FluentHandler":
        from fluent import handler as fluent_handler

        handler = fluent_handler.FluentHandler(APP, host="127.0.0.1", port=args.fluent_port)
        fields = {"msg": "%(message)s", "level": "%(levelname)s", "logger": "%(name)s"}
        handler.setFormatter(fluent_handler.FluentRecordFormatter(fields))
    else:
        raise SystemExit(f"unknown variant {variant}")
    if variant in ("FileHandler", "QueueHandler"):
        formatter = logging.Formatter(
            "[in-progress] - %(asctime)s - %(name)s - %(levelname)s - %(message)s"
        )
        (target if listener else handler).setFormatter(formatter)
    root.addHandler(handler)

    def finish() -> dict[str, Any]:
        if listener is not None:
            listener.stop()
        handler.close()
        return {"flushed": True, "dropped": 0, "spooled": 0}

    return handler, finish


def worker(args: argparse.Namespace) -> int:
    """Time `args.calls` log calls for one variant; print one JSON line."""
    _, finish = _setup(args)
    log = logging.getLogger(f"{APP}.caller")
    for i in range(WARMUP):
        log.info("processing request %d", i)
    paced = args.worker == "LogdHandlerPaced"
    if args.worker.startswith("LogdHandler"):
        import logd_client as logd

        logd.flush(60)
    elif args.worker == "QueueHandler":
        time.sleep(0.2)  # let the listener catch up with the warm-up
    n = args.calls
    info = log.info
    elapsed = 0.0
    for start in range(0, n, CHUNK if paced else n):
        t0 = time.perf_counter()
        for i in range(start, min(n, start + (CHUNK if paced else n))):
            info("processing request %d", i)
        elapsed += time.perf_counter() - t0
        if paced:
            logd.flush(60)
    result = finish()
    result["us"] = elapsed / n * 1e6
    print(json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- parent


def measure(variant: str, calls: int, daemon: Daemon, folder: Path) -> dict[str, Any]:
    """Run one worker process and return its JSON result."""
    # Dirty pages left by the variant before (the daemon writes every record twice) would
    # throttle this one's write(2) calls while the kernel flushes them.
    os.sync()
    argv = [sys.executable, "-m", "tests.bench.bench_caller", "--worker", variant]
    argv += ["--calls", str(calls), "--file", f"{folder}/{variant}.log"]
    argv += ["--address", daemon.address, "--fluent-port", str(daemon.tcp_port)]
    out = subprocess.run(
        argv,
        env=common.child_env(folder=folder),
        cwd=common.REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{variant} worker failed ({out.returncode}):\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the rounds (or one worker) and print the table."""
    p = common.parser(__doc__ or "")
    p.add_argument("--calls", type=int, help="calls per measurement (default 200,000)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--file", help=argparse.SUPPRESS)
    p.add_argument("--address", help=argparse.SUPPRESS)
    p.add_argument("--fluent-port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    calls = args.calls or (5_000 if args.quick else 200_000)
    n_rounds = common.rounds(args, full=3)
    emit(common.header("bench_caller: caller cost per logger.info() call", args.quick))
    emit(f"{calls:,} calls per measurement, {n_rounds} rounds, variants alternated; µs/call")
    times: dict[str, list[float]] = defaultdict(list)
    dropped: dict[str, int] = defaultdict(int)
    spooled: dict[str, int] = defaultdict(int)
    with common.scratch() as folder, Daemon(folder, tcp=True) as daemon:
        for r in range(n_rounds):
            order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
            for variant in order:
                result = measure(variant, calls, daemon, folder)
                times[variant].append(result["us"])
                dropped[variant] += result["dropped"]
                spooled[variant] += result["spooled"]
                if not result["flushed"]:
                    raise RuntimeError(f"{variant}: records not acknowledged")
            done = " ".join(f"{SHORT.get(v, v[:-7])} {times[v][-1]:.1f}" for v in VARIANTS)
            emit(f"  round {r + 1}: {done}")
    med = {v: common.median(times[v]) for v in VARIANTS}
    rows = [
        [
            LABELS.get(v, v),
            med[v],
            min(times[v]),
            max(times[v]),
            med[v] / med["NullHandler"],
            med[v] / med["FileHandler"],
            med[v] / med["FluentHandler"],
        ]
        for v in VARIANTS
    ]
    emit()
    emit(
        common.table(
            ["variant", "µs/call", "min", "max", f"{X}Null", f"{X}File", f"{X}Fluent"], rows
        )
    )
    if dropped["LogdHandler"] or spooled["LogdHandler"]:
        emit(
            f"note: LogdHandler dropped {dropped['LogdHandler']:,} and spooled "
            f"{spooled['LogdHandler']:,} records (queue full)"
        )
    emit("goals (LogdHandler):")
    for base, limit in GOALS:
        emit(common.goal(f"{X}{base}", med["LogdHandler"] / med[base], limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
