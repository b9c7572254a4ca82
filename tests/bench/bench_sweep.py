"""The scaling sweep (issue 18 goal 3): logd's records/s against live sessions or calls.

`python -m tests.bench.bench_sweep [--quick] [--records N] [--rounds R] [--counts 1,100,...]`

4 producers x N records, round-robin over K sessions (or K calls, which go to call files
and not to the run log), K split evenly between the producers, for logd with
`fsync = "none"` and `"batch"`. Acked records/s from "go" until every producer's flush is
acknowledged; every record is checked once on disk. Goal: durable records/s at 1,000
sessions (calls) at least 0.8x the rate at 1.

Each session (call) is live before the clock starts (one warm-up line in it, the way a
call's start event opens its file): the goal is about the cost of sessions being live, and
opening one is a file create, ~0.2 ms on an ext4 here whoever does it. `--cold` opens them
inside the timed window instead.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from tests.bench import common
from tests.bench.common import APP, Daemon, Producers, X, emit
from tests.bench.peerjob import LOGD_CONFIG, TOKEN

PRODUCERS = 4
KINDS = ("sessions", "calls")
MODES = ("none", "batch")


def run_once(
    kind: str, k: int, fsync: str, per: int, extra: str = "", *, cold: bool = False
) -> tuple[float, float]:
    """One verified run; (records/s, daemon CPU µs per record)."""
    total = PRODUCERS * per
    share = max(1, k // PRODUCERS)
    config = LOGD_CONFIG + extra
    with common.scratch() as folder, Daemon(folder, fsync=fsync, config_text=config) as d:
        argvs = []
        for n in range(PRODUCERS):
            argv = ["--sink", "logd", "--count", str(per), "--tag", f"p{n}-"]
            argv += [f"--{kind}", str(share), "--id-base", str(n * share if k > 1 else 0)]
            argv += [] if cold else ["--warm"]
            argvs.append(argv)
        cpu: list[float] = []
        with Producers(argvs, common.child_env(d.address, folder)) as procs:
            results = procs.run(on_go=lambda: cpu.append(common.proc_cpu_s(d.pid)))
        cpu.append(common.proc_cpu_s(d.pid))
        d.stop()
        if not all(r["flushed"] for r in results) or any(r["dropped"] for r in results):
            raise RuntimeError(f"{kind} {k} {fsync}: a flush timed out or records were dropped")
        files = _outputs(d.root / APP, kind)
        seen = set()
        lines = 0
        for path in files:
            with open(path, "rb") as f:
                for line in f:
                    if (found := TOKEN.search(line)) is not None:
                        seen.add(found.group(1))
                        lines += 1
        if lines != total or len(seen) != total:
            raise RuntimeError(
                f"{kind} {k} {fsync}: {lines:,} lines, {len(seen):,} distinct of {total:,}"
            )
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return total / wall, (cpu[1] - cpu[0]) / total * 1e6


def _outputs(app_dir: Path, kind: str) -> list[Path]:
    if kind == "calls":
        return sorted(app_dir.glob("calls/*/*/call_*.log*"))
    return sorted(p for p in app_dir.glob("runs/*/main.log") if not p.parent.is_symlink())


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the table and goal 3."""
    p = common.parser(__doc__ or "")
    p.add_argument("--records", type=int, help="records per producer (default 50,000)")
    p.add_argument("--counts", default=None, help="comma-separated K (default 1,100,1000,10000)")
    p.add_argument(
        "--open-files", type=int, help="[limits] open_files for logd (default: logd's, 4,096)"
    )
    p.add_argument(
        "--read-ahead", type=int, help="[limits] read_ahead_bytes in KiB (default: logd's, 1,024)"
    )
    p.add_argument("--cold", action="store_true", help="open the sessions inside the timed window")
    args = p.parse_args(argv)
    per = args.records or (500 if args.quick else 50_000)
    counts = [
        int(c) for c in (args.counts or ("1,100" if args.quick else "1,100,1000,10000")).split(",")
    ]
    n_rounds = common.rounds(args, full=2)
    common.raise_nofile()
    emit(common.header("bench_sweep: logd records/s against live sessions and calls", args.quick))
    limits = [f"open_files = {args.open_files}"] if args.open_files else []
    limits += [f"read_ahead_bytes = {args.read_ahead * 1024}"] if args.read_ahead else []
    extra = "[limits]\n" + "".join(f"{line}\n" for line in limits) if limits else ""
    files = ", ".join(limits) if limits else "default open_files (4,096) and read_ahead_bytes"
    emit(
        f"{PRODUCERS} producers {X} {per:,} records, K split between them, {n_rounds} round(s), "
        f"{files}, sessions opened {'in the timed window' if args.cold else 'before the clock'}"
    )
    rates: dict[tuple[str, int, str], list[float]] = defaultdict(list)
    cpus: dict[tuple[str, int, str], list[float]] = defaultdict(list)
    for r in range(n_rounds):
        for kind in KINDS:
            for k in counts:
                modes = MODES if r % 2 == 0 else MODES[::-1]
                for fsync in modes:
                    rate, cpu = run_once(kind, k, fsync, per, extra, cold=args.cold)
                    rates[kind, k, fsync].append(rate)
                    cpus[kind, k, fsync].append(cpu)
                    emit(
                        f"  round {r + 1}: {k:>6,} {kind:<8} fsync={fsync:<5} "
                        f"{rate:>9,.0f} rec/s  {cpu:5.1f} µs/rec"
                    )
    rows = []
    for kind in KINDS:
        for k in counts:
            row: list[object] = [kind, k]
            for fsync in MODES:
                base = common.median(rates[kind, counts[0], fsync])
                med = common.median(rates[kind, k, fsync])
                row += [med, med / base, common.median(cpus[kind, k, fsync])]
            rows.append(row)
    emit()
    emit(
        common.table(
            ["kind", "K", "none rec/s", f"{X}K=1", "µs/rec", "batch rec/s", f"{X}K=1", "µs/rec"],
            rows,
        )
    )
    emit("goals:")
    target = 1000 if 1000 in counts else counts[-1]
    for kind in KINDS:
        ratio = common.median(rates[kind, target, "batch"]) / common.median(
            rates[kind, counts[0], "batch"]
        )
        emit(common.goal(f"batch, {target:,} {kind} / {counts[0]}", ratio, 0.8, at_most=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
