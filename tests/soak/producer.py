"""One producer of the fault campaign: logs numbered records through the real logd_client.

`python -m tests.soak.producer --name p1.3 --acks FILE --stop FILE --quit FILE --seed N
--lifetime S`

Every record's message is `id=<name>.<seq>`; `<name>` is `<slot>.<generation>`, so ids
are unique over the whole campaign. The acks file is the producer's word on what the
daemon acknowledged: a first JSON line with the run id and pid, then `acked <n> dropped
<d>` each time `logd_client.flush()` returned True (records 0..n-1 are acknowledged; `d`
is what the client had to drop so far), and `done` after the last flush. The producer
runs until its lifetime is over or the stop file (all producers) or quit file (this one)
exists, then exits normally, so the exit hook sends `app:shutdown` (and spools what the
daemon did not acknowledge within a second); the campaign may SIGKILL it instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import time
from typing import TextIO

import logd_client as logd
from logd_client.shared import shared_transports

APP = "soak"
SESSIONS = tuple(f"s{i}" for i in range(8))


def dropped() -> int:
    """Records the process's transports had to drop so far (flush() does not wait for those)."""
    return sum(t.statistics().dropped_records for t in shared_transports())


def _exists(*paths: str) -> bool:
    return any(os.path.exists(path) for path in paths)


def note_acked(acks: TextIO, count: int) -> None:
    acks.write(f"acked {count} dropped {dropped()}\n")
    acks.flush()


def main() -> int:
    """Log bursts of numbered records, some in shared sessions, flushing now and then."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--name", required=True, help="<slot>.<generation>, e.g. p1.3")
    p.add_argument("--acks", required=True, help="file to append acknowledged counts to")
    p.add_argument("--stop", required=True, help="stop cleanly once this file exists")
    p.add_argument("--quit", required=True, help="the same, a file for this producer alone")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--lifetime", type=float, required=True, help="seconds to run at most")
    p.add_argument("--rate", type=float, default=600.0, help="records per second, about")
    args = p.parse_args()
    rng = random.Random(args.seed)
    slot = args.name.split(".")[0]
    # Short enough that a producer exiting while the daemon is away spools its tail.
    logd.install(app=APP, exit_flush_timeout_s=1.0)
    log = logging.getLogger(f"{APP}.{slot}")
    with open(args.acks, "a", encoding="utf-8") as acks:
        acks.write(json.dumps({"run_id": logd.run_id(), "pid": os.getpid()}) + "\n")
        acks.flush()
        seq = 0
        burst_s = 0.05
        deadline = time.monotonic() + args.lifetime
        next_flush = time.monotonic() + rng.uniform(0.1, 0.5)
        while time.monotonic() < deadline and not _exists(args.stop, args.quit):
            started = time.monotonic()
            session_id = rng.choice((*SESSIONS, None, None, None))
            scope = logd.session(session_id) if session_id else contextlib.nullcontext()
            with scope:
                for _ in range(max(1, int(rng.uniform(0.5, 1.5) * args.rate * burst_s))):
                    log.info("id=%s.%d", args.name, seq)
                    seq += 1
            if session_id and rng.random() < 0.03:
                logd.end_session(session_id)
            if time.monotonic() >= next_flush:
                count = seq
                if logd.flush(1.0):
                    note_acked(acks, count)
                next_flush = time.monotonic() + rng.uniform(0.1, 0.5)
            time.sleep(max(0.0, burst_s - (time.monotonic() - started)))
        count = seq
        # Told to quit alone, it exits at once: the campaign made sure no daemon listens.
        if not os.path.exists(args.quit) and logd.flush(30.0):
            note_acked(acks, count)
        acks.write("done\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
