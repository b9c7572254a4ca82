"""Helpers shared by tests: configs in temp folders and file-tree assertions."""

from __future__ import annotations

import dataclasses
import gzip
import os
import re
from pathlib import Path
from typing import Any

from logd.config import Config, load_config


def make_config(root: Path, socket_dir: Path, **limits: Any) -> Config:
    """A config with everything under the given folders, like `logd serve --root --socket`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGD_")}
    env["XDG_RUNTIME_DIR"] = str(socket_dir)
    cfg = load_config(
        root=str(root),
        socket=str(socket_dir / "logd.sock"),
        control=str(socket_dir / "ctl.sock"),
        environ=env,
    )
    if limits:
        cfg = dataclasses.replace(cfg, limits=dataclasses.replace(cfg.limits, **limits))
    return cfg


def tree(root: Path) -> list[str]:
    """Every file and link under root, relative, sorted: for asserting layouts."""
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()
    )


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def read_rotated_lines(path: Path) -> list[bytes]:
    """The lines of a log file and of its rotated copies (`main.log.1`, `main.log.2.gz`…),
    oldest first."""
    copies: list[tuple[int, Path]] = []
    for copy in path.parent.iterdir():
        found = re.fullmatch(re.escape(path.name) + r"(?:\.(\d+))?(\.gz)?", copy.name)
        if found:
            copies.append((-int(found[1] or 0), copy))
    lines: list[bytes] = []
    for _, copy in sorted(copies):
        data = copy.read_bytes()
        lines += (gzip.decompress(data) if copy.suffix == ".gz" else data).splitlines()
    return lines


def assert_same_sequence(actual: list[Any], expected: list[Any], what: str = "items") -> None:
    """`actual == expected` for long lists, failing with the first difference only.

    pytest's own explanation of a mismatch between two 100,000-item lists runs difflib
    for hours; this names the lengths and the first index where they part.
    """
    if actual == expected:
        return
    first = next(
        (i for i, (a, e) in enumerate(zip(actual, expected, strict=False)) if a != e),
        min(len(actual), len(expected)),
    )
    got = repr(actual[first]) if first < len(actual) else "<end>"
    want = repr(expected[first]) if first < len(expected) else "<end>"
    raise AssertionError(
        f"{what}: {len(actual)} found, {len(expected)} expected; first difference at"
        f" index {first}: {got[:200]} != {want[:200]}"
    )
