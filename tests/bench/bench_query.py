"""Event query: `logd-ctl events --type 'llm:*' --since 1h` over 1M indexed events.

`python -m tests.bench.bench_query [--quick] [--events N] [--rounds R]`

Fills a real `index.sqlite3` with N events spread over 30 days (a tenth of them `llm:*`,
about 1,400 in the last hour per million), starts a real daemon on that root, and times
the query three ways, alternated in each round: the control-socket round trip (what
`logd-ctl` waits for), the `logd-ctl` command as a process (adds Python's start-up), and
the same SQL straight on SQLite (the floor).
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

from logd_client.control.connection import ControlConnection

from logd.control.requests import parse_time
from logd.ctl.cli import build_parser, build_request
from logd.index.eventline import format_event_line, iso_utc_ms
from logd.index.events import EventIndex, EventRow
from tests.bench import common

TYPES = ("llm:request", "llm:response", "app:start", "http:request", "db:query", "cache:hit")
WEIGHTS = (5, 5, 1, 40, 30, 19)
DAY_NS = 86_400 * 1_000_000_000


def fill(root: Path, count: int, now_ns: int) -> None:
    """Write `count` events into `root/index.sqlite3`, oldest first, in big batches."""
    root.mkdir(parents=True, exist_ok=True)
    index = EventIndex(root / "index.sqlite3")
    rng = random.Random(42)
    span = 30 * DAY_NS
    step = span // count
    batch: list[EventRow] = []
    for i in range(count):
        ts = now_ns - span + i * step + rng.randrange(step)
        event_type = rng.choices(TYPES, WEIGHTS)[0]
        session = f"s{i % 5000}"
        fields: dict[str, object] = {"n": i, "session_id": session}
        line = format_event_line(ts, event_type, "agent", "", fields)
        batch.append(
            EventRow(
                ts=iso_utc_ms(ts),
                event_type=event_type,
                source="agent",
                message="",
                app=common.APP,
                run_id="20251105_143052_a1b2c3d4",
                session_id=session,
                call_id=None,
                kv_json=f'{{"n":{i}}}',
                raw_line=line,
            )
        )
        if len(batch) == 50_000:
            index.insert_many(batch)
            batch.clear()
    index.insert_many(batch)
    index.close()


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__ or "")
    p.add_argument("--events", type=int, help="events in the index (default 1,000,000)")
    args = p.parse_args(argv)
    count = args.events or (20_000 if args.quick else 1_000_000)
    rounds = common.rounds(args, full=5, quick=1)
    common.emit(common.header("bench_query: events --type 'llm:*' --since 1h", args.quick))
    with common.scratch("lq-") as folder:
        now_ns = time.time_ns()
        started = time.monotonic()
        daemon = common.Daemon(folder)
        fill(daemon.root, count, now_ns)
        common.emit(f"{count:,} events indexed in {time.monotonic() - started:.1f} s; ms per query")
        control = folder / "c"
        request = build_request(
            build_parser().parse_args(["events", "--type", "llm:*", "--since", "1h"])
        )
        since = parse_time("1h", time.time())
        sql_index = EventIndex(daemon.root / "index.sqlite3")
        times: dict[str, list[float]] = {"control socket": [], "logd-ctl process": [], "SQLite": []}
        found: set[int] = set()
        with daemon:
            for n in range(rounds):
                t0 = time.perf_counter()
                with ControlConnection(str(control)) as conn:
                    result = conn.call(request)
                times["control socket"].append((time.perf_counter() - t0) * 1000)
                found.add(len(result))
                t0 = time.perf_counter()
                cli = [sys.executable, "-m", "logd.ctl", "--control", str(control), "--json"]
                out = subprocess.run(
                    [*cli, "events", "--type", "llm:*", "--since", "1h"],
                    capture_output=True,
                    env=common.child_env(),
                    cwd=common.REPO,
                )
                times["logd-ctl process"].append((time.perf_counter() - t0) * 1000)
                if out.returncode != 0:
                    raise RuntimeError(out.stderr.decode(errors="replace"))
                t0 = time.perf_counter()
                rows = sql_index.query(type_pattern="llm:*", since=since, limit=1000)
                times["SQLite"].append((time.perf_counter() - t0) * 1000)
                found.add(len(rows))
                common.emit(
                    f"  round {n + 1}: " + " ".join(f"{k} {v[-1]:.1f}" for k, v in times.items())
                )
        sql_index.close()
    floor = common.median(times["SQLite"])
    rows_out = [
        [name, common.median(v), min(v), max(v), common.median(v) / floor]
        for name, v in times.items()
    ]
    common.emit()
    common.emit(common.table(["variant", "ms med", "min", "max", f"{common.X}SQLite"], rows_out))
    common.emit(f"events returned per query: {sorted(found)}")
    common.emit("goals:")
    common.emit(
        common.goal("control socket query", common.median(times["control socket"]), 100, unit=" ms")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
