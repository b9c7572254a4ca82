"""Fixtures shared by the client's unit tests."""

from __future__ import annotations

import pytest
from logd_client import handler


@pytest.fixture
def logd_handler(clean_runtime: None) -> handler.LogdHandler:
    """A handler whose daemon is never there: what it sends stays queued, to be looked at."""
    return handler.LogdHandler(app="app", address="unix:/nonexistent-logd-test-dir/s")
