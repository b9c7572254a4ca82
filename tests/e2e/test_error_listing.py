"""ERROR-and-above records listed across runs (#16 item 11): `logd-ctl events --level`,
with a real daemon and producers, and again after the index is deleted and rebuilt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.procs import start_daemon
from tests.e2e.test_ctl import as_json, ctl, ok, produce, wait_ctl_ready

pytestmark = pytest.mark.e2e

ERRORS = r"""
import logging, sys
import logd_client as logd

logd.install(app=sys.argv[1])
log = logging.getLogger("worker")
log.info("fine")
log.warning("odd")
log.error("payment failed for %s", sys.argv[1], extra={"order": 7})
with logd.session("s-err"):
    log.error("session error")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("crashed")
log.critical("giving up")
logd.event("llm:response", "agent", "ok", latency_ms=5)
print(logd.run_id(), flush=True)
sys.exit(0 if logd.flush(20) else 3)
"""


def errors_of(listing: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["app"], e["event_type"], e["level"], e["message"], e["session_id"]) for e in listing]


def test_events_level_lists_every_error_record_across_runs_and_survives_a_rebuild(
    log_root: Path, socket_dir: Path
) -> None:
    daemon = start_daemon(log_root, socket_dir)
    expected = []
    try:
        wait_ctl_ready(daemon)
        for app in ("billing", "search"):
            produce(daemon, ERRORS, app)
            expected += [
                (app, None, "ERROR", f"payment failed for {app}", None),
                (app, None, "ERROR", "session error", "s-err"),
                (app, "error:runtime", "ERROR", "ZeroDivisionError: division by zero", None),
                (app, None, "CRITICAL", "giving up", None),
            ]
        listed = as_json(daemon, "events", "--level", "ERROR")
        assert errors_of(listed) == expected
        assert listed[0]["kv"] == {"order": 7}  # its extra fields
        assert errors_of(as_json(daemon, "events", "-p", "critical", "--app", "search")) == [
            expected[-1]
        ]
        # The taxonomy stays: error:* and the default listing hold events only.
        assert [e["event_type"] for e in as_json(daemon, "events", "--type", "error:*")] == [
            "error:runtime",
            "error:runtime",
        ]
        assert all(e["event_type"] for e in as_json(daemon, "events"))
        table = ok(daemon, "events", "--level", "error", "--app", "billing").splitlines()
        assert table[0].split() == ["TS", "TYPE", "SOURCE", "MESSAGE"]
        assert [row.split()[2] for row in table[1:]] == [
            "(ERROR)",
            "(ERROR)",
            "error:runtime",
            "(CRITICAL)",
        ]
        below = ctl(daemon, "events", "--level", "warning")
        assert below.returncode == 1
        assert below.stdout == ""
        assert below.stderr.count("\n") == 1
        assert "logd-ctl tail --level warning" in below.stderr
    finally:
        assert daemon.stop() == 0
    (log_root / "index.sqlite3").unlink()
    for leftover in log_root.glob("index.sqlite3-*"):
        leftover.unlink()
    daemon = start_daemon(log_root, socket_dir)
    try:
        wait_ctl_ready(daemon)
        rebuilt = as_json(daemon, "events", "--level", "ERROR")
        # Records of one millisecond may come back in another order: the rebuild indexes
        # events.log first, then the text logs.
        again = [row for row in errors_of(rebuilt) if row[0] != "logd"]
        assert sorted(again, key=repr) == sorted(expected, key=repr)
        assert [e["kv"] for e in rebuilt if e["message"] == "payment failed for billing"] == [
            {"order": 7}
        ]
    finally:
        assert daemon.stop() == 0
