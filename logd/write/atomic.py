"""Small files replaced whole, so a reader sees the old or the new content, never a mix:
a run's ``metadata.json`` and ``runs/current``. A failed replacement leaves no temp file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["point_current", "write_json_atomic"]


def write_json_atomic(path: Path, obj: Mapping[str, Any]) -> None:
    """Replace a JSON file so readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    data = json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        # A full disk must not leave a half-written temp file beside the real one.
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def point_current(runs_dir: Path, run_name: str) -> None:
    """Make `runs/current` (symlink) and `runs/current.txt` name the newest run."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    tmp_link = runs_dir / ".current.tmp"
    tmp_txt = runs_dir / ".current.txt.tmp"
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp_link.unlink()
        os.symlink(run_name, tmp_link)
        os.replace(tmp_link, runs_dir / "current")
        tmp_txt.write_text(run_name + "\n", encoding="utf-8")
        os.replace(tmp_txt, runs_dir / "current.txt")
    except BaseException:
        for tmp in (tmp_link, tmp_txt):
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
