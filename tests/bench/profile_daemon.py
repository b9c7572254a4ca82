"""Run `logd` under cProfile, including its writer thread.

`python -m tests.bench.profile_daemon --out PREFIX serve --root ...` writes
`PREFIX.loop.prof` (the trio thread: sockets, decoding, acks) and `PREFIX.writer.prof`
(every `Engine.process` call, which runs in trio's worker threads that a plain
`python -m cProfile` does not see). Read them with `pstats`.
"""

from __future__ import annotations

import cProfile
import sys
from typing import Any

from logd.__main__ import main as logd_main
from logd.write import engine


def main() -> int:
    """Patch Engine.process to profile itself, run logd's main under a second profiler."""
    if len(sys.argv) < 3 or sys.argv[1] != "--out":
        print(__doc__, file=sys.stderr)
        return 2
    prefix, argv = sys.argv[2], sys.argv[3:]
    writer = cProfile.Profile()
    original = engine.Engine.process

    def process(self: engine.Engine, *args: Any, **kwargs: Any) -> Any:
        # One writer at a time: enabling the same profiler in whichever worker thread
        # runs the batch is safe, and the stats add up over the run.
        writer.enable()
        try:
            return original(self, *args, **kwargs)
        finally:
            writer.disable()

    engine.Engine.process = process  # type: ignore[method-assign]
    loop = cProfile.Profile()
    try:
        code = loop.runcall(logd_main, argv)
    finally:
        loop.dump_stats(f"{prefix}.loop.prof")
        writer.dump_stats(f"{prefix}.writer.prof")
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
