"""Shared fixtures: short socket paths, a daemon config in a temp root, tree helpers."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from logd.config import Config
from tests.helpers import make_config


@pytest.fixture(autouse=True)
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every client (and producer subprocess) of a test spools into its own folder,
    never into the real ~/.cache/logd."""
    path = tmp_path / "spool"
    monkeypatch.setenv("LOGD_SPOOL_DIR", str(path))
    return path


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short folder for sockets: sun_path holds 107 bytes, pytest's tmp_path can be longer."""
    path = Path(tempfile.mkdtemp(prefix="logd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def log_root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def config(log_root: Path, socket_dir: Path) -> Config:
    return make_config(log_root, socket_dir)
