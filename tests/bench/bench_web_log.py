"""`logd web`'s log view on a large rotated run: what one page view costs.

`python -m tests.bench.bench_web_log [--quick]`

Builds a run log of about 10 MiB per part in four parts (three gzip-compressed, as
rotation leaves them) and times, through the same code the run page uses: the newest
page, the volume chart (the newest 4 MiB dated and counted), a search page across the
parts, and a narrowed page (`until` found by bisection). Prints milliseconds per step
and the ratio of a whole page view to the newest page alone.
"""

from __future__ import annotations

import gzip
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from logd.web.logview import BytesSource, Span, read_page
from logd.web.parts import ChainSource, Part, gzip_size
from logd.web.timespan import offset_until, record_epoch, scan_times
from logd.web.views import HISTOGRAM_BYTES

LINE = "[sess-%d] - %s,%03d - app.agent - %s - viewed product %d for user %d\n"
LEVELS = ("INFO",) * 8 + ("DEBUG", "WARNING", "ERROR")


def _part_bytes(first: int, count: int) -> bytes:
    out = []
    for i in range(first, first + count):
        moment = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(1_762_300_000 + i // 20))
        out.append(LINE % (i % 50, moment, i % 1000, LEVELS[i % len(LEVELS)], i, i % 977))
    return "".join(out).encode()


def _files(per_part: int, parts: int) -> list[tuple[str, bytes]]:
    """The parts as they lie on disk: the oldest three compressed, oldest first."""
    files = []
    for n in range(parts):
        data = _part_bytes(n * per_part, per_part)
        if n < parts - 1:
            files.append((f"main.log.{parts - 1 - n}.gz", gzip.compress(data, 1)))
        else:
            files.append(("main.log", data))
    return files


def _chain(files: list[tuple[str, bytes]]) -> ChainSource:
    """A page view's source: nothing decompressed until a read reaches it."""
    built = []
    for name, data in files:
        if name.endswith(".gz"):
            built.append(Part(name, gzip_size(data), _opener(data, True)))
        else:
            built.append(Part(name, len(data), _opener(data, False)))
    return ChainSource(built)


def _opener(data: bytes, packed: bool) -> Callable[[], BytesSource]:
    return lambda: BytesSource(gzip.decompress(data) if packed else data)


def _ms(step: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    per_part, rounds = (20_000, 3) if quick else (100_000, 5)

    def epoch(fields: dict[str, Any]) -> float | None:
        return record_epoch(fields, "run", True)

    files = _files(per_part, 4)

    def fresh() -> ChainSource:  # each page view opens the files anew
        return _chain(files)

    sample = fresh()
    print(f"run log: {sample.size / 2**20:.1f} MiB in 4 parts ({per_part:,} records each)")
    middle = 1_762_300_000 + (2 * per_part) // 20
    steps = {
        "newest page": lambda: read_page(fresh(), "run"),
        "volume chart": lambda: scan_times(fresh(), "run", epoch, HISTOGRAM_BYTES),
        "search page": lambda: read_page(fresh(), "run", text="product 12345"),
        "narrowed page": lambda: read_page(
            (c := fresh()),
            "run",
            before=offset_until(c, "run", epoch, middle + 30),
            span=Span(middle, middle + 30, epoch),
        ),
    }
    results = {name: _ms(step, rounds) for name, step in steps.items()}
    for name, ms in results.items():
        print(f"{name:14} {ms:8.1f} ms")
    view = results["newest page"] + results["volume chart"]
    print(f"page + chart / page alone: {view / results['newest page']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
