"""Gzip rotated files in a thread of their own, so the writer goes on writing meanwhile.

Compressing a 10 MiB rotated copy takes tens of milliseconds; done in the writer's thread
it held up the batch that rotated (and its acknowledgements) for that long, once per
10 MiB of every file. zlib releases the GIL while it works, so on a machine with a
spare core the compression costs the writer almost nothing.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from logd.retention.cleanup import compress_file

log = logging.getLogger("logd.sinks")


class Compressor:
    """Compresses one rotated copy per file family at a time, in one background thread.

    A family (a live file and its backups) must not be rotated again while its last
    copy is still being compressed: the renames would move the file being read. So
    `wait(family)` comes before every rotation; it rarely has to wait.

    Resource handling: the thread starts with the first copy; `close()` waits for what
    is under way and stops it.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        # A rotation may hand over more than one copy of a family: the new one and an
        # older one a crash kept from being compressed.
        self._pending: dict[Path, list[Future[Path]]] = {}

    def submit(self, family: Path, rotated: Path) -> None:
        """Compress `rotated` (a copy of the live file `family`) in the background; the
        caller has waited for `family`'s previous copies before rotating."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logd-gzip")
        self._pending.setdefault(family, []).append(self._pool.submit(compress_file, rotated))

    def wait(self, family: Path) -> None:
        """Return once `family`'s copies are compressed (or failed, which is logged)."""
        for future in self._pending.pop(family, ()):
            _report(future)

    def reap(self) -> None:
        """Forget the copies already done, logging any that failed; never waits."""
        for family, futures in list(self._pending.items()):
            if all(future.done() for future in futures):
                del self._pending[family]
                for future in futures:
                    _report(future)

    def settle(self) -> None:
        """Wait for every copy under way."""
        for family in list(self._pending):
            self.wait(family)

    @property
    def busy(self) -> int:
        """Copies submitted and not yet reaped."""
        return sum(len(futures) for futures in self._pending.values())

    def close(self) -> None:
        self.settle()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _report(future: Future[Path]) -> None:
    try:
        future.result()
    except Exception as exc:
        # The uncompressed copy stays, and retention treats it like any other backup.
        log.warning("could not compress a rotated file: %s", exc)
