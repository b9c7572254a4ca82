"""Memory: daemon RSS with many idle clients and under load; client memory, daemon down.

`python -m tests.bench.bench_memory [--quick] [--clients K] [--records N] [--rounds R]`

Server part, per round and server (logd, then the bare reference, alternated): RSS after
start; after K idle clients connected (raw Unix sockets from this process, each sending
one acknowledged record of its own run, then idle; RLIMIT_NOFILE is raised to the hard
limit); peak RSS (VmRSS sampled every 20 ms, and VmHWM) while 4 producers send N records
through the real client with the idle clients still connected.

Client part: a producer whose daemon address does not exist logs records; its RSS and
transport counters at checkpoints show the memory bounds (`max_queue_records` 100,000,
`max_queue_bytes` 64 MiB by default) holding, with the overflow going to the spool.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from logd_client import wire

from tests.bench import common
from tests.bench.common import APP, BareServer, Daemon, Producers, Server, X, emit

MiB = 1024
GOAL_MIB = 64.0
CLIENT_BOUND = 100_000  # Transport's default max_queue_records
CLIENT_MIB = 64.0  # and max_queue_bytes


# --------------------------------------------------------------------------- server part


@contextmanager
def idle_clients(path: str, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that each sent one acknowledged record, then stay idle."""
    with ExitStack() as stack:
        socks = []
        for i in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            sock.connect(path)
            record: dict[str, object] = {"msg": "idle client", "level": "INFO"}
            record |= {"logger": f"{APP}.idle", "app": APP, "run_id": f"idle-{i:05d}"}
            record["pid"] = 100_000 + i
            sock.sendall(wire.encode_forward(APP, [(time.time_ns(), record)], chunk=f"c{i}"))
            socks.append(sock)
        for sock in socks:  # every ack: the daemon holds the connection and its state
            decoder = wire.ResponseDecoder()
            while (event := decoder.next_event()) is None:
                decoder.receive_data(sock.recv(4096))
            if not isinstance(event, wire.Ack):
                raise RuntimeError(f"idle client got {event!r}")
        yield socks


class PeakRss(threading.Thread):
    """Samples a process's VmRSS until stopped; `peak` in KiB."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak = pid, 0
        self.done = threading.Event()

    def run(self) -> None:
        """Sample every 20 ms."""
        while not self.done.wait(0.02):
            self.peak = max(self.peak, common.proc_kib(self.pid))


def server_round(kind: str, clients: int, records: int, config: str = "") -> dict[str, float]:
    """Start one server, take the readings of one round, stop it; values in MiB.
    `config` is TOML added to logd's."""
    with common.scratch() as folder:
        server: Server = (
            Daemon(folder, config_text=config) if kind == "logd" else BareServer(folder)
        )
        with server:
            time.sleep(0.3)
            out = {"start": common.proc_kib(server.pid) / MiB}
            with idle_clients(str(server.socket), clients):
                time.sleep(0.5)
                out["idle"] = common.proc_kib(server.pid) / MiB
                sampler = PeakRss(server.pid)
                sampler.start()
                argvs = [["--sink", "logd", "--count", str(records // 4)] for _ in range(4)]
                try:
                    with Producers(argvs, common.child_env(server.address, folder)) as procs:
                        procs.run()
                finally:
                    sampler.done.set()
                    sampler.join()
                out["load"] = sampler.peak / MiB
                out["hwm"] = common.proc_kib(server.pid, "VmHWM") / MiB
    return out


# --------------------------------------------------------------------------- client part


def client_worker(records: int, step: int) -> int:
    """Log with no daemon; print one JSON line of checkpoints (the last after a pause)."""
    import logging

    import logd_client as logd
    from logd_client.shared import shared_transports

    logd.install(app=APP, exit_flush_timeout_s=0.1)
    log = logging.getLogger(f"{APP}.memory")
    rows: list[dict[str, Any]] = []

    def checkpoint(logged: int | str) -> None:
        stats = shared_transports()[0].statistics()
        rows.append(
            {
                "logged": logged,
                "held": stats.queued_records + stats.inflight_records,
                "est": getattr(stats, "queued_bytes", 0) / MiB / 1024,
                "spooled": getattr(stats, "spooled_records", 0),
                "dropped": stats.dropped_records,
                "rss": common.proc_kib("self") / MiB,
            }
        )

    for i in range(records):
        if i % step == 0:
            checkpoint(i)
        log.info("processing request %d", i)
    checkpoint(records)
    time.sleep(1.0)  # the sender may still be spooling
    checkpoint("+1 s")
    print(json.dumps(rows), flush=True)
    return 0


def client_part(records: int, step: int) -> list[dict[str, Any]]:
    """Run the client worker against a socket that does not exist."""
    with common.scratch() as folder:
        argv = [sys.executable, "-m", "tests.bench.bench_memory", "--client-worker"]
        argv += ["--records", str(records), "--step", str(step)]
        env = common.child_env(f"unix:{folder}/nobody-listens", folder)
        out = subprocess.run(argv, env=env, cwd=common.REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"client worker failed:\n{out.stderr}")
    rows: list[dict[str, Any]] = json.loads(out.stdout.strip().splitlines()[-1])
    return rows


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Run both parts and print the tables."""
    p = common.parser(__doc__ or "")
    p.add_argument("--clients", type=int, help="idle clients (default 1,000; quick 100)")
    p.add_argument("--records", type=int, help="records under load (default 400,000)")
    p.add_argument("--client-records", type=int, help="client part (default 200,000)")
    p.add_argument(
        "--read-ahead",
        type=int,
        help="logd's [limits] read_ahead_bytes in KiB (default: logd's, 1,024)",
    )
    p.add_argument("--client-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--step", type=int, default=25_000, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client_worker:
        return client_worker(args.records, args.step)
    nofile = common.raise_nofile()
    clients = args.clients or (100 if args.quick else 1_000)
    records = args.records or (10_000 if args.quick else 400_000)
    client_records = args.client_records or (120_000 if args.quick else 200_000)
    n_rounds = common.rounds(args, full=3)
    emit(common.header("bench_memory: RSS of the daemon and of a client", args.quick))
    emit(
        f"{clients:,} idle clients, {records:,} records from 4 producers under load, "
        f"{n_rounds} round(s); RLIMIT_NOFILE {nofile:,}"
        + (f"; read_ahead_bytes {args.read_ahead} KiB" if args.read_ahead else "")
    )
    config = f"[limits]\nread_ahead_bytes = {args.read_ahead * 1024}\n" if args.read_ahead else ""
    readings: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    kinds = ["logd", "bare"]
    for r in range(n_rounds):
        for kind in kinds[r % 2 :] + kinds[: r % 2]:
            got = server_round(kind, clients, records, config)
            for key, value in got.items():
                readings[kind][key].append(value)
            shown = " ".join(f"{k} {v:.1f}" for k, v in got.items())
            emit(f"  round {r + 1}: {kind} MiB: {shown}")
    med = {kind: {k: common.median(v) for k, v in readings[kind].items()} for kind in kinds}
    keys = ("start", "idle", "load", "hwm")
    rows = [
        [kind, *(med[kind][k] for k in keys), med[kind]["hwm"] / med["bare"]["hwm"]]
        for kind in kinds
    ]
    emit()
    headers = ["server (MiB)", "started", f"{clients} idle", "load peak", "VmHWM"]
    emit(common.table([*headers, f"HWM {X}bare"], rows))
    step = max(1, client_records // 8)
    client = client_part(client_records, step)
    emit()
    emit(f"client with the daemon down: {client_records:,} records logged")
    base = client[0]["rss"]
    columns = ("logged", "held", "est", "spooled", "dropped", "rss")
    rows_c = [[*(c[k] for k in columns), c["rss"] - base] for c in client]
    headers = ["logged", "in memory", "est. MiB", "spooled", "dropped", "RSS MiB", "ΔRSS"]
    emit(common.table(headers, rows_c))
    logd = med["logd"]
    emit("goals:")
    emit(common.goal(f"logd RSS, {clients} idle clients", logd["idle"], GOAL_MIB, unit=" MiB"))
    emit(common.goal("logd RSS, under load (peak)", logd["load"], GOAL_MIB, unit=" MiB"))
    peak = max(client, key=lambda c: c["held"])
    emit(common.goal("client records in memory", peak["held"], CLIENT_BOUND))
    emit(common.goal("client est. bytes in memory", peak["est"], CLIENT_MIB, unit=" MiB"))
    per_record = (peak["rss"] - base) * MiB * 1024 / max(1, peak["held"])
    emit(f"  (client RSS grows {per_record:,.0f} bytes per record held in memory)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
