"""Smoke test of the benchmark scripts: each runs with --quick and prints its table.

No timing is asserted: these machines drift too much for that; the figures are in
tests/bench/RESULTS.md and come from `python -m tests.bench.run_all`.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.bench.common import REPO, child_env

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("script", "column"),
    [
        ("bench_caller", "µs/call"),
        ("bench_throughput", "rec/s med"),
        ("bench_cpu", "client"),
        ("bench_latency", "p99 ms"),
        ("bench_memory", "load peak"),
        ("bench_query", "ms med"),
        ("bench_connection", "acked msg/s med"),
        ("bench_peers", "collector µs/rec"),
        ("bench_sweep", "batch rec/s"),
        ("bench_shard", "daemons µs/rec"),
        ("bench_writer", "µs per extra pair"),
    ],
)
def test_quick_run_prints_its_table(script: str, column: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", f"tests.bench.{script}", "--quick"],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert "nproc" in out.stdout
    header = next((line for line in out.stdout.splitlines() if column in line), None)
    assert header is not None, out.stdout
    assert "goals" in out.stdout
