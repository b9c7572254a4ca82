"""The daemon's open-file budget: raise the soft RLIMIT_NOFILE to what the config needs.

Why: every live session and call file is a descriptor (`[limits] open_files`), and so is
every client connection (`max_connections`). A shell's soft limit is often 1,024 while the
hard limit is far higher; a file past the soft limit fails with EMFILE and its batch is
refused, and a budget kept small to stay under it makes the writer close and reopen files
when more are live than it holds (about twice the cost of an append each time). systemd
units set `LimitNOFILE`; everywhere else the daemon raises its own soft limit, as far as
the hard limit allows, and says once when even that is short.
"""

from __future__ import annotations

import logging
import resource

from logd.config import Limits

__all__ = ["RESERVED", "descriptors_needed", "raise_open_file_limit"]

log = logging.getLogger("logd.fdlimit")

# Beyond files and connections: listeners, SQLite (database, WAL, shm, for the store and
# the index), the syncfs anchors, the compressor, the forward outputs, logging.
RESERVED = 64


def descriptors_needed(limits: Limits) -> int:
    """How many descriptors the daemon may hold at once under `limits`."""
    return limits.open_files + limits.max_connections + RESERVED


def raise_open_file_limit(limits: Limits) -> int:
    """Raise the soft RLIMIT_NOFILE towards `descriptors_needed(limits)`; returns the soft
    limit now in force. Never lowers it and never fails: short of the need, it warns."""
    needed = descriptors_needed(limits)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "open file limit %d is below the %d that [limits] open_files (%d) and "
            "max_connections (%d) need; raise LimitNOFILE (systemd) or ulimit -n",
            soft,
            needed,
            limits.open_files,
            limits.max_connections,
        )
    return soft
