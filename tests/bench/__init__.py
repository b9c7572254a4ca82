"""Benchmark scripts for logd (issue 7); run them with `python -m tests.bench.run_all`."""
