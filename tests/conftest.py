"""Shared fixtures: short socket paths, a daemon config in a temp root, tree helpers."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from logd_client import runtime

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
def clean_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The client's process-wide state (handler, run, env) as it was before the test."""
    monkeypatch.delenv("LOGD_RUN_ID", raising=False)
    monkeypatch.delenv("LOGD_ADDRESS", raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    runtime.reset_runtime()


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
