"""One connection, many messages back to back: acked messages per second.

`python -m tests.bench.bench_connection [--quick] [--messages N] [--rounds R]`

A foreign Forward client (Node's `@fluent-org/logger`, Docker's fluentd driver) sends
each record as its own Message-mode message with its own `chunk` and waits for the acks.
One connection writes N such messages without waiting; the figure is N over the time
from the first byte to the last ack. The reference is `bare_server --fsync --per-read`:
decode, append, one fsync per read's worth of messages, acks in order: the floor for a
trio server with durable acks. Issue 18 goal 4: logd at least 0.25 times the reference.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

from logd_client import wire

from tests.bench import common
from tests.bench.common import APP, MESSAGE, BareServer, Daemon, Server, X, emit

SEND_PIECE = 64 * 1024
TIMEOUT_S = 300.0


def burst(count: int) -> bytes:
    """`count` Message-mode messages, each with its own chunk."""
    now = time.time_ns()
    record = {"msg": MESSAGE, "logger": "conn", "level": "INFO"}
    return b"".join(
        wire.encode_message(APP, now + i, {**record, "seq": i}, chunk=f"bench-{i:08d}")
        for i in range(count)
    )


def acked_per_s(path: Path, data: bytes, count: int) -> float:
    """Send `data` on one connection while reading acks; messages per second until the
    last ack. Raises RuntimeError when an ack is missing or out of order."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(os.fspath(path))
        sock.settimeout(TIMEOUT_S)
        errors: list[BaseException] = []

        def send() -> None:
            try:
                for start in range(0, len(data), SEND_PIECE):
                    sock.sendall(data[start : start + SEND_PIECE])
            except OSError as exc:
                errors.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        started = time.perf_counter()
        sender.start()
        decoder = wire.ResponseDecoder()
        acked = 0
        while acked < count:
            event = decoder.next_event()
            if event is None:
                chunk = sock.recv(65536)
                if not chunk:
                    decoder.receive_eof()
                else:
                    decoder.receive_data(chunk)
                continue
            if not isinstance(event, wire.Ack) or event.chunk != f"bench-{acked:08d}":
                raise RuntimeError(f"after {acked} acks: {event!r}")
            acked += 1
        elapsed = time.perf_counter() - started
        sender.join()
        if errors:
            raise RuntimeError(f"sending failed: {errors[0]}")
    return count / elapsed


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--messages", type=int, default=None, help="messages per run")
    args = p.parse_args()
    count = args.messages or (2_000 if args.quick else 20_000)
    data = burst(count)
    results: dict[str, list[float]] = {"logd": [], "reference": []}
    emit(common.header(f"one connection, {count:,} messages back to back", args.quick))
    for _ in range(common.rounds(args, full=3)):
        for name in results:
            with common.scratch() as folder:
                server: Server
                if name == "logd":
                    server = Daemon(folder)
                else:
                    server = BareServer(folder, "--fsync", "--per-read")
                with server:
                    results[name].append(acked_per_s(server.socket, data, count))
                written = common.count_lines(server.main_logs())
                if written != count:
                    raise RuntimeError(f"{name} wrote {written} of {count} records")
    rows = []
    ref = common.median(results["reference"])
    for name, values in results.items():
        med = common.median(values)
        rows.append([name, med, min(values), max(values), med / ref])
    emit(common.table(["server", "acked msg/s med", "min", "max", f"{X} reference"], rows))
    ratios = [a / b for a, b in zip(results["logd"], results["reference"], strict=True)]
    emit(f"per-round ratios: {', '.join(f'{r:.2f}' for r in ratios)}")
    emit("goals")
    emit(common.goal("logd / reference", common.median(ratios), 0.25, at_most=False, unit=X))


if __name__ == "__main__":
    main()
