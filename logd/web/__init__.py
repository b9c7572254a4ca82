"""`logd web`: a read-only browser and JSON view of a logd root, with live tail.

A separate process from the daemon: it reads ``index.sqlite3`` and the files (never
writing into the root) and asks the control socket for status and live records. This
package imports Starlette and hypercorn (the ``web`` extra) only from the request side
(``app``, ``params``, ``replies``, ``guard``, ``live``) and ``server``'s runner, so
``logd`` itself works without them; pages, charts, views and log reading are plain Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["WebSettings"]


@dataclass(frozen=True, slots=True)
class WebSettings:
    """What `logd web` serves: the root it reads, the daemon it asks, who may look.

    Args:
        root: the daemon's log root (read-only here).
        control: the daemon's control socket, for status and live tail.
        token: when set, every request must carry it.
        utc: the daemon writes text-line times in UTC (`[layout] utc`), not local time.
    """

    root: Path
    control: Path
    token: str | None = None
    utc: bool = False
