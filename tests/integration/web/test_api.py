"""`logd web` over a real port against an in-process daemon fed by real producers:
every /api shape (the control socket's own replies), paging, live tail over SSE,
hostile input and the token."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from logd_client import wire

from logd.__main__ import main
from logd.config import Config
from logd.server import LogdServer, serve_logd
from logd.web import WebSettings
from logd.web.server import install_hint, serve_web
from tests.integration.control.test_control import Ctl
from tests.integration.test_server import RUN, Producer, rec

pytest.importorskip("starlette", reason="logd web needs the web extra")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"].startswith("application/json"), self.headers
        return json.loads(self.body)


def _get(port: int, path: str, headers: dict[str, str] | None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@dataclass
class Web:
    port: int

    async def get(self, path: str, **headers: str) -> Reply:
        return await trio.to_thread.run_sync(_get, self.port, path, headers)

    async def api(self, path: str) -> Any:
        reply = await self.get(path)
        assert reply.status == 200, (path, reply.body)
        return reply.json()


@asynccontextmanager
async def serving(settings: WebSettings) -> AsyncIterator[Web]:
    async with trio.open_nursery() as nursery:
        (url,) = await nursery.start(serve_web, settings, "127.0.0.1", 0)
        yield Web(int(url.rsplit(":", 1)[1]))
        nursery.cancel_scope.cancel()


@pytest.fixture
async def server(config: Config) -> AsyncIterator[LogdServer]:
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        await nursery.start(partial(serve_logd, config, server=server))
        yield server
        server.request_stop()


@pytest.fixture
async def web(server: LogdServer) -> AsyncIterator[Web]:
    settings = WebSettings(root=server.config.root, control=server.config.listen.control)
    async with serving(settings) as web:
        yield web


def _boom() -> str:
    return 'Traceback (most recent call last):\n  File "x.py", line 1\nZeroDivisionError: boom'


async def _log_a_day(server: LogdServer) -> Producer:
    producer = await Producer.unix(server.config.listen.socket)
    await producer.log(
        [
            rec("hello", session_id="s1"),
            rec("", session_id="s1", event_type="llm:request", kv={"model": "m"}),
            rec("it broke", session_id="s1", level="ERROR", exc=_boom()),
            rec("in the call", call_id="call-1", bot_id="9"),
            rec("quiet", level="DEBUG", logger="db"),
        ],
        chunk="day",
    )
    return producer


async def test_every_api_reply_is_the_control_sockets_own(server: LogdServer, web: Web) -> None:
    producer = await _log_a_day(server)
    ctl = await Ctl.open(server.config.listen.control)

    async def same(path: str, command: str, **args: Any) -> Any:
        ours, theirs = await web.api(path), (await ctl.ask(command, **args))["result"]
        assert ours == theirs, path
        return ours

    runs = await same("/api/runs?app=cyc", "runs", app="cyc")
    assert [r["run_id"] for r in runs] == [RUN]
    await same(f"/api/runs/cyc/{RUN}", "run", run_id=RUN, app="cyc")
    await same("/api/runs/cyc/current", "run", run_id="current", app="cyc")
    sessions = await same("/api/sessions", "sessions")
    assert [s["session_id"] for s in sessions] == ["s1"]
    calls = await same("/api/calls?bot=9", "calls", bot="9")
    assert [c["call_id"] for c in calls] == ["call-1"]
    events = await same("/api/events?type=llm:*&since=1h", "events", type="llm:*", since="1h")
    assert [e["kv"] for e in events] == [{"model": "m"}]
    errors = await web.api("/api/events?type=error:runtime&session=s1")
    assert [e["message"] for e in errors] == ["ZeroDivisionError: boom"]
    status = await web.api("/api/status")
    assert set(status) == set((await ctl.ask("status"))["result"])
    assert status["root"] == str(server.config.root)

    info = await web.api("/api/run-info?app=cyc")
    assert info["run_id"] == RUN
    assert info["run_dir"] == str(server.config.root.absolute() / "cyc" / "runs" / RUN)
    assert info["metadata"]["run_id"] == RUN
    assert (await web.api("/api/run-info"))["run_id"] == RUN
    (app,) = await web.api("/api/apps")
    assert (app["app"], app["runs"], app["sessions"], app["calls"]) == ("cyc", 1, 1, 1)

    log = await web.api(f"/api/runs/cyc/{RUN}/log?level=ERROR")
    assert [r["msg"] for r in log["records"]] == ["it broke"]
    assert "ZeroDivisionError: boom" in log["records"][0]["text"], "the traceback stays"
    assert {"main.log", "agent.log", "db.log"} <= {f["name"] for f in log["files"]}
    db = await web.api(f"/api/runs/cyc/{RUN}/log?file=db.log")
    assert [r["msg"] for r in db["records"]] == ["quiet"]
    found = await web.api(f"/api/runs/cyc/{RUN}/log?q=HELLO")
    assert [r["msg"] for r in found["records"]] == ["hello"]
    session_log = await web.api("/api/sessions/cyc/s1/log")
    assert [r["level"] for r in session_log["records"]] == ["INFO", "INFO", "ERROR"]
    timeline = (await web.api("/api/sessions/cyc/s1/timeline"))["entries"]
    assert [(e["kind"], e.get("event_type")) for e in timeline] == [
        ("record", None),
        ("record", "llm:request"),
        ("record", None),
        ("event", "error:runtime"),
    ]
    call = calls[0]
    assert await web.api(f"/api/calls/cyc/{call['day']}/call-1") == call
    call_log = await web.api(f"/api/calls/cyc/{call['day']}/call-1/log")
    assert [r["msg"] for r in call_log["records"]] == ["in the call"]

    pages = ["/", "/runs", f"/runs/cyc/{RUN}?level=ERROR", "/sessions", "/sessions/cyc/s1"]
    pages += ["/sessions/cyc/s1/timeline", "/calls", f"/calls/cyc/{call['day']}/call-1"]
    pages += ["/events?type=llm:*", "/events", "/status", "/live?run=" + RUN]
    for page in pages:
        reply = await web.get(page)
        assert reply.status == 200, page
        assert reply.headers["content-type"].startswith("text/html"), page
        assert reply.headers["content-security-policy"].startswith("default-src 'self'")
    run_page = (await web.get(f"/runs/cyc/{RUN}?level=ERROR")).body.decode()
    assert "it broke" in run_page
    assert "hello" not in run_page.split('id="log"')[1], "the level filter applies"
    await ctl.stream.aclose()
    await producer.aclose()


async def test_pages_through_a_large_log_without_loading_it(server: LogdServer, web: Web) -> None:
    producer = await Producer.unix(server.config.listen.socket)
    for batch in range(6):
        records = [rec(f"line {batch * 500 + i} " + "x" * 100) for i in range(500)]
        records[7] = rec(f"failure {batch}", level="ERROR", exc=_boom())
        await producer.log(records, chunk=f"b{batch}")
    run_dir = server.config.root / "cyc" / "runs" / RUN
    whole = (run_dir / "main.log").read_text()

    texts: list[str] = []
    before: int | None = None
    while True:
        query = "" if before is None else f"?before={before}"
        page = await web.api(f"/api/runs/cyc/{RUN}/log{query}")
        assert page["scanned_bytes"] <= 64 * 1024
        assert not page["records"] or page["records"][0]["level"] is not None, "starts a record"
        texts = [r["text"] for r in page["records"]] + texts
        before = page["older"]
        if before is None:
            break
    assert "\n".join(texts) + "\n" == whole, "the pages join into the file, no gap, no overlap"

    errors = await web.api(f"/api/runs/cyc/{RUN}/log?level=ERROR")
    assert [r["msg"] for r in errors["records"]] == [f"failure {b}" for b in range(6)]
    assert errors["older"] is None

    # A 3 GiB file (sparse) costs one page to show and a bounded scan to search.
    huge = run_dir / "main.log.1"
    with open(huge, "wb") as handle:
        handle.seek(3 << 30)
        handle.write(b"\n[s9] - 2025-01-01 00:00:00,000 - big - ERROR - at the very end\n")
    started = time.monotonic()
    tail = await web.api(f"/api/runs/cyc/{RUN}/log?file=main.log.1")
    assert tail["records"][-1]["msg"] == "at the very end"
    search = await web.api(f"/api/runs/cyc/{RUN}/log?file=main.log.1&level=ERROR")
    assert search["older"] is not None
    assert search["scanned_bytes"] <= 5 << 20
    assert time.monotonic() - started < 10

    (run_dir / "main.log.2.gz").write_bytes(gzip.compress(whole.encode()))
    unzipped = await web.api(f"/api/runs/cyc/{RUN}/log?file=main.log.2.gz&q=failure%205")
    assert [r["msg"] for r in unzipped["records"]] == ["failure 5"]
    (run_dir / "main.log.3.gz").write_bytes(gzip.compress(b"\0" * (65 << 20), 9))
    bomb = await web.get(f"/api/runs/cyc/{RUN}/log?file=main.log.3.gz")
    assert bomb.status == 413
    assert "zcat" in bomb.json()["error"]
    await producer.aclose()


async def test_live_tail_streams_new_records_as_server_sent_events(
    server: LogdServer, web: Web
) -> None:
    producer = await Producer.unix(server.config.listen.socket)
    await producer.log([rec("before the tail")], chunk="a")
    stream = await trio.open_tcp_stream("127.0.0.1", web.port)
    request = b"GET /api/tail?app=cyc&n=5 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    await stream.send_all(request)
    received = b""

    async def read_until(marker: bytes, seconds: float) -> None:
        nonlocal received
        with trio.fail_after(seconds):
            while marker not in received:
                received += await stream.receive_some(65536)

    await read_until(b"event: ready", 10)
    assert b"content-type: text/event-stream" in received.lower()
    assert b"before the tail" in received, "the backlog comes first"
    started = time.monotonic()
    await producer.log([rec("live one", session_id="s7")], chunk="b")
    await read_until(b"live one", 2)
    assert time.monotonic() - started < 2
    (line,) = [x for x in received.split(b"\n") if x.startswith(b"data: ") and b"live one" in x]
    item = json.loads(line[6:])
    assert (item["msg"], item["session_id"], item["run_id"]) == ("live one", "s7", RUN)
    await stream.aclose()
    with trio.fail_after(5):
        while server.control.subscribers:  # closing the page unsubscribes it
            await trio.sleep(0.01)
    missing = await web.get("/api/tail?run=nope")
    assert missing.status == 404
    assert "nope" in missing.json()["error"]
    await producer.aclose()


async def test_without_a_daemon_the_files_still_show_and_nothing_is_written(
    config: Config, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        server = LogdServer(config)
        await nursery.start(partial(serve_logd, config, server=server))
        await (await _log_a_day(server)).aclose()
        server.request_stop()
    root = config.root

    def snapshot() -> dict[str, tuple[int, int]]:
        return {
            str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in sorted(root.rglob("*"))
        }

    before = snapshot()
    settings = WebSettings(root=root, control=tmp_path / "no-daemon.sock")
    async with serving(settings) as web:
        assert [r["run_id"] for r in await web.api("/api/runs")] == [RUN]
        assert (await web.api("/api/sessions/cyc/s1/timeline"))["entries"]
        assert await web.api("/api/events?since=1h")
        for path in ("/api/status", "/api/tail?app=cyc"):
            reply = await web.get(path)
            assert reply.status == 503
            assert "not running" in reply.json()["error"]
        status = await web.get("/status")
        assert status.status == 200, "the page says why, and shows the daemon's own timeline"
        page = status.body.decode()
        assert "not running" in page
        timeline = page.split('id="timeline"')[1]
        assert timeline.index("logd:stop") < timeline.index("logd:start"), "newest first"
    assert snapshot() == before, "logd web never writes into the root"


HOSTILE = [
    "/api/runs/cyc/..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/runs/cyc/../../../etc/passwd",
    "/api/runs/%2E%2E/%2E%2E",
    f"/api/runs/cyc/{RUN}/log?file=..%2Fmetadata.json",
    f"/api/runs/cyc/{RUN}/log?file=%2Fetc%2Fpasswd",
    f"/api/runs/cyc/{RUN}/log?file=main.log%00",
    f"/api/runs/cyc/{RUN}/log?file=leak.log",
    f"/api/runs/cyc/{RUN}/log?file=metadata.json",
    f"/api/runs/cyc/{RUN}/log?before=-1",
    f"/api/runs/cyc/{RUN}/log?level=LOUD",
    "/api/runs/cyc/%00",
    "/api/runs/cyc/%FF%FE",
    "/api/runs/cyc/" + "a" * 5000,
    "/api/runs/cyc/" + "a" * 100_000,
    "/api/sessions/cyc/..%2F..%2Findex.sqlite3",
    "/api/calls/cyc/..%2F..%2F/call-1",
    "/api/events?since=yesterday",
    "/api/events?until=not-a-time",
    "/api/events?limit=-1",
    "/api/events?limit=99999999999",
    "/api/calls?date=..%2F..",
    "/api/runs?active=maybe",
    "/static/..%2F..%2Fdata.py",
    "/runs/cyc/..%2F..%2Fetc",
    "/sessions/cyc/s1/..%2F..%2F..%2Fsecret",
]


@pytest.mark.parametrize("path", HOSTILE)
async def test_hostile_requests_get_a_clear_4xx_and_nothing_outside_the_root(
    server: LogdServer, web: Web, tmp_path: Path, path: str
) -> None:
    producer = await _log_a_day(server)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET\n")
    os.symlink(secret, server.config.root / "cyc" / "runs" / RUN / "leak.log")
    reply = await web.get(path)
    assert 400 <= reply.status < 500, (path, reply.status)
    assert b"TOPSECRET" not in reply.body
    assert b"root:x:" not in reply.body
    if path.startswith("/api/") and len(path) < 10_000:
        assert reply.json()["error"], "a JSON error says what was wrong"
    elif not path.startswith("/api/"):
        assert reply.headers["content-type"].startswith("text/html")
    await producer.aclose()


async def test_linked_files_are_never_followed(
    server: LogdServer, web: Web, tmp_path: Path
) -> None:
    producer = await _log_a_day(server)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET\n")
    session_file = server.config.root / "cyc" / "sessions" / "session_s1.jsonl"
    session_file.unlink()
    os.symlink(secret, session_file)
    reply = await web.get("/api/sessions/cyc/s1/log")
    assert b"TOPSECRET" not in reply.body
    assert reply.status == 404 or reply.json()["missing"]
    timeline = await web.get("/api/sessions/cyc/s1/timeline")
    assert b"TOPSECRET" not in timeline.body
    await producer.aclose()


async def test_a_token_guards_every_request(server: LogdServer) -> None:
    settings = WebSettings(
        root=server.config.root, control=server.config.listen.control, token="s3cret;x"
    )
    async with serving(settings) as web:
        assert (await web.get("/api/runs")).status == 401
        assert (await web.get("/runs")).status == 401
        assert (await web.get("/api/runs", Authorization="Bearer wrong")).status == 401
        assert (await web.get("/api/runs", Authorization="Bearer s3cret;x")).status == 200
        first = await web.get("/runs?token=s3cret%3Bx")
        assert first.status == 200
        cookie = first.headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in first.headers["set-cookie"]
        assert (await web.get("/api/runs", Cookie=cookie)).status == 200, "links keep working"
        assert (await web.get("/api/runs", Cookie="logd_token=s3cret")).status == 401
    async with serving(WebSettings(server.config.root, server.config.listen.control)) as web:
        rebound = await web.get("/api/runs", Host="attacker.example:8765")
        assert rebound.status == 403, "a foreign Host (DNS rebinding) is refused on loopback"
        assert (await web.get("/api/runs", Host="localhost:8765")).status == 200


def test_cli_refuses_to_listen_off_loopback_without_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOGD_WEB_TOKEN", raising=False)
    assert main(["web", "--listen", "0.0.0.0:8765", "--root", str(tmp_path)]) == 2
    assert "without --token" in capsys.readouterr().err
    assert main(["web", "--listen", "no-port", "--root", str(tmp_path)]) == 2
    assert "--listen" in capsys.readouterr().err


def test_cli_without_the_extra_says_how_to_install_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes the import fail as if starlette were not installed.
    monkeypatch.setitem(sys.modules, "starlette", None)
    assert main(["web"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("logd web needs the web extra (starlette, hypercorn): ")
    assert " -m pip install " in err
    assert err.count("\n") == 1


def test_install_hint_for_a_checkout_and_for_an_installed_copy(tmp_path: Path) -> None:
    checkout = tmp_path / "src"
    (checkout / "logd").mkdir(parents=True)
    (checkout / "client").mkdir()
    (checkout / "pyproject.toml").write_text("[project]\n", encoding="utf-8")
    prefix = "logd web needs the web extra (starlette, hypercorn): "
    assert install_hint(checkout / "logd", checkout, "python3") == (
        f'{prefix}python3 -m pip install -e "./client" -e ".[web]"'
    )
    assert install_hint(checkout / "logd", tmp_path, "/venv/bin/python") == (
        f'{prefix}/venv/bin/python -m pip install -e "{checkout}/client" -e "{checkout}[web]"'
    )
    site = tmp_path / "site-packages"
    (site / "logd").mkdir(parents=True)
    assert install_hint(site / "logd", tmp_path, "python3") == (
        f'{prefix}python3 -m pip install "logd[web]"'
    )


async def test_a_containers_run_shows_its_name_on_the_run_pages(
    server: LogdServer, web: Web
) -> None:
    """Records as Docker's fluentd driver sends them: no run id, a container id and name."""
    producer = await Producer.unix(server.config.listen.socket)
    container = {"container_id": "ab" * 32, "container_name": "/shop-web", "image": "shop:1"}
    message = {"app": "cyc", "msg": "listening", "source": "stdout", **container}
    await producer.log([message], chunk="c1")
    with trio.fail_after(10):
        while not (runs := await web.api("/api/runs?app=cyc")):
            await trio.sleep(0.05)
    (run,) = runs
    assert (run["container_name"], run["image"]) == ("shop-web", "shop:1")
    listing = (await web.get("/runs")).body.decode()
    assert "<th>Container</th>" in listing
    assert "shop-web" in listing
    page = (await web.get(f"/runs/cyc/{run['run_id']}")).body.decode()
    assert "shop-web" in page
    assert "abababababab" in page  # the short id, as `docker ps` shows it
    await producer.aclose()


async def test_a_reused_call_id_shows_every_instance_and_events_open_on_the_newest(
    server: LogdServer, web: Web
) -> None:
    producer = await Producer.unix(server.config.listen.socket)
    two_days_ago = time.time_ns() - 2 * 86_400 * 10**9
    first = [
        (two_days_ago, rec("first use", call_id="c-re", bot_id="9")),
        (two_days_ago + 10**6, rec("", call_id="c-re", bot_id="9", event_type="call:end")),
    ]
    await producer.send(wire.encode_forward("cyc", first, chunk="old"))
    with trio.fail_after(10):
        assert await producer.receive() == wire.Ack("old")
    await producer.log([rec("second use", call_id="c-re", bot_id="9")], chunk="new")

    calls = await web.api("/api/calls?call=c-re")
    assert len(calls) == 2
    newer, older = calls
    assert newer["day"] > older["day"]
    page = (await web.get(f"/calls/cyc/{newer['day']}/c-re")).body.decode()
    assert "This id was used 2 times" in page
    assert f"/calls/cyc/{older['day']}/c-re" in page
    listing = (await web.get("/calls?call=c-re")).body.decode()
    assert listing.count('class="id call-link"') == 2

    events = (await web.get("/events")).body.decode()
    assert "No events match." not in events, "the newest events without a filter"
    assert events.count("call:end") >= 1
    assert "/calls?app=cyc&amp;call=c-re" in events, "the call column links every use"
    one = (await web.get("/events?limit=1")).body.decode()
    assert one.split('class="events"')[1].count("<tr>") == 2, "a header and one event"
    counted = int(one.split("<figcaption>")[1].split(" events per")[0].replace(",", ""))
    assert counted == len(await web.api("/api/events")) > 1, "the chart counts past the table"
    await producer.aclose()


async def _sse_until_ready(web: Web, path: str, last_id: str | None = None) -> list[Any]:
    """The SSE events up to `ready`, as (id, event, data) triples."""
    stream = await trio.open_tcp_stream("127.0.0.1", web.port)
    head = f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n"
    if last_id is not None:
        head += f"Last-Event-ID: {last_id}\r\n"
    await stream.send_all((head + "\r\n").encode())
    received = b""
    with trio.fail_after(10):
        while b"event: ready" not in received:
            received += await stream.receive_some(65536)
    await stream.aclose()
    events = []
    for block in received.split(b"\r\n\r\n", 1)[1].decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
    return events


async def test_a_browser_back_from_a_lost_connection_resumes_after_its_last_id(
    server: LogdServer, web: Web
) -> None:
    producer = await Producer.unix(server.config.listen.socket)
    await producer.log([rec("a1"), rec("a2")], chunk="a")
    first = await _sse_until_ready(web, "/api/tail?app=cyc&n=5")
    items = [(i, data["msg"]) for i, kind, data in first if kind == "item"]
    assert [msg for _, msg in items] == ["a1", "a2"]
    last_id = items[-1][0]
    assert last_id is not None
    await producer.log([rec("a3"), rec("a4")], chunk="b")
    again = await _sse_until_ready(web, "/api/tail?app=cyc&n=5", last_id)
    assert [data["msg"] for _, kind, data in again if kind == "item"] == ["a3", "a4"]
    assert again[-1][1:] == ("ready", {"backlog": 2, "resumed": True})
    await producer.aclose()


async def test_the_events_page_lists_error_records_when_asked_for_a_level(
    server: LogdServer, web: Web
) -> None:
    producer = await _log_a_day(server)
    await producer.log([rec("plain error", level="ERROR"), rec("worse", level="CRITICAL")], "e")
    rows = await web.api("/api/events?level=ERROR")
    plain = [(r["event_type"], r["level"], r["message"]) for r in rows if r["event_type"] is None]
    assert plain == [(None, "ERROR", "plain error"), (None, "CRITICAL", "worse")]
    assert "error:runtime" in {r["event_type"] for r in rows}, "the traceback's event too"
    assert [r["level"] for r in await web.api("/api/events?level=CRITICAL")] == ["CRITICAL"]
    assert all(r["event_type"] for r in await web.api("/api/events")), "events only by default"
    page = (await web.get("/events?level=ERROR")).body.decode()
    assert page.count(">(ERROR)</span>") == 1
    assert page.count(">(CRITICAL)</span>") == 1
    below = await web.get("/api/events?level=WARNING")
    assert below.status == 400
    assert "tail --level" in below.json()["error"]
    await producer.aclose()
