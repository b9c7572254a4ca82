"""Sessions, calls, cleanup and reload through the running daemon, in-process."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import trio

from logd.config import Config
from logd.index.eventline import parse_event_line
from logd.index.store import RegistryStore
from logd.server import LogdServer, serve_logd
from logd.write.jobs import Maintain
from tests.helpers import make_config, read_lines
from tests.integration.test_server import RUN, Producer, rec


@pytest.fixture
async def server(log_root: Path, socket_dir: Path) -> AsyncIterator[LogdServer]:
    config = make_config(log_root, socket_dir, session_idle_s=0.5)
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        await nursery.start(partial(serve_logd, config, server=server))
        yield server
        server.request_stop()


def store_of(config: Config) -> RegistryStore:
    return RegistryStore(config.root / "index.sqlite3")


async def test_call_lifecycle_rows_and_file(server: LogdServer) -> None:
    producer = await Producer.unix(server.config.listen.socket)
    call = {"call_id": "B2B.1", "bot_id": "7"}
    await producer.log(
        [
            rec("", event_type="call:start", **call),
            rec("hello", **call),
            rec("bad", level="ERROR", **call),
            rec("", event_type="call:end", **call),
        ],
        chunk="c",
    )
    await producer.aclose()
    store = store_of(server.config)
    (row,) = store.list_calls(app="cyc")
    store.close()
    assert row["call_id"] == "B2B.1"
    assert row["bot_id"] == "7"
    assert row["records"] == 4
    assert row["errors"] == 1
    assert row["end_ts"] is not None
    assert row["duration_ms"] >= 0
    assert row["run_id"] == RUN
    (call_file,) = (server.config.root / "cyc" / "calls").rglob("call_B2B.1.log")
    assert len(read_lines(call_file)) == 4
    assert server.engine is not None
    assert not any("call_B2B" in path for path in server.engine.sinks.handles.files), "file closed"


async def test_session_ends_explicitly_or_when_idle(server: LogdServer) -> None:
    producer = await Producer.unix(server.config.listen.socket)
    await producer.log(
        [
            rec("a", session_id="s-ended"),
            rec("", event_type="session:end", session_id="s-ended"),
            rec("b", session_id="s-idle"),
        ],
        chunk="s",
    )
    await producer.aclose()

    def sessions() -> dict[str, dict[str, object]]:
        store = store_of(server.config)
        try:
            return {row["session_id"]: row for row in store.list_sessions(app="cyc")}
        finally:
            store.close()

    assert sessions()["s-ended"]["end_reason"] == "ended"
    with trio.fail_after(10):
        while sessions()["s-idle"]["end_reason"] is None:
            await trio.sleep(0.1)
    row = sessions()["s-idle"]
    assert row["end_reason"] == "idle"
    assert row["records"] == 1
    assert row["runs"] == [RUN]


async def test_cleanup_on_demand_dry_run_then_real(server: LogdServer) -> None:
    root = server.config.root
    old_day = root / "cyc" / "calls" / "2001-01-01" / "bot_1"
    old_day.mkdir(parents=True)
    (old_day / "call_x.log").write_text("old\n")
    producer = await Producer.unix(server.config.listen.socket)
    await producer.log([rec("live", call_id="live-call")], chunk="l")
    await producer.aclose()

    dry = await server.maintain(Maintain("cleanup", dry_run=True))
    assert dry["dry_run"] is True
    assert dry["deleted"] == ["cyc/calls/2001-01-01"]
    assert old_day.exists()
    real = await server.maintain(Maintain("cleanup"))
    assert real["deleted"] == ["cyc/calls/2001-01-01"]
    assert real["freed_bytes"] == dry["freed_bytes"] > 0
    assert not (root / "cyc" / "calls" / "2001-01-01").exists()
    assert list((root / "cyc" / "calls").rglob("call_live-call.log")), "the active call stays"
    # What retention deleted is on the daemon's own timeline (#16 item 12), the dry run not.
    await server.maintain(Maintain("snapshot"))  # a batch: the noted fact is written
    with trio.fail_after(10):
        while (
            not (root / "logd" / "events.log").exists()
            or "logd:cleanup" not in (root / "logd" / "events.log").read_text()
        ):
            await trio.sleep(0.05)
    lines = [
        parse_event_line(line)
        for line in read_lines(root / "logd" / "events.log")
        if "|logd:cleanup|" in line
    ]
    assert len(lines) == 1
    assert lines[0].fields == {
        "deleted": 1,
        "freed_bytes": real["freed_bytes"],
        "paths": ["cyc/calls/2001-01-01"],
    }


async def test_rotate_on_demand(server: LogdServer) -> None:
    producer = await Producer.unix(server.config.listen.socket)
    await producer.log([rec("before")], chunk="r1")
    result = await server.maintain(Maintain("rotate"))
    assert result["rotated"] >= 2
    await producer.log([rec("after")], chunk="r2")
    await producer.aclose()
    run_dir = server.config.root / "cyc" / "runs" / RUN
    with trio.fail_after(10):  # the copy is gzipped in a background thread
        while not (run_dir / "main.log.1.gz").exists():
            await trio.sleep(0.01)
    assert read_lines(run_dir / "main.log")[0].endswith("after")


async def test_reload_applies_layout_but_not_listen(server: LogdServer, tmp_path: Path) -> None:
    new = dataclasses.replace(
        server.config,
        layout=dataclasses.replace(server.config.layout, component_files=False),
        root=tmp_path / "elsewhere",
    )
    await server.reload(new)
    assert server.config.root != new.root, "root needs a restart"
    producer = await Producer.unix(server.config.listen.socket)
    await producer.log([rec("no component file", logger="quiet")], chunk="q")
    await producer.aclose()
    run_dir = server.config.root / "cyc" / "runs" / RUN
    assert not (run_dir / "quiet.log").exists()
    assert read_lines(run_dir / "main.log")[-1].endswith("no component file")
