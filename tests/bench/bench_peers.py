"""logd against rsyslog and syslog-ng on logd's own job (issue 18), verified line by line.

`python -m tests.bench.bench_peers [--quick] [--records N] [--sessions K] [--rounds R]`

4 producers x N records, round-robin over K sessions; each collector writes every record
to one run log and to its session's JSON-lines file (see `tests.bench.peerjob`). logd
runs with `fsync = "none"` and `"batch"` (acks after fsync); rsyslog without sync and with
asynchronous writing + `sync="on"`; syslog-ng with `fsync(no)` and `fsync(yes)`. The
peers are fed by stdlib `SysLogHandler` and by a batched writer of the same RFC 5424
lines; a peer's row is its best feed. Systems are alternated within each round; the
table shows medians; ratios are taken within each round, then their median.
"""

from __future__ import annotations

import pstats
import sys
from collections import defaultdict
from pathlib import Path

from tests.bench import common, peerjob
from tests.bench.common import Daemon, X, emit
from tests.bench.peers import rsyslog_missing, syslog_ng_missing

PRODUCERS = 4


def available() -> tuple[list[peerjob.System], list[str]]:
    """The systems that can run here, and a line per peer skipped with its reason."""
    reasons = {"rsyslog": rsyslog_missing(), "syslog-ng": syslog_ng_missing()}
    systems, skipped = [], []
    for system in peerjob.SYSTEMS:
        peer = system.label.split()[0]
        if reasons.get(peer):
            skipped.append(f"  skipped {system.label}: {reasons[peer]}")
        else:
            systems.append(system)
    return systems, skipped


def main(argv: list[str] | None = None) -> int:
    """Run the rounds, print every run, the table, the per-round ratios and the goals."""
    p = common.parser(__doc__ or "")
    p.add_argument("--records", type=int, help="records per producer (default 100,000)")
    p.add_argument("--sessions", type=int, default=100, help="sessions (default 100)")
    p.add_argument("--profile", type=Path, help="only profile logd (fsync=none) under cProfile")
    args = p.parse_args(argv)
    if args.profile:
        return profile(args.profile, args.records or 50_000, args.sessions)
    per = args.records or (1_000 if args.quick else 100_000)
    n_rounds = common.rounds(args, full=3)
    systems, skipped = available()
    emit(
        common.header(
            "bench_peers: logd vs rsyslog and syslog-ng, run log + session file", args.quick
        )
    )
    emit(
        f"{PRODUCERS} producers {X} {per:,} records, {args.sessions:,} sessions round-robin, "
        f"{n_rounds} round(s); every run verified record by record"
    )
    for line in skipped:
        emit(line)
    runs: dict[tuple[str, str], list[peerjob.Result]] = defaultdict(list)
    # --quick feeds each peer with SysLogHandler only, to stay a smoke run of a few seconds.
    feeds = [(s, sink) for s in systems for sink in s.sinks[: 1 if args.quick else None]]
    for r in range(n_rounds):
        order = feeds[r % len(feeds) :] + feeds[: r % len(feeds)]
        for system, sink in order:
            res = peerjob.run(system, sink, producers=PRODUCERS, per=per, sessions=args.sessions)
            runs[system.label, sink].append(res)
            emit(
                f"  round {r + 1}: {system.label:<16} <- {sink:<7} {res.rate:>9,.0f} rec/s  "
                f"collector {res.server_us:5.1f} µs/rec  producers {res.client_us:5.1f} µs/rec"
            )
    emit()
    rows = []
    for (label, sink), results in runs.items():
        rates = [x.rate for x in results]
        rows.append(
            [
                label,
                sink,
                common.median(rates),
                min(rates),
                max(rates),
                common.median([x.server_us for x in results]),
                common.median([x.client_us for x in results]),
            ]
        )
    emit(
        common.table(
            [
                "system",
                "producer",
                "rec/s med",
                "min",
                "max",
                "collector µs/rec",
                "producer µs/rec",
            ],
            rows,
        )
    )
    emit()
    for line in goals(runs, n_rounds):
        emit(line)
    return 0


def profile(prefix: Path, per: int, sessions: int) -> int:
    """One logd run of the job under cProfile (loop and writer); print the top functions."""
    system = peerjob.System(
        "logd none (profiled)",
        lambda folder, _k: Daemon(
            folder, fsync="none", config_text=peerjob.LOGD_CONFIG, profile=prefix
        ),
        ("logd",),
    )
    res = peerjob.run(system, "logd", producers=PRODUCERS, per=per, sessions=sessions)
    emit(f"profiled run: {res.rate:,.0f} rec/s, collector {res.server_us:.1f} µs/rec")
    for part in ("loop", "writer"):
        stats = pstats.Stats(f"{prefix}.{part}.prof")
        emit(f"\n-- {part}: top 25 by own time")
        stats.sort_stats("tottime").print_stats(25)
    return 0


def best(
    runs: dict[tuple[str, str], list[peerjob.Result]], label: str, r: int
) -> peerjob.Result | None:
    """Round r's best feed of a system (the highest records/s), or None if it did not run."""
    found = [res[r] for (lab, _), res in runs.items() if lab == label and len(res) > r]
    return max(found, key=lambda x: x.rate) if found else None


def ratios(
    runs: dict[tuple[str, str], list[peerjob.Result]],
    n_rounds: int,
    a: str,
    b: str,
    cpu: bool = False,
) -> list[float]:
    """Per-round ratios a/b of records/s (or collector CPU per record)."""
    out = []
    for r in range(n_rounds):
        x, y = best(runs, a, r), best(runs, b, r)
        if x is not None and y is not None:
            out.append(x.server_us / y.server_us if cpu else x.rate / y.rate)
    return out


def goals(runs: dict[tuple[str, str], list[peerjob.Result]], n_rounds: int) -> list[str]:
    """The issue's goals 1, 2 and 5 (peer part), from per-round ratios."""
    lines = ["per-round ratios (median of the rounds; each round's best feed per system):"]
    pairs = [
        ("logd none", "rsyslog", False, 1.0, False),
        ("logd none", "rsyslog", True, 1.0, True),
        ("logd none", "syslog-ng", False, 1.0, False),
        ("logd batch", "logd none", False, 0.8, False),
        ("logd batch", "rsyslog sync", False, 1.0, False),
        ("logd batch", "syslog-ng fsync", False, 1.0, False),
    ]
    goal_lines = ["goals:"]
    for a, b, cpu, limit, at_most in pairs:
        values = ratios(runs, n_rounds, a, b, cpu)
        if not values:
            continue
        what = f"{a} / {b}, {'collector CPU per record' if cpu else 'records/s'}"
        lines.append(f"  {what}: " + " ".join(f"{v:.2f}" for v in values))
        goal_lines.append(common.goal(what, common.median(values), limit, at_most=at_most))
    client = _client_ratio(runs)
    if client is not None:
        goal_lines.append(
            common.goal("logd client / SysLogHandler, producer CPU per record", client, 1.0)
        )
    return lines + goal_lines


def _client_ratio(runs: dict[tuple[str, str], list[peerjob.Result]]) -> float | None:
    logd = [x.client_us for (lab, sink), res in runs.items() if sink == "logd" for x in res]
    stdlib = [x.client_us for (lab, sink), res in runs.items() if sink == "syslog" for x in res]
    if not logd or not stdlib:
        return None
    return common.median(logd) / common.median(stdlib)


if __name__ == "__main__":
    sys.exit(main())
