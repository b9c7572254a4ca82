"""A record larger than a message may be, from logd's own client to a real daemon: it is
cut to fit, marked, counted, and arrives; `flush()` is True because nothing was lost."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from logd.config import Limits
from tests.e2e.procs import DaemonProcess
from tests.helpers import read_rotated_lines

pytestmark = pytest.mark.e2e

DAEMON_LIMIT = Limits().max_message_bytes  # the default [limits] max_message_bytes

PRODUCER = r"""
import dataclasses, json, logging, sys
import logd_client as logd
from logd_client.runtime import runtime

logd.install(app="big")
log = logging.getLogger("big.dump")
log.info("HEAD" + "x" * 20_000_000)
log.info("after the big one")
flushed = logd.flush(60)
stats = dataclasses.asdict(runtime()[1].statistics())
print(json.dumps({"run_id": logd.run_id(), "flushed": flushed, "stats": stats}))
"""


def test_a_20_mb_record_arrives_cut_with_a_marker(daemon: DaemonProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PRODUCER],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["flushed"] is True
    # The one line is larger than rotation's 10 MiB: it sits in a rotated file.
    lines = read_rotated_lines(daemon.root / "big" / "runs" / out["run_id"] / "main.log")
    big = [line for line in lines if b" - big.dump - INFO - HEADxxx" in line]
    assert len(big) == 1
    # Cut to fit in one message of the daemon's default limit, and says how much went.
    assert len(big[0]) < DAEMON_LIMIT
    assert len(big[0]) > DAEMON_LIMIT - 64 * 1024
    assert big[0].endswith("x… [truncated 3.1 MiB]".encode())
    after = [i for i, line in enumerate(lines) if line.endswith(b" - after the big one")]
    assert after == [lines.index(big[0]) + 1]
    events = (daemon.root / "big" / "events.log").read_text()
    assert "logd:dropped" not in events
    # Counted, and said once on stderr.
    assert out["stats"]["dropped_records"] == 0
    assert out["stats"].get("truncated_records") == 1
    assert "cut, marked '… [truncated …]'" in result.stderr
    assert "statistics().truncated_records" in result.stderr
