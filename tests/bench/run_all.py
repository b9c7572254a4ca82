"""Run every benchmark script in turn: `python -m tests.bench.run_all [--quick]`.

`--results FILE` also writes the outputs as Markdown (how tests/bench/RESULTS.md is made);
`--only NAME` (repeatable) runs a subset, e.g. `--only caller --only latency`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from tests.bench import common

SCRIPTS = (
    "peers",
    "sweep",
    "writer",
    "caller",
    "throughput",
    "cpu",
    "latency",
    "memory",
    "query",
    "connection",
)


def run(name: str, quick: bool) -> tuple[int, str, float]:
    """Run one script, echoing its output; return (exit code, output, seconds)."""
    argv = [sys.executable, "-m", f"tests.bench.bench_{name}"] + (["--quick"] if quick else [])
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=common.REPO,
        env=common.child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line)
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, "".join(lines), time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    """Run the scripts; non-zero exit if any failed."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="smoke sizes (what CI runs)")
    p.add_argument("--results", type=Path, help="write the outputs to this Markdown file")
    p.add_argument("--only", action="append", choices=SCRIPTS, help="run only these")
    args = p.parse_args(argv)
    outputs = []
    failed = []
    for name in args.only or SCRIPTS:
        code, text, seconds = run(name, args.quick)
        print(f"-- bench_{name}: exit {code}, {seconds:.0f} s\n", flush=True)
        outputs.append((name, text, seconds))
        if code != 0:
            failed.append(name)
    if args.results:
        command = "python -m tests.bench.run_all" + "".join(
            f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:])
        )
        args.results.write_text(markdown(command, outputs))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def markdown(command: str, outputs: list[tuple[str, str, float]]) -> str:
    """The results file: command, machine, then each script's output."""
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    parts = [
        "# logd benchmark results\n",
        f"Run {when} on {common.cpu_model()}, nproc {os.cpu_count()}, "
        f"Python {sys.version.split()[0]}, with:\n",
        f"```sh\n{command}\n```\n",
        "Ratios within one run are the figures that count: the machine's speed drifts.\n",
    ]
    for name, text, seconds in outputs:
        parts.append(f"## bench_{name} ({seconds:.0f} s)\n\n```\n{text.rstrip()}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
