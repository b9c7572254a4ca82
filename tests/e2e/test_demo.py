"""`logd demo`, the README's first command: it works from a fresh shell, and it leaves the
user's spool alone (a daemon and a client deliver the orphan spools they find; the demo's
root is a temporary folder, so whatever it took there would be lost)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.client.test_spool import write_orphan

pytestmark = pytest.mark.e2e


def test_demo_runs_and_leaves_the_users_spool_alone(spool_dir: Path) -> None:
    orphan = write_orphan(spool_dir, "ab" * 8, messages=2)
    before = orphan.read_bytes()
    out = subprocess.run(
        [sys.executable, "-m", "logd", "demo"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "logd works." in out.stdout
    for shown in ("demo-agent/events.log", "|app:start|", "|error:runtime|", "call_B2B."):
        assert shown in out.stdout
    assert "logd:dropped" not in out.stdout
    assert orphan.read_bytes() == before  # neither its daemon nor its producers took it
