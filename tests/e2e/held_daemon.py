"""`python -m tests.e2e.held_daemon serve ...`: logd whose writer stops between writing a
batch's lines and syncing them, for a batch with lines of the app HELD_APP, while the
file named by HELD_WHILE exists (it touches HELD_BUSY when it stops there).

A real daemon with a writer held at the worst moment for a crash: lines on disk that are
not committed, and connections reading ahead meanwhile. The test kills it there.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from logd.__main__ import main
from logd.write.durable import Syncing
from logd.write.sinks import Sinks

HELD_WHILE = Path(os.environ["HELD_WHILE"])
HELD_BUSY = Path(os.environ["HELD_BUSY"])
HELD_APP = os.environ["HELD_APP"] + "/"
_start_sync = Sinks.start_sync


def held_start_sync(self: Sinks) -> Syncing:
    """Wait here, after the batch's writes, while the hold file exists."""
    # The batch's paths written and not yet synced (not the daemon's own start note).
    written = self._dirty
    if HELD_WHILE.exists() and any(path.startswith(HELD_APP) for path in written):
        HELD_BUSY.touch()
        while HELD_WHILE.exists():
            time.sleep(0.01)
    return _start_sync(self)


if __name__ == "__main__":
    Sinks.start_sync = held_start_sync  # type: ignore[method-assign]
    sys.exit(main(sys.argv[1:]))
