"""Fixtures for end-to-end tests: a real `logd serve` process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.procs import DaemonProcess, start_daemon


@pytest.fixture
def daemon(log_root: Path, socket_dir: Path) -> Iterator[DaemonProcess]:
    d = start_daemon(log_root, socket_dir)
    yield d
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()
